"""PIPELINING, CHUNKING and DATA against real servers on loopback that show what arrived before
they answered, and answer slowly."""

from __future__ import annotations

import asyncio

import pytest

from services.dispatcher import smtp_client
from services.dispatcher.mx import MxHost
from services.dispatcher.pools import Member
from services.dispatcher.smtp_client import SmtpClient
from shared.schemas import Recipient, RecipientStatus
from shared.testing import free_port

pytestmark = pytest.mark.integration


class PipeliningSink:
    """A minimal SMTP server advertising PIPELINING (and CHUNKING with ``chunking``). Before
    answering MAIL it waits a moment and counts the commands already received: a pipelining
    client has sent them all; with CHUNKING it counts the bytes instead (a chunk is no
    command)."""

    def __init__(
        self,
        *,
        advertise: bool = True,
        lax: bool = False,
        chunking: bool = False,
        chunk_reply: bytes = b"250 2.0.0 Ok: stored\r\n",
    ) -> None:
        self.advertise = advertise
        self.lax = lax  # answers DATA with 354 even with no recipient (RFC 2920 says 554)
        self.chunking = chunking
        self.chunk_reply = chunk_reply  # to a last BDAT chunk with a recipient accepted
        self.opened = 0
        self.port = free_port()
        self.waiting_at_mail: list[int] = []
        self.bytes_at_mail: list[int] = []
        self.messages = 0
        self.stored: list[bytes] = []  # what arrived in BDAT chunks, a message each
        self.chunk_bytes = 0  # every chunk's bytes, refused ones too
        self.commands: list[bytes] = []  # each command's verb, in order

    async def start(self) -> PipeliningSink:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", self.port)
        return self

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 sink ESMTP\r\n")
        self.opened += 1
        pending: list[bytes] = []
        recipients = 0
        try:
            while True:
                if not pending:
                    line = await reader.readline()
                    if not line:
                        return
                    pending.append(line)
                command = pending.pop(0).strip().upper()
                self.commands.append(command.split(b" ")[0])
                if command.startswith(b"EHLO"):
                    ext = b"250-PIPELINING\r\n" if self.advertise else b""
                    ext += b"250-CHUNKING\r\n" if self.chunking else b""
                    writer.write(b"250-sink\r\n" + ext + b"250 8BITMIME\r\n")
                elif command.startswith(b"MAIL"):
                    await asyncio.sleep(0.1)
                    self.bytes_at_mail.append(len(reader._buffer))
                    while b"\n" in reader._buffer and not self.chunking:  # sent without waiting
                        pending.append(await reader.readline())
                    self.waiting_at_mail.append(len(pending))
                    writer.write(b"250 2.1.0 Ok\r\n")
                    recipients = 0
                elif command.startswith(b"BDAT") and self.chunking:
                    size, last = command.split()[1], command.endswith(b" LAST")
                    chunk = await reader.readexactly(int(size))  # read, taken or not
                    self.chunk_bytes += len(chunk)
                    assert last, "one chunk a message"
                    if not recipients:
                        writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                    else:
                        writer.write(self.chunk_reply)
                        self.stored.append(chunk)
                        self.messages += self.chunk_reply.startswith(b"2")
                elif command.startswith(b"RCPT"):
                    refused = b"NOBODY@" in command
                    recipients += not refused
                    writer.write(b"550 5.1.1 No such user\r\n" if refused else b"250 2.1.5 Ok\r\n")
                elif command == b"DATA" and not recipients and not self.lax:
                    writer.write(b"554 5.5.1 Error: no valid recipients\r\n")
                elif command == b"DATA":
                    writer.write(b"354 Go ahead\r\n")
                    await reader.readuntil(b"\r\n.\r\n")
                    self.messages += 1
                    writer.write(b"250 2.0.0 Ok: stored\r\n")
                elif command == b"RSET":
                    writer.write(b"250 2.0.0 Ok\r\n")
                elif command == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    writer.write(b"502 5.5.1 Not implemented\r\n")
                await writer.drain()
        finally:
            writer.close()


def recipients(*addresses: str) -> list[Recipient]:
    return [
        Recipient(id=f"r{i}", address=a)
        for i, a in enumerate(addresses or ["a@ok.test", "nobody@ok.test", "c@ok.test"])
    ]


@pytest.mark.parametrize("advertise, expected", [(True, 4), (False, 0)])
async def test_mail_and_rcpts_go_in_one_write_when_offered(advertise, expected) -> None:
    """With PIPELINING the three RCPTs and DATA are already there when MAIL is answered;
    without it the client waits for each reply. Either way each recipient has its own
    result."""
    sink = await PipeliningSink(advertise=advertise).start()
    client = SmtpClient(connect_timeout=5)
    for _ in range(2):  # the second transaction reuses the connection
        attempt = await client.send(
            MxHost("sink.test", "127.0.0.1", sink.port),
            Member("127.0.0.1", "out.test"),
            "ok.test",
            "bounce@shop.test",
            recipients(),
            b"Subject: x\r\n\r\nbody\r\n",
        )
        assert [r.status for r in attempt.results] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.BOUNCED,
            RecipientStatus.DELIVERED,
        ]
        assert attempt.results[1].reply.enhanced == "5.1.1"
        # which command each final reply answered: the bounce service reads a refusal by it
        assert [r.command for r in attempt.results] == ["DATA", "RCPT", "DATA"]
    assert sink.waiting_at_mail == [expected, expected]
    assert sink.messages == 2 and client.opened == 1
    await client.close_idle(all_=True)
    sink.server.close()


@pytest.mark.parametrize("lax", [False, True])
async def test_a_pipelined_data_with_every_recipient_refused_sends_nothing(lax) -> None:
    """DATA goes with the envelope; when no recipient was taken the server refuses it (and the
    connection serves the next mail after a RSET), or, a server that takes it anyway, the
    connection is closed without a message; the recipients have their RCPT refusals."""
    sink = await PipeliningSink(lax=lax).start()
    client = SmtpClient(connect_timeout=5)
    for batch in (recipients("nobody@ok.test", "nobody@two.test"), recipients("a@ok.test")):
        attempt = await client.send(
            MxHost("sink.test", "127.0.0.1", sink.port),
            Member("127.0.0.1", "out.test"),
            "ok.test",
            "bounce@shop.test",
            batch,
            b"Subject: x\r\n\r\nbody\r\n",
        )
        refused = [r for r in attempt.results if r.status is RecipientStatus.BOUNCED]
        assert all(r.command == "RCPT" and r.reply.enhanced == "5.1.1" for r in refused)
    assert attempt.results[0].status is RecipientStatus.DELIVERED
    assert sink.messages == 1 and sink.opened == (2 if lax else 1)
    await client.close_idle(all_=True)
    sink.server.close()


async def test_a_tarpit_is_cut_at_the_transaction_deadline() -> None:
    """A server that answers each command just slowly enough for RFC 5321's per-command
    timeouts holds a transaction for as long as it likes: the deadline cuts it and the
    recipients are deferred (451 4.4.2), well before the broker would redeliver the job."""

    async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 tarpit.test ESMTP\r\n")
            await writer.drain()
            while line := await reader.readline():
                for byte in b"250 ok\r\n":  # one byte a second: never a command timeout
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.25)
                if line.upper().startswith(b"QUIT"):
                    return
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(tarpit, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = SmtpClient(connect_timeout=5, transaction_deadline=1.5, command_timeout=30)
    started = asyncio.get_running_loop().time()
    attempt = await client.send(
        MxHost("tarpit.test", "127.0.0.1", port),
        Member("127.0.0.1", "out.test"),
        "ok.test",
        "bounce@shop.test",
        recipients(),
        b"Subject: x\r\n\r\nbody\r\n",
    )
    took = asyncio.get_running_loop().time() - started
    server.close()
    assert {r.status for r in attempt.results} == {RecipientStatus.DEFERRED}
    assert all("within 1.5 s" in r.reply.text for r in attempt.results), attempt.results[0]
    assert took < 10  # not the minutes the tarpit would take


async def test_8bit_mail_is_declared_body_8bitmime() -> None:
    """RFC 6152: a message with 8-bit bytes goes with BODY=8BITMIME to a server that offers
    8BITMIME; a 7-bit one declares nothing."""
    from tests.helpers.sinks import Sink

    sink = await Sink(host="127.0.0.1").start()
    client = SmtpClient(connect_timeout=5)
    try:
        for body in ("Subject: x\r\n\r\nplain\r\n", "Subject: x\r\n\r\nこんにちは\r\n"):
            attempt = await client.send(
                MxHost("sink.test", "127.0.0.1", sink.port),
                Member("127.0.0.1", "out.test"),
                "ok.test",
                "bounce@shop.test",
                recipients()[:1],
                body.encode(),
            )
            assert attempt.results[0].status is RecipientStatus.DELIVERED
        assert [r.mail_options for r in sink.received] == [[], ["BODY=8BITMIME"]]
    finally:
        await client.close_idle(all_=True)
        await sink.stop()


async def _slow_data_server(start_delay: float, end_delay: float) -> asyncio.Server:
    """A server that waits ``start_delay`` before its 354 and ``end_delay`` before its final
    reply to the message."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 slow.test ESMTP\r\n")
            while line := await reader.readline():
                command = line.strip().upper()
                if command == b"DATA":
                    await asyncio.sleep(start_delay)
                    writer.write(b"354 Go ahead\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    await asyncio.sleep(end_delay)
                    writer.write(b"250 2.0.0 Ok: stored\r\n")
                elif command == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    writer.write(b"250 slow.test\r\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize(
    ("start_delay", "end_delay", "expected"),
    [(1.0, 0.0, RecipientStatus.DEFERRED), (0.0, 1.0, RecipientStatus.DELIVERED)],
)
async def test_data_waits_for_its_354_and_its_final_reply_each_with_its_own_timeout(
    monkeypatch, start_delay, end_delay, expected
) -> None:
    """RFC 5321 4.5.3.2 gives the 354 two minutes and the final reply ten (here 0.5 s and
    5 s): a 354 later than its timeout defers the mail, a final reply as late is waited for."""
    monkeypatch.setattr(smtp_client, "TIMEOUT_DATA_INIT", 0.5)
    monkeypatch.setattr(smtp_client, "TIMEOUT_DATA_END", 5)
    server = await _slow_data_server(start_delay, end_delay)
    client = SmtpClient(connect_timeout=5, pipelining=False)
    attempt = await client.send(
        MxHost("slow.test", "127.0.0.1", server.sockets[0].getsockname()[1]),
        Member("127.0.0.1", "out.test"),
        "ok.test",
        "bounce@shop.test",
        [Recipient(id="r0", address="a@ok.test")],
        b"Subject: x\r\n\r\nbody\r\n",
    )
    assert [r.status for r in attempt.results] == [expected]
    await client.close_idle(all_=True)
    server.close()


def _send(client: SmtpClient, sink: PipeliningSink, batch: list[Recipient], message: bytes):
    return client.send(
        MxHost("sink.test", "127.0.0.1", sink.port),
        Member("127.0.0.1", "out.test"),
        "ok.test",
        "bounce@shop.test",
        batch,
        message,
    )


@pytest.mark.parametrize("chunking", [True, False])
async def test_with_chunking_the_message_goes_with_the_envelope_as_one_bdat(chunking) -> None:
    """A server offering CHUNKING and PIPELINING gets MAIL, every RCPT and the message as one
    last BDAT chunk in one write: when it answers MAIL, the rest is already there. The chunk
    is the message as it is (a leading dot stays single, no end marker); each recipient has
    its own result, the refused one its RCPT reply. With chunking off the client uses DATA."""
    sink = await PipeliningSink(chunking=True).start()
    client = SmtpClient(connect_timeout=5, chunking=chunking)
    message = b"Subject: x\r\n\r\n.a dot\r\nbody\r\n"
    for _ in range(2):  # the second transaction reuses the connection
        attempt = await _send(client, sink, recipients(), message)
        assert [r.status for r in attempt.results] == [
            RecipientStatus.DELIVERED,
            RecipientStatus.BOUNCED,
            RecipientStatus.DELIVERED,
        ]
        assert [r.command for r in attempt.results] == ["DATA", "RCPT", "DATA"]
        assert attempt.results[0].reply.text == "Ok: stored"
    if chunking:
        rest = b"".join(b"RCPT TO:<%s>\r\n" % r.address.encode() for r in recipients())
        assert sink.bytes_at_mail == [len(rest + b"BDAT 34 LAST\r\n" + message)] * 2
        assert sink.stored == [message, message] and b"DATA" not in sink.commands
    else:
        assert sink.stored == [] and sink.commands.count(b"DATA") == 2
    assert sink.messages == 2 and client.opened == 1
    await client.close_idle(all_=True)
    sink.server.close()


async def test_a_chunk_with_every_recipient_refused_is_refused_and_the_connection_serves_on():
    """When no recipient was taken the server reads the chunk and refuses it; the recipients
    keep their RCPT refusals, and after a RSET the same connection delivers the next mail."""
    sink = await PipeliningSink(chunking=True).start()
    client = SmtpClient(connect_timeout=5)
    refused = await _send(client, sink, recipients("nobody@ok.test"), b"Subject: x\r\n\r\nb\r\n")
    assert [(r.status, r.command) for r in refused.results] == [(RecipientStatus.BOUNCED, "RCPT")]
    delivered = await _send(client, sink, recipients("a@ok.test"), b"Subject: y\r\n\r\nb\r\n")
    assert [r.status for r in delivered.results] == [RecipientStatus.DELIVERED]
    assert sink.commands.count(b"RSET") == 1 and sink.opened == 1 and sink.messages == 1
    await client.close_idle(all_=True)
    sink.server.close()


@pytest.mark.parametrize(
    ("reply", "status", "enhanced"),
    [
        (b"452 4.3.1 Insufficient system storage\r\n", RecipientStatus.DEFERRED, "4.3.1"),
        (b"550 5.7.1 Message content rejected\r\n", RecipientStatus.BOUNCED, "5.7.1"),
    ],
)
async def test_a_refused_chunk_settles_the_accepted_recipients_as_data(
    reply, status, enhanced
) -> None:
    """A server that takes the recipients but refuses the message's chunk: each accepted
    recipient gets that reply, recorded as the content's (DATA), the refused one its RCPT."""
    sink = await PipeliningSink(chunking=True, chunk_reply=reply).start()
    client = SmtpClient(connect_timeout=5)
    attempt = await _send(client, sink, recipients(), b"Subject: x\r\n\r\nbody\r\n")
    assert [(r.status, r.command, r.reply.enhanced) for r in attempt.results] == [
        (status, "DATA", enhanced),
        (RecipientStatus.BOUNCED, "RCPT", "5.1.1"),
        (status, "DATA", enhanced),
    ]
    await client.close_idle(all_=True)
    sink.server.close()


async def test_a_large_message_waits_for_an_accepted_recipient_before_its_chunk(
    monkeypatch,
) -> None:
    """A message larger than the inline limit is not sent with the envelope: with every
    recipient refused none of it goes out, and otherwise it follows the envelope's replies
    as one last chunk."""
    monkeypatch.setattr(smtp_client, "INLINE_CHUNK", 16)
    sink = await PipeliningSink(chunking=True).start()
    client = SmtpClient(connect_timeout=5)
    message = b"Subject: large\r\n\r\n" + b"x" * 100 + b"\r\n"
    refused = await _send(client, sink, recipients("nobody@ok.test"), message)
    assert [r.status for r in refused.results] == [RecipientStatus.BOUNCED]
    assert sink.chunk_bytes == 0 and sink.bytes_at_mail == [len(b"RCPT TO:<nobody@ok.test>\r\n")]
    attempt = await _send(client, sink, recipients(), message)
    assert [r.status for r in attempt.results] == [
        RecipientStatus.DELIVERED,
        RecipientStatus.BOUNCED,
        RecipientStatus.DELIVERED,
    ]
    assert sink.stored == [message] and sink.opened == 1
    await client.close_idle(all_=True)
    sink.server.close()

"""SMTP transactions to a destination server (aiosmtplib), from a chosen source IP, with a
result for every recipient, and reused connections.

- EHLO with the source IP's own host name, connecting from that IP;
- opportunistic STARTTLS (required for destinations configured so);
- PIPELINING (RFC 2920) when offered: MAIL FROM, every RCPT TO and DATA in one write;
- with CHUNKING (RFC 3030) offered too, BDAT instead of DATA: a message up to
  ``INLINE_CHUNK`` bytes goes in that same write as one last chunk (no 354 to wait for, no
  dot-stuffing); a larger one follows as one chunk once a recipient was accepted;
- RFC 5321 4.5.3.2 timeouts per command;
- an idle connection to the same (source IP, server) is reused for the next job, up to
  ``max_messages`` transactions, and closed after ``idle_timeout`` seconds unused.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosmtplib
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus
from opentelemetry.trace import Span, SpanKind

from services.dispatcher import pipelining
from services.dispatcher.mx import MxHost
from services.dispatcher.pools import Member
from shared import logging as hlog
from shared.schemas import Recipient, RecipientResult, RecipientStatus, Reply
from shared.telemetry import inner_span, tracer

log = hlog.get_logger(__name__)

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+", re.ASCII)

# RFC 5321 4.5.3.2 (seconds)
TIMEOUT_GREETING = 300
TIMEOUT_MAIL = 300
TIMEOUT_RCPT = 300
TIMEOUT_DATA_INIT = 120
TIMEOUT_DATA_END = 600

# The largest message sent in one write with its envelope, before the server has said whether
# it takes any recipient: what a refused envelope can waste, and about what loopback and a
# typical TCP window carry at once.
INLINE_CHUNK = 64 * 1024


def to_reply(code: int, message: str) -> Reply:
    """A server's reply with its enhanced status code split off (RFC 3463)."""
    text = " ".join(message.split())
    m = _ENHANCED.match(text)
    if m:
        return Reply(code=code, enhanced=m.group(1), text=text[m.end() :])
    return Reply(code=code, text=text)


def status_for(code: int) -> RecipientStatus:
    if 200 <= code < 300:
        return RecipientStatus.DELIVERED
    if 500 <= code < 600:
        return RecipientStatus.BOUNCED
    return RecipientStatus.DEFERRED


@dataclass
class Connection:
    client: aiosmtplib.SMTP
    key: tuple[str, str, int]
    transactions: int = 0
    last_used: float = field(default_factory=time.monotonic)
    clean: bool = True  # False after a transaction that did not finish: RSET first
    pipelining: bool = False
    chunking: bool = False  # BDAT (RFC 3030), over a pipelining connection only


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one transaction did: per-recipient results, and whether the server was reached
    (if not, the next MX is worth a try)."""

    results: list[RecipientResult]
    reached: bool
    tls: bool = False
    tls_version: str | None = None  # "TLSv1.3"
    reused: bool = False  # over a connection an earlier transaction opened


class SmtpClient:
    def __init__(
        self,
        *,
        connect_timeout: float,
        max_messages: int = 100,
        idle_timeout: float = 30.0,
        reuse: bool = True,
        tls_required: frozenset[str] = frozenset(),
        command_timeout: float | None = None,
        pipelining: bool = True,
        chunking: bool = True,
        transaction_deadline: float = 900,
    ) -> None:
        self.pipelining = pipelining
        self.chunking = chunking
        # The whole of one transaction, connecting included: a server answering each command
        # just within its RFC 5321 timeout (a tarpit) could otherwise hold a job past the
        # broker's consumer timeout, which hands the job to another consumer: sent twice.
        self.transaction_deadline = transaction_deadline
        self.connect_timeout = connect_timeout
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self.reuse = reuse
        self.tls_required = tls_required
        self.command_timeout = command_timeout  # tests shorten RFC 5321's minutes
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self.opened = 0

    def _timeout(self, rfc: float) -> float:
        return min(rfc, self.command_timeout) if self.command_timeout else rfc

    async def _acquire(self, target: MxHost, source: Member, domain: str) -> Connection:
        key = (source.ip, target.address, target.port)
        idle = self._idle.get(key, [])
        while idle:
            conn = idle.pop()
            if conn.client.is_connected:
                if not conn.clean:
                    await conn.client.rset(timeout=self._timeout(TIMEOUT_MAIL))
                    conn.clean = True
                return conn
        verified = domain in self.tls_required
        # Connecting, the greeting, EHLO and STARTTLS: the span says how long and what TLS.
        with tracer.start_as_current_span("smtp connect", kind=SpanKind.CLIENT) as span:
            client = aiosmtplib.SMTP(
                # Verified TLS checks the certificate against the MX name, so connect by name.
                hostname=target.host if verified else target.address,
                port=target.port,
                local_hostname=source.helo,
                source_address=(source.ip, 0),
                timeout=self._timeout(TIMEOUT_GREETING),
                start_tls=True if verified else None,  # None: STARTTLS when offered
                validate_certs=verified,
            )
            if span.is_recording():
                span.set_attributes(_where(target, source) | {"hato.tls.verified": verified})
            await client.connect(timeout=self.connect_timeout)
            self.opened += 1
            if client.is_ehlo_or_helo_needed:  # after STARTTLS aiosmtplib waits for a command
                await client.ehlo(timeout=self._timeout(TIMEOUT_GREETING))
            if span.is_recording():
                version = _tls_version(client)
                span.set_attribute("hato.tls", version is not None)
                if version:
                    span.set_attribute("tls.protocol.version", version.removeprefix("TLSv"))
        pipelined = self.pipelining and pipelining.enable(client)
        return Connection(
            client,
            key,
            pipelining=pipelined,
            chunking=pipelined and self.chunking and client.supports_extension("chunking"),
        )

    def _release(self, conn: Connection, *, reusable: bool, max_messages: int) -> None:
        conn.transactions += 1
        conn.last_used = time.monotonic()
        if self.reuse and reusable and conn.transactions < min(max_messages, self.max_messages):
            self._idle.setdefault(conn.key, []).append(conn)
        else:
            task = asyncio.ensure_future(_quit(conn))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close_idle(self, *, all_: bool = False) -> None:
        """Close connections idle longer than ``idle_timeout`` (all of them with ``all_``)."""
        cutoff = time.monotonic() - (0 if all_ else self.idle_timeout)
        for key, conns in list(self._idle.items()):
            stale = [c for c in conns if c.last_used <= cutoff]
            self._idle[key] = [c for c in conns if c.last_used > cutoff]
            for c in stale:
                await _quit(c)

    async def send(
        self,
        target: MxHost,
        source: Member,
        domain: str,
        mail_from: str,
        recipients: Sequence[Recipient],
        message: bytes,
        *,
        max_messages: int = 100,
    ) -> Attempt:
        """One SMTP transaction to ``target`` from ``source``, in a span of its own that
        names the server, the source IP, TLS and the reply."""
        with inner_span("smtp send", kind=SpanKind.CLIENT) as span:
            attempt = await self._send(
                target,
                source,
                domain,
                mail_from,
                recipients,
                message,
                max_messages=max_messages,
            )
            if span.is_recording():
                describe(span, attempt, target, source)
            return attempt

    async def _send(
        self,
        target: MxHost,
        source: Member,
        domain: str,
        mail_from: str,
        recipients: Sequence[Recipient],
        message: bytes,
        *,
        max_messages: int,
    ) -> Attempt:
        tx = _Transaction(recipients)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.transaction_deadline
        try:
            async with asyncio.timeout_at(deadline):
                conn = await self._acquire(target, source, domain)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            text = (
                f"no connection to {target} within {self.transaction_deadline:g} s"
                if loop.time() >= deadline
                else f"no connection to {target}: {exc}"
            )
            tx.settle(recipients, Reply(code=451, enhanced="4.4.1", text=text))
            return Attempt(tx.ordered(), reached=False)

        client = conn.client
        tls_version = _tls_version(client)
        reused = conn.transactions > 0
        reusable = False
        try:
            conn.clean = False
            async with asyncio.timeout_at(deadline):
                pipelined = (
                    conn.pipelining
                    and mail_from.isascii()
                    and all(r.address.isascii() for r in recipients)
                )
                if pipelined and conn.chunking:
                    conn.clean = await self._chunked(tx, client, mail_from, message)
                elif pipelined:
                    conn.clean = await self._pipelined(tx, client, mail_from, message)
                else:
                    conn.clean = await self._stepwise(tx, client, mail_from, message)
                reusable = True
        except aiosmtplib.SMTPResponseException as exc:
            tx.settle(recipients, to_reply(exc.code, exc.message))
            reusable = exc.code != 421 and client.is_connected  # 421: the server is closing
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            late = loop.time() >= deadline
            text = (
                f"{target} did not finish the transaction within {self.transaction_deadline:g} s"
                if late
                else f"connection to {target} lost: {exc}"
            )
            tx.settle(recipients, Reply(code=451, enhanced="4.4.2", text=text))
        finally:
            self._release(
                conn, reusable=reusable and client.is_connected, max_messages=max_messages
            )
        return Attempt(
            tx.ordered(),
            reached=True,
            tls=tls_version is not None,
            tls_version=tls_version,
            reused=reused,
        )

    async def _pipelined(
        self, tx: _Transaction, client: aiosmtplib.SMTP, mail_from: str, message: bytes
    ) -> bool:
        """MAIL, every RCPT and DATA in one write (RFC 2920), then the message; True when the
        transaction ended cleanly (the connection needs no RSET). A refused MAIL or DATA
        raises, for ``_send`` to settle every recipient still open with its reply."""
        mail, accepted, started = await self._envelope(
            tx, client, mail_from, message, pipelining.DATA, TIMEOUT_DATA_INIT
        )
        if started is not None and started.code == 354 and not accepted:
            # A server that takes DATA with no recipient (RFC 2920 3.1 says it must not):
            # end the connection rather than send it anything.
            client.close()
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, mail_from)
        if not accepted:
            return False
        tx.command = "DATA"
        assert started is not None
        if started.code != 354:
            raise aiosmtplib.SMTPDataError(started.code, started.message)
        response = await pipelining.body(client, message, timeout=self._timeout(TIMEOUT_DATA_END))
        tx.settle(accepted, to_reply(response.code, response.message))
        return True

    async def _envelope(
        self,
        tx: _Transaction,
        client: aiosmtplib.SMTP,
        mail_from: str,
        message: bytes,
        last: bytes,
        last_timeout: float,
    ) -> tuple[SMTPResponse, list[Recipient], SMTPResponse | None]:
        """MAIL, every RCPT and ``last`` in one write; (MAIL reply, the recipients accepted,
        the reply to ``last``), each refused recipient settled with its RCPT reply."""
        tx.command = "MAIL"
        mail, rcpts, ended = await pipelining.envelope(
            client,
            mail_from,
            [r.address for r in tx.recipients],
            self._timeout(TIMEOUT_RCPT),
            body_options(client, message),
            last=last,
            last_timeout=self._timeout(last_timeout),
        )
        return mail, tx.accepted(mail, rcpts), ended

    async def _chunked(
        self, tx: _Transaction, client: aiosmtplib.SMTP, mail_from: str, message: bytes
    ) -> bool:
        """As ``_pipelined`` with BDAT for DATA (RFC 3030): a message up to ``INLINE_CHUNK``
        goes as one last chunk in the envelope's write, a larger one as one chunk after the
        envelope's replies, when a recipient was accepted. A refused chunk counts as DATA,
        the command ``_send`` records: both carry the content."""
        last = pipelining.bdat(message) if len(message) <= INLINE_CHUNK else b""
        mail, accepted, ended = await self._envelope(
            tx, client, mail_from, message, last, TIMEOUT_DATA_END
        )
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, mail_from)
        if not accepted:
            return False  # the server refused the chunk too, or has a transaction open: RSET
        tx.command = "DATA"
        if ended is None:
            ended = await pipelining.chunk(client, message, timeout=self._timeout(TIMEOUT_DATA_END))
        elif ended.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPDataError(ended.code, ended.message)
        tx.settle(accepted, to_reply(ended.code, ended.message))
        return True

    async def _stepwise(
        self, tx: _Transaction, client: aiosmtplib.SMTP, mail_from: str, message: bytes
    ) -> bool:
        """MAIL, each RCPT and DATA one reply at a time (a server without PIPELINING, or an
        address that needs SMTPUTF8); as ``_pipelined``."""
        tx.command = "MAIL"
        await client.mail(
            mail_from, options=body_options(client, message), timeout=self._timeout(TIMEOUT_MAIL)
        )
        tx.command = "RCPT"
        accepted = []
        for r in tx.recipients:
            try:
                await client.rcpt(r.address, timeout=self._timeout(TIMEOUT_RCPT))
                accepted.append(r)
            except aiosmtplib.SMTPRecipientRefused as exc:
                tx.settle([r], to_reply(exc.code, exc.message))
        if not accepted:
            return False
        tx.command = "DATA"
        response = await pipelining.data(
            client,
            message,
            start_timeout=self._timeout(TIMEOUT_DATA_INIT),
            end_timeout=self._timeout(TIMEOUT_DATA_END),
        )
        tx.settle(accepted, to_reply(response.code, response.message))
        return True


class _Transaction:
    """The recipients of one transaction and each one's result once its reply is known;
    ``command`` is the SMTP command whose reply is awaited (what a reply answered)."""

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        self.recipients = recipients
        self.results: dict[str, RecipientResult] = {}
        self.command: str | None = None

    def settle(self, rs: Sequence[Recipient], reply: Reply, at: str | None = None) -> None:
        """``reply`` is the result of each of ``rs`` that has none yet."""
        for r in rs:
            self.results.setdefault(
                r.id,
                RecipientResult(
                    recipient_id=r.id,
                    address=r.address,
                    status=status_for(reply.code),
                    reply=reply,
                    command=at or self.command,
                ),
            )

    def accepted(self, mail: SMTPResponse, rcpts: Sequence[SMTPResponse]) -> list[Recipient]:
        """The recipients whose RCPT was accepted after an accepted MAIL; each refused one
        is settled with its RCPT reply (after a refused MAIL, none is accepted or settled)."""
        if mail.code != SMTPStatus.completed:
            return []
        accepted = []
        for r, reply in zip(self.recipients, rcpts, strict=True):
            if reply.code in (250, 251):
                accepted.append(r)
            else:
                self.settle([r], to_reply(reply.code, reply.message), "RCPT")
        return accepted

    def ordered(self) -> list[RecipientResult]:
        return [self.results[r.id] for r in self.recipients]


def body_options(client: aiosmtplib.SMTP, message: bytes) -> list[str]:
    """``BODY=8BITMIME`` for a message with 8-bit bytes when the server offers 8BITMIME (RFC
    6152); a 7-bit message declares nothing. A server without 8BITMIME gets 8-bit mail as it
    is: converting it would break its DKIM signature, and such servers take it in practice."""
    if client.supports_extension("8bitmime") and not message.isascii():
        return ["BODY=8BITMIME"]
    return []


def _tls_version(client: aiosmtplib.SMTP) -> str | None:
    """The TLS version of a connection ("TLSv1.3"), None when it is not encrypted."""
    ssl_object = client.transport.get_extra_info("ssl_object") if client.transport else None
    return ssl_object.version() if ssl_object is not None else None


def _where(target: MxHost, source: Member) -> dict[str, str | int]:
    return {
        "server.address": target.host,
        "server.port": target.port,
        "network.peer.address": target.address,
        "network.local.address": source.ip,
        "hato.source_ip": source.ip,
    }


def describe(span: Span, attempt: Attempt, target: MxHost, source: Member) -> None:
    """Put what an attempt did on ``span``: the server (MX host, address, port), the source
    IP, TLS, the connection's reuse, and the remote reply with its enhanced status code
    (the first recipient's; the per-status counts tell whether the others differ)."""
    attributes: dict[str, str | int | bool] = {
        **_where(target, source),
        "hato.reached": attempt.reached,
        "hato.tls": attempt.tls,
        "hato.smtp.reused_connection": attempt.reused,
        "hato.recipients": len(attempt.results),
    }
    if attempt.tls_version:
        attributes["tls.protocol.version"] = attempt.tls_version.removeprefix("TLSv")
    if attempt.results:
        reply = attempt.results[0].reply
        attributes["smtp.reply.code"] = reply.code
        attributes["smtp.reply.text"] = reply.text[:500]
        if reply.enhanced:
            attributes["smtp.reply.enhanced"] = reply.enhanced
    for r in attempt.results:
        key = f"hato.recipients.{r.status.value}"
        attributes[key] = int(attributes.get(key, 0)) + 1
    span.set_attributes(attributes)


async def _quit(conn: Connection) -> None:
    try:
        if conn.client.is_connected:
            await conn.client.quit(timeout=5)
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        conn.client.close()

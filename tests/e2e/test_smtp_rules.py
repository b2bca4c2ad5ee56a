"""The SMTP door's session rules against a real ingest process with tight limits: a client
that talks before the banner, a web client, too many errors, too many sessions, a slow drip
through DATA, and password guessing spread over many addresses."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from services.ingest import replies
from services.ingest.smtp import AuthThrottle
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.smtp import RawSession
from tests.helpers.tls import make_certificate

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
TIMEOUT = 2  # seconds: HATO_INGEST_SMTP_TIMEOUT of this ingest


@pytest.fixture(scope="module")
async def port(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[int]:
    tmp = tmp_path_factory.mktemp("rules")
    cert, key = make_certificate(tmp / "tls")
    database = unique("rules")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    await store.directory.add_credential(TENANT, "shop", password=PASSWORD)
    smtps = free_port()
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": unique("rules"),
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(free_port()),
            "HATO_INGEST_SMTPS_PORT": str(smtps),
            "HATO_INGEST_HTTP_PORT": str(free_port()),
            "HATO_INGEST_TLS_CERT_FILE": str(cert),
            "HATO_INGEST_TLS_KEY_FILE": str(key),
            "HATO_INGEST_SMTP_GREET_PAUSE": "0.3",
            "HATO_INGEST_SMTP_MAX_ERRORS": "5",
            "HATO_INGEST_SMTP_MAX_CONNECTIONS_PER_CLIENT": "3",
            "HATO_INGEST_SMTP_TIMEOUT": str(TIMEOUT),
            "HATO_INGEST_AUTH_MAX_FAILURES": "10",
            "HATO_INGEST_AUTH_MAX_FAILURES_PER_USER": "3",
        },
        log_dir=tmp,
    )
    relay = int(stack.env["HATO_INGEST_SMTP_PORT"])
    await stack.start("ingest")
    yield relay
    assert await stack.stop_all() == {"ingest": 0}
    await store.client.drop_database(database)
    await store.close()


async def _rest(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still says, until it closes (10 s at most)."""
    return await asyncio.wait_for(reader.read(), 10)


async def test_a_client_that_talks_before_the_banner_is_dropped(port: int) -> None:
    """A client outside the tenants' networks waits for the banner, and one that talks first
    is dropped; a tenant's own network (127.0.0.1 here: its printers, its shop) is greeted at
    once and served even when it does not wait."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"EHLO eager.test\r\nQUIT\r\n")
    await writer.drain()
    served = await _rest(reader)
    writer.close()
    assert served.startswith(b"220 ") and b"\r\n250" in served, served
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.9", 0))
    writer.write(b"EHLO eager.test\r\nMAIL FROM:<orders@shop.test>\r\n")
    await writer.drain()
    said = await _rest(reader)
    writer.close()
    assert said.startswith(b"554 5.5.0"), said
    assert b"250" not in said  # nothing it sent was served


async def test_a_web_client_is_dropped_at_once(port: int) -> None:
    """An HTTP request (or a bare header line) on the SMTP port gets one 554 and the door closes: a
    web page cannot turn a browser into an SMTP client."""
    for request in (b"GET / HTTP/1.1\r\nHost: hato\r\n\r\n", b"Host: hato\r\n\r\n"):
        session = await RawSession.open(port)
        await session.send(request)
        said = await _rest(session.reader)
        await session.close()
        assert said.startswith(str(replies.NOT_SMTP).encode()), said
        assert said.count(b"\r\n") == 1  # one answer, then the door closes


async def test_too_many_errors_close_the_session(port: int) -> None:
    """The fifth error of a session is answered, then 421 4.7.0 closes the door: a client stuck in a
    loop does not hold it."""
    session = await RawSession.open(port)
    answers = [(await session.cmd("RCPT TO:<a@example.com>"))[0] for _ in range(4)]
    assert all(a.startswith("503 5.5.1") for a in answers), answers
    await session.send(b"RCPT TO:<a@example.com>\r\n")
    said = await _rest(session.reader)
    await session.close()
    lines = said.split(b"\r\n")
    assert lines[0].startswith(b"503 5.5.1"), said  # the fifth error is answered
    assert lines[1].startswith(bytes(str(replies.TOO_MANY_ERRORS), "ascii")), said
    assert lines[2:] == [b""], said  # and the door closes


async def test_five_unknown_commands_close_the_session(port: int) -> None:
    """A fifth unknown command gets 421 4.7.0 and the door closes, a reply that tells the client the
    connection ends (aiosmtpd's own 502 does not)."""
    session = await RawSession.open(port)
    answers = [(await session.cmd("BOGUS"))[0] for _ in range(4)]
    assert all(a.startswith("500 5.5.2") for a in answers), answers
    await session.send(b"BOGUS\r\n")
    said = await _rest(session.reader)
    await session.close()
    assert said == bytes(str(replies.TOO_MANY_UNKNOWN), "ascii") + b"\r\n", said


async def test_one_client_holds_a_bounded_number_of_sessions(port: int) -> None:
    """A client holding its three sessions is refused a fourth with 421 4.7.0 while others are
    served, and is served again once one of its sessions ends."""
    held = [await RawSession.open(port, source="127.0.0.14") for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.14", 0))
    assert (await _rest(reader)).startswith(b"421 4.7.0")
    writer.close()
    other = await RawSession.open(port, source="127.0.0.15")  # another client is served
    await other.close()
    await held.pop().close()
    await asyncio.sleep(0.2)
    again = await RawSession.open(port, source="127.0.0.14")  # a slot is free again
    for session in (*held, again):
        await session.close()


async def test_a_slow_drip_through_data_is_cut(port: int) -> None:
    """DATA must end within the session timeout: one line every 0.4 s does not keep it."""
    session = await RawSession.open(port)  # 127.0.0.1: tenant acme's network
    await session.cmd("EHLO drip.test")
    assert (await session.cmd("MAIL FROM:<orders@shop.test>"))[0].startswith("250")
    assert (await session.cmd("RCPT TO:<bob@ok.test>"))[0].startswith("250")
    assert (await session.cmd("DATA"))[0].startswith("354")
    started = asyncio.get_running_loop().time()
    await session.send(b"From: orders@shop.test\r\n")
    sent = 0
    try:
        while asyncio.get_running_loop().time() - started < TIMEOUT * 5:
            await session.send(b"X-Drip: x\r\n")
            sent += 1
            await asyncio.sleep(0.4)
            if session.reader.at_eof():
                break
    except ConnectionError:
        pass
    await session.close()
    assert session.reader.at_eof() or sent < TIMEOUT * 5 / 0.4, "the drip was never cut"


async def test_guessing_one_user_from_many_addresses_locks_the_user(port: int) -> None:
    """Three wrong passwords for `shop`, each from another address (none reaches its own
    address limit), lock the name: the right password from a fourth is refused 454 4.7.0."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

    async def auth(source: str, password: str) -> int:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=port,
            start_tls=True,
            tls_context=context,
            source_address=(source, 0),
        )
        await client.connect()
        await client.ehlo()
        try:
            await client.auth_plain("shop", password)
            return 235
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code
        finally:
            client.close()

    for source in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
        assert await auth(source, "wrong") == 535
    assert await auth("127.0.0.24", PASSWORD) == 454


def test_what_the_throttle_remembers_is_bounded() -> None:
    """Guesses from 5,000 addresses under 5,000 names leave the lock-out tables at their bound, the
    oldest forgotten first: a spray of guesses cannot fill the memory."""
    throttle = AuthThrottle(max_failures=5, window=300, lockout=300, max_entries=100)
    for i in range(5000):
        throttle.failed(f"10.0.{i // 250}.{i % 250}", f"user{i}")
    assert len(throttle) <= 200

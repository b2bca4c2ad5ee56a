"""The SMTP front door as a client meets it: TLS, AUTH, lock-out, device networks, limits,
enhanced status codes and the open-relay battery (ingest as a real process)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiosmtplib
import pytest

from services.ingest import replies
from shared.directory import TenantLimits
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.smtp import RawSession, make_message
from tests.helpers.tls import client_context, make_certificate

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@dataclass
class Door:
    store: Store
    relay: int
    submission: int
    smtps: int
    legacy: int
    tls: ssl.SSLContext
    cafile: object


@pytest.fixture(scope="module")
async def door(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Door]:
    tmp = tmp_path_factory.mktemp("door")
    cert, key = make_certificate(tmp / "tls")
    database = unique("door")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    d = store.directory
    await d.upsert_tenant(TENANT, limits=TenantLimits(max_message_size=4096, max_recipients=3))
    await d.upsert_tenant(
        "printers", networks=["127.0.0.7/32"], limits=TenantLimits(messages_per_hour=2)
    )
    await d.upsert_domain("office.test", tenant="printers", verified=True)
    await d.add_credential(TENANT, "shop", password=PASSWORD)
    await d.add_credential(
        TENANT, "orders-only", password=PASSWORD, allowed_from=["orders@shop.test"]
    )
    await store.suppressions.suppress(TENANT, "gone@ok.test", reason="hard bounce", source="test")
    ports = {name: free_port() for name in ("relay", "submission", "smtps", "legacy")}
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": unique("door"),
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(ports["relay"]),
            "HATO_INGEST_SUBMISSION_PORT": str(ports["submission"]),
            "HATO_INGEST_SMTPS_PORT": str(ports["smtps"]),
            "HATO_INGEST_LEGACY_TLS_PORT": str(ports["legacy"]),
            "HATO_INGEST_HTTP_PORT": str(free_port()),
            "HATO_INGEST_TLS_CERT_FILE": str(cert),
            "HATO_INGEST_TLS_KEY_FILE": str(key),
            "HATO_INGEST_AUTH_MAX_FAILURES": "3",
            "HATO_INGEST_AUTH_LOCKOUT": "3",
        },
        log_dir=tmp,
    )
    await stack.start("ingest")
    yield Door(
        store,
        ports["relay"],
        ports["submission"],
        ports["smtps"],
        ports["legacy"],
        client_context(cert),
        cert,
    )
    assert await stack.stop_all() == {"ingest": 0}
    await store.client.drop_database(database)
    await store.close()


async def smtps(door: Door, source: str) -> aiosmtplib.SMTP:
    """A client connected to port 465 (implicit TLS) from ``source``, after EHLO."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=door.smtps,
        use_tls=True,
        tls_context=door.tls,
        source_address=(source, 0),
    )
    await client.connect()
    await client.ehlo()
    return client


async def submit(
    client: aiosmtplib.SMTP,
    *,
    mail_from="orders@shop.test",
    rcpts=("bob@ok.test",),
    data: bytes | None = None,
):
    await client.mail(mail_from)
    for r in rcpts:
        await client.rcpt(r)
    return await client.data(data or make_message(to=rcpts[0]))


async def test_submission_port_requires_starttls_then_auth(door: Door) -> None:
    """On 587 nothing but EHLO/STARTTLS works in clear; after TLS, MAIL needs AUTH (530
    5.7.0); with AUTH the message is queued."""
    raw = await RawSession.open(door.submission, source="127.0.0.5")
    ehlo = await raw.cmd("EHLO client.test")
    assert "250-STARTTLS" in ehlo and not any("AUTH" in line for line in ehlo)
    refused = await raw.cmd("MAIL FROM:<orders@shop.test>")
    assert refused[0].startswith("530 5.7.0")
    await raw.close()

    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=door.submission,
        start_tls=True,
        tls_context=door.tls,
        source_address=("127.0.0.5", 0),
    )
    await client.connect()
    await client.ehlo()
    assert "auth" in client.esmtp_extensions
    assert client.server_auth_methods == ["login", "plain"]
    for ext in ("pipelining", "enhancedstatuscodes", "8bitmime", "size"):
        assert ext in client.esmtp_extensions, ext
    assert "smtputf8" not in client.esmtp_extensions  # addresses are ASCII: not offered
    assert client.esmtp_extensions["size"] == "26214400"
    with pytest.raises(aiosmtplib.SMTPResponseException) as no_auth:
        await client.mail("orders@shop.test")
    assert (no_auth.value.code, no_auth.value.message[:5]) == (530, "5.7.0")
    await client.auth_plain("shop", PASSWORD)
    response = await submit(client)
    assert response.code == 250 and "queued as" in response.message
    await client.quit()


async def test_smtps_port_is_implicit_tls_with_auth_login(door: Door) -> None:
    """The SMTPS port speaks TLS from the first byte (RFC 8314), and AUTH LOGIN there sends mail."""
    client = await smtps(door, "127.0.0.5")
    await client.auth_login("shop", PASSWORD)
    assert (await submit(client)).code == 250
    await client.quit()


async def test_relay_port_refuses_auth_before_tls_and_strangers_without_it(door: Door) -> None:
    """Port 25 never offers AUTH in clear; a client neither from a network nor authenticated
    is refused at RCPT with 554 5.7.1."""
    raw = await RawSession.open(door.relay, source="127.0.0.5")
    ehlo = await raw.cmd("EHLO client.test")
    assert not any("AUTH" in line for line in ehlo)
    assert (await raw.cmd("AUTH PLAIN AHNob3AAeA=="))[0].startswith("538 5.7.11")
    assert (await raw.cmd("MAIL FROM:<orders@shop.test>"))[0].startswith("250 2.1.0")
    assert (await raw.cmd("RCPT TO:<bob@ok.test>"))[0] == str(replies.RELAY_DENIED)
    await raw.close()


async def test_a_device_network_relays_without_auth_and_only_for_its_domains(door: Door) -> None:
    """A printer at 127.0.0.7 (its tenant's network) relays on port 25 without AUTH, only
    from its own domain."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=door.relay, start_tls=False, source_address=("127.0.0.7", 0)
    )
    await client.connect()
    await client.ehlo()
    response = await submit(
        client, mail_from="scanner@office.test", data=make_message(from_="scanner@office.test")
    )
    assert response.code == 250
    with pytest.raises(aiosmtplib.SMTPResponseException) as foreign:
        await client.mail("orders@shop.test")
    assert (foreign.value.code, foreign.value.message[:5]) == (550, "5.7.1")
    await client.quit()


async def test_the_hourly_message_limit_answers_451_4_7_1(door: Door) -> None:
    """A tenant with messages_per_hour=2 gets its third message of the hour refused with a
    temporary 451 4.7.1; exactly two were accepted this hour."""
    codes = []
    for _ in range(3):
        raw = await RawSession.open(door.relay, source="127.0.0.7")
        await raw.cmd("EHLO printer.test")
        await raw.cmd("MAIL FROM:<scanner@office.test>")
        await raw.cmd("RCPT TO:<boss@ok.test>")
        await raw.cmd("DATA")
        await raw.send(make_message(from_="scanner@office.test", to="boss@ok.test") + b".\r\n")
        codes.append((await raw.reply())[0][:9])
        await raw.close()
    assert codes[-1] == "451 4.7.1"
    assert set(codes) <= {"250 2.0.0", "451 4.7.1"}
    assert await door.store.db.messages.count_documents({"tenant": "printers"}) == 2


async def test_wrong_passwords_fail_and_lock_the_address_out(door: Door) -> None:
    """535 5.7.8 for a bad password; after three failures even the right one gets 454 4.7.0
    until the lock-out ends; another address is not affected."""

    async def attempt(password: str, source: str) -> int:
        client = await smtps(door, source)
        try:
            await client.auth_plain("shop", password)
            return 235
        except aiosmtplib.SMTPAuthenticationError as exc:
            return exc.code
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code
        finally:
            client.close()

    assert await attempt("wrong", "127.0.0.11") == 535
    assert await attempt("wrong", "127.0.0.11") == 535
    assert await attempt("no-such", "127.0.0.11") == 535
    assert await attempt(PASSWORD, "127.0.0.11") == 454
    assert await attempt(PASSWORD, "127.0.0.12") == 235
    await asyncio.sleep(3.2)
    assert await attempt(PASSWORD, "127.0.0.11") == 235


async def test_a_restricted_credential_sends_only_from_its_addresses(door: Door) -> None:
    """A credential restricted to orders@shop.test gets 550 5.7.1 for another envelope sender or
    another From of the same domain, and sends as itself."""
    client = await smtps(door, "127.0.0.5")
    await client.auth_plain("orders-only", PASSWORD)
    with pytest.raises(aiosmtplib.SMTPResponseException) as other:
        await client.mail("ceo@shop.test")
    assert (other.value.code, other.value.message[:5]) == (550, "5.7.1")
    await client.rset()
    with pytest.raises(aiosmtplib.SMTPResponseException) as header:
        await submit(client, data=make_message(from_="ceo@shop.test"))
    assert (header.value.code, header.value.message[:5]) == (550, "5.7.1")
    await client.rset()
    assert (await submit(client)).code == 250
    await client.quit()


async def test_tenant_limits_give_precise_replies(door: Door) -> None:
    """The tenant's SIZE is advertised and enforced (552 5.3.4), its recipient limit too (452
    4.5.3), and syntax errors get 501 with an enhanced code."""
    raw = await RawSession.open(door.relay)  # 127.0.0.1: tenant acme's network
    ehlo = await raw.cmd("EHLO client.test")
    assert "250-SIZE 4096" in ehlo
    assert "250-ENHANCEDSTATUSCODES" in ehlo and "250-PIPELINING" in ehlo
    assert (await raw.cmd("MAIL FROM:<orders@shop.test> SIZE=5000"))[0].startswith("552 5.3.4")
    assert (await raw.cmd("MAIL FROM:<orders@shop.test>"))[0].startswith("250 2.1.0")
    for i in range(3):
        assert (await raw.cmd(f"RCPT TO:<r{i}@ok.test>"))[0].startswith("250 2.1.5")
    assert (await raw.cmd("RCPT TO:<r3@ok.test>"))[0] == str(replies.TOO_MANY_RECIPIENTS)
    assert (await raw.cmd("DATA"))[0].startswith("354")
    await raw.send(make_message() + (b"x" * 98 + b"\r\n") * 50 + b".\r\n")
    assert (await raw.reply())[0].startswith("552 5.3.4")
    assert (await raw.cmd("RSET"))[0].startswith("250 2.0.0")
    assert (await raw.cmd("MAIL FROM:"))[0].startswith("501 5.5.4")
    assert (await raw.cmd("BOGUS"))[0].startswith("500 5.5.2")
    await raw.close()


@pytest.mark.parametrize(
    "rcpt",
    [
        "<victim%elsewhere.test@ok.test>",
        "<@relay.test:victim@elsewhere.test>",
        "<elsewhere.test!victim@ok.test>",
        '<"victim@elsewhere.test"@ok.test>',
        "<victim>",
        "<victim@localhost>",
        "<victim@[192.0.2.1]>",
    ],
)
async def test_relay_tricks_are_refused_even_for_authorised_clients(door: Door, rcpt: str) -> None:
    """The classic open-relay battery: every trick gets a 5xx at RCPT, from a stranger and
    from an authorised network alike."""
    for source in ("127.0.0.9", "127.0.0.1"):
        raw = await RawSession.open(door.relay, source=source)
        await raw.cmd("EHLO client.test")
        await raw.cmd("MAIL FROM:<orders@shop.test>")
        answer = (await raw.cmd(f"RCPT TO:{rcpt}"))[0]
        assert answer[0] == "5", (source, rcpt, answer)
        await raw.close()


async def test_suppressed_recipients_are_not_sent_but_the_rest_goes_on(door: Door) -> None:
    """A suppressed address is recorded `suppressed` (no delivery); the other recipient of
    the same message is queued."""
    raw = await RawSession.open(door.relay)
    await raw.cmd("EHLO client.test")
    await raw.cmd("MAIL FROM:<orders@shop.test>")
    await raw.cmd("RCPT TO:<Gone@ok.test>")
    await raw.cmd("RCPT TO:<here@ok.test>")
    await raw.cmd("DATA")
    await raw.send(make_message(to="here@ok.test") + b".\r\n")
    reply = (await raw.reply())[0]
    assert reply.startswith("250 2.0.0 Ok: queued as")
    message_id = reply.rsplit(" ", 1)[1]
    states = {r["address"]: r["status"] for r in await door.store.messages.recipients(message_id)}
    assert states == {"Gone@ok.test": "suppressed", "here@ok.test": "queued"}
    await raw.close()


async def test_the_legacy_listener_serves_tls_1_0_and_the_others_do_not(door: Door) -> None:
    """An old device limited to TLS 1.0 completes STARTTLS on the legacy listener only."""
    old = client_context(door.cafile, maximum=ssl.TLSVersion.TLSv1)

    async def starttls(port: int) -> str:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, tls_context=old)
        await client.connect()
        await client.ehlo()
        try:
            await client.starttls()
            return client.transport.get_extra_info("ssl_object").version()
        except (aiosmtplib.SMTPException, ssl.SSLError, ConnectionError) as exc:
            return f"refused: {exc!r}"
        finally:
            client.close()

    assert await starttls(door.legacy) == "TLSv1"
    assert (await starttls(door.submission)).startswith("refused")


async def test_auth_inside_a_transaction_is_refused(door: Door) -> None:
    """On the relay port after STARTTLS, a stranger's MAIL FROM a foreign address is taken
    (it may be mail for a local tenant), but AUTH after it is refused with 503 5.5.1: the
    sender must be checked against the identity that sends."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1",
        port=door.relay,
        start_tls=True,
        tls_context=door.tls,
        source_address=("127.0.0.9", 0),
    )
    await client.connect()
    await client.ehlo()
    assert (await client.mail("ceo@bank.test")).code == 250
    with pytest.raises(aiosmtplib.SMTPResponseException) as inside:
        await client.auth_plain("shop", PASSWORD)
    assert (inside.value.code, inside.value.message[:5]) == (503, "5.5.1")
    await client.rset()
    await client.auth_plain("shop", PASSWORD)
    with pytest.raises(aiosmtplib.SMTPResponseException) as foreign:
        await client.mail("ceo@bank.test")
    assert (foreign.value.code, foreign.value.message[:5]) == (550, "5.7.1")
    await client.quit()


@pytest.mark.parametrize(
    ("header", "answer"),
    [
        (b"From: orders@shop.test\r\nSubject: a\rBcc: v@victim.test\r\n", "554 5.6.0"),
        (b"From: orders@shop.test\r\nSubject: a\nFrom: ceo@bank.test\r\n", "554 5.6.0"),
        (b"From: orders@shop.test\r\nFrom: ceo@bank.test\r\n", "554 5.6.0"),
        (b"From: orders@shop.test, ceo@bank.test\r\n", "554 5.6.0"),
        (b"From: orders@shop.test\r\nSubject: a\0\r\n", "554 5.6.0"),
        (
            b"Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n" * 51
            + b"From: orders@shop.test\r\n",
            "554 5.4.6",
        ),  # a mail loop
        # Over the door's 2,048-octet line limit a line is refused by the SMTP parser itself.
        (b"From: orders@shop.test\r\nX-Long: " + b"y" * 5001 + b"\r\n", "500 5.5.2"),
        # Under it but with no space to fold it at within 998 octets.
        (b"From: orders@shop.test\r\nX-Long: " + b"y" * 1500 + b"\r\n", "554 5.6.0"),
    ],
)
async def test_a_header_that_could_be_read_two_ways_is_refused(
    door: Door, header: bytes, answer: str
) -> None:
    """A bare CR or LF in a header, a second From or mailbox, a NUL, a line over the limit or
    a header that cannot be folded under 998 octets: refused after DATA, with the reason."""
    raw = await RawSession.open(door.relay)  # 127.0.0.1: tenant acme's network
    await raw.cmd("EHLO client.test")
    assert (await raw.cmd("MAIL FROM:<orders@shop.test>"))[0].startswith("250")
    assert (await raw.cmd("RCPT TO:<bob@ok.test>"))[0].startswith("250")
    assert (await raw.cmd("DATA"))[0].startswith("354")
    await raw.send(header + b"To: bob@ok.test\r\n\r\nhello\r\n.\r\n")
    reply = (await raw.reply())[0]
    assert reply.startswith(answer), reply
    await raw.close()

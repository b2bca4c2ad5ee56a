"""What comes back, end to end: DSNs and complaints arriving at the bounce listener update
recipients and the suppression list; forged return paths are refused; events reach a queue
bound to the events exchange."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest

from tests.conftest import AMQP_URL, unique
from tests.e2e.conftest import FBL, Api, delivered_to, message
from tests.helpers import reports
from tests.helpers.reports import dsn
from tests.helpers.smtp import RawSession
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


async def delivered(api: Api, address: str) -> tuple[str, str, str]:
    """Send to ``address`` and wait for delivery: (message id, recipient id, return path)."""
    r = await api.http.post("/v1/messages", json=message(to=[address]), headers=api.as_tenant())
    assert r.status_code == 202, r.text
    message_id = r.json()["id"]
    await delivered_to(api, address)
    await eventually(
        lambda: api.store.messages.recipients(message_id),
        until=lambda rs: rs[0]["status"] == "delivered",
    )
    # This message's return path: the latest delivery to the address (sends are one by one).
    return_path = [x.mail_from for x in api.sink.received if address in x.rcpt_tos][-1]
    return message_id, r.json()["recipients"][0]["id"], return_path


async def send_report(api: Api, rcpt: str, body: bytes) -> list[str]:
    """MAIL FROM:<> as bounces come; the replies to RCPT and DATA."""
    raw = await RawSession.open(api.bounce_port)
    await raw.cmd("EHLO mx.ok.test")
    assert (await raw.cmd("MAIL FROM:<>"))[0].startswith("250")
    rcpt_reply = (await raw.cmd(f"RCPT TO:<{rcpt}>"))[0]
    if not rcpt_reply.startswith("250"):
        await raw.close()
        return [rcpt_reply]
    await raw.cmd("DATA")
    await raw.send(body + b".\r\n")
    data_reply = (await raw.reply())[0]
    await raw.close()
    return [rcpt_reply, data_reply]


async def test_an_async_bounce_turns_delivered_into_bounced_and_suppresses(api: Api) -> None:
    """A DSN to a delivered mail's return path turns its recipient bounced with the reported
    code, suppresses the address, reaches a platform team's queue as a bounced event, and the
    next mail to it is not sent."""
    address = f"{unique('gone')}@ok.test"
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        exchange = await channel.get_exchange(f"{api.prefix}.events")
        await queue.bind(exchange, routing_key="acme.bounced")  # a platform team's queue

        message_id, recipient_id, return_path = await delivered(api, address)
        assert return_path.endswith("@bounces.shop.test")
        replies = await send_report(
            api, return_path, dsn(address, "5.1.1", "550 5.1.1 User unknown")
        )
        assert replies == ["250 2.1.5 Ok", "250 2.0.0 Ok: report received"]

        rcpt = await eventually(
            lambda: api.store.messages.recipient(recipient_id),
            until=lambda r: r["status"] == "bounced",
        )
        assert rcpt["reply"]["enhanced"] == "5.1.1"
        assert await api.store.suppressions.suppressed("acme", [address]) == {address}
        incoming = await eventually(
            lambda: queue.get(fail=False, no_ack=True), until=lambda m: m is not None
        )
        event = json.loads(incoming.body.split(b"\n", 1)[0])
        assert (event["type"], event["recipient_id"]) == ("bounced", recipient_id)
        assert event["detail"]["reason"] == "userunknown"
    # the next message to that address is not sent
    again = await api.http.post("/v1/messages", json=message(to=[address]), headers=api.as_tenant())
    assert again.json()["recipients"][0]["status"] == "suppressed"
    assert message_id


async def test_forged_or_unknown_return_paths_are_refused(api: Api) -> None:
    """A return path with a broken signature, or an address of the bounce domain that is no
    return path, is refused at RCPT (550 5.1.1): no report acts on mail it did not follow."""
    _, _, return_path = await delivered(api, f"{unique('x')}@ok.test")
    local, _, domain = return_path.partition("@")
    forged = local[:-3] + ("aaa" if not local.endswith("aaa") else "bbb") + "@" + domain
    assert (await send_report(api, forged, b""))[0].startswith("550 5.1.1")
    assert (await send_report(api, "postmaster@bounces.shop.test", b""))[0].startswith("550 5.1.1")


def _nested(levels: int, marker: str) -> bytes:
    raw = f"From: a@example.org\r\nSubject: Undelivered {marker}\r\nMIME-Version: 1.0\r\n"
    for i in range(levels):
        raw += f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"
    raw += "Content-Type: text/plain\r\n\r\nu@example.net: user unknown\r\n"
    return (raw + "".join(f"--b{i}--\r\n" for i in reversed(range(levels)))).encode()


async def test_every_report_is_kept_raw_before_it_is_read(api: Api) -> None:
    """Reports that crashed the parser (1,000 MIME levels, 8-bit Auto-Submitted, charset
    idna) and what is not mail are answered 250 and kept raw in ``reports``, with their
    state."""
    marker = unique("hostile")
    bodies = {
        "nested": _nested(1000, marker),
        "8bit": f"From: a@example.org\r\nAuto-Submitted: auto-replied \xff\r\n"
        f"Subject: {marker}\r\n\r\nx\r\n".encode("latin-1"),
        "idna": f"From: a@example.org\r\nSubject: Undelivered {marker}\r\n"
        "Content-Type: text/plain; charset=idna\r\n\r\n\xff u@example.net unknown\r\n".encode(
            "latin-1"
        ),
        "not mail": f"{marker} is not mail\r\n".encode(),
    }
    for body in bodies.values():
        replies = await send_report(api, FBL, body)
        assert replies[-1].startswith("250"), replies
    docs = await eventually(
        lambda: api.store.db.reports.find({"raw": {"$exists": True}}).to_list(None),
        until=lambda ds: (
            sum(marker.encode() in bytes(d["raw"]) for d in ds) == len(bodies)
            and all(d["state"] != "received" for d in ds if marker.encode() in bytes(d["raw"]))
        ),
    )
    states = {
        next(
            k for k, b in bodies.items() if bytes(d["raw"]).rstrip(b"\r\n") == b.rstrip(b"\r\n")
        ): d["state"]
        for d in docs
        if marker.encode() in bytes(d["raw"])
    }
    assert states == {
        "nested": "parsed",
        "8bit": "parsed",
        "idna": "parsed",
        "not mail": "not-mail",
    }


async def test_a_complaint_marks_complained_and_suppresses(api: Api) -> None:
    """An ARF complaint to the feedback-loop address turns the original recipient complained
    and suppresses the address."""
    address = f"{unique('angry')}@ok.test"
    _, recipient_id, return_path = await delivered(api, address)
    arf = reports.arf(address, return_path)
    replies = await send_report(api, FBL, arf)
    assert replies[-1].startswith("250 2.0.0")
    rcpt = await eventually(
        lambda: api.store.messages.recipient(recipient_id),
        until=lambda r: r["status"] == "complained",
    )
    assert rcpt["history"][-1]["reason"] == "feedback"
    assert await api.store.suppressions.suppressed("acme", [address]) == {address}


async def test_soft_bounces_suppress_only_after_repeats_and_for_a_while(api: Api) -> None:
    """A full mailbox suppresses only at its third bounce, and only until the suppression
    expires."""
    address = f"{unique('full')}@ok.test"
    for n in range(3):
        _, _, return_path = await delivered(api, address)
        await send_report(api, return_path, dsn(address, "4.2.2", "452 4.2.2 Mailbox full"))
        await asyncio.sleep(0.3)
        suppressed = await api.store.suppressions.suppressed("acme", [address])
        assert suppressed == (set() if n < 2 else {address}), n
    entry = await api.store.db.suppressions.find_one({"address": address})
    assert entry["expires_at"] is not None and "mailboxfull" in entry["reason"]


async def test_blocks_are_reported_but_never_suppress(api: Api) -> None:
    """A block of the sending host bounces the recipient with reason blocked, but the address
    is not suppressed: the recipient did nothing wrong."""
    address = f"{unique('blocked')}@ok.test"
    _, recipient_id, return_path = await delivered(api, address)
    await send_report(
        api,
        return_path,
        dsn(address, "5.7.1", "554 5.7.1 Client host blocked using zen.spamhaus.org"),
    )
    rcpt = await eventually(
        lambda: api.store.messages.recipient(recipient_id), until=lambda r: r["status"] == "bounced"
    )
    assert rcpt["history"][-1]["reason"] == "blocked"
    assert await api.store.suppressions.suppressed("acme", [address]) == set()


async def test_blocks_show_per_destination(api: Api) -> None:
    """The destinations report counts bounces by domain and reason."""
    address = f"{unique('b')}@ok.test"
    _, recipient_id, return_path = await delivered(api, address)
    await send_report(
        api,
        return_path,
        dsn(address, "5.7.1", "554 5.7.1 Service unavailable; client host blocked by policy"),
    )
    await eventually(
        lambda: api.store.messages.recipient(recipient_id), until=lambda r: r["status"] == "bounced"
    )

    async def report():
        r = await api.http.get("/v1/reports/destinations", headers=api.as_tenant())
        return r.json()["destinations"]

    rows = await eventually(
        report,
        until=lambda rows: any(r["domain"] == "ok.test" and r["reason"] == "blocked" for r in rows),
    )
    assert all(set(r) == {"domain", "type", "reason", "count"} for r in rows)


async def test_a_refusal_at_rcpt_is_a_missing_mailbox_and_after_data_a_filter(api: Api) -> None:
    """The same "550 No such user" from the recipient's server: refused at RCPT it is
    userunknown (suppressed at once), after DATA the recipient's filter (filtered, Sisimai)."""
    at_rcpt, after_data = f"{unique('rcptgone')}@ok.test", f"{unique('datagone')}@ok.test"
    refusal = "550 No such user"
    rcpt_reply, data_reply = api.sink.rcpt_reply, api.sink.data_reply
    api.sink.rcpt_reply = lambda a: refusal if a == at_rcpt else rcpt_reply(a)
    api.sink.data_reply = lambda rs: refusal if after_data in rs else data_reply(rs)
    try:
        reasons = {}
        for address in (at_rcpt, after_data):
            r = await api.http.post(
                "/v1/messages", json=message(to=[address]), headers=api.as_tenant()
            )
            assert r.status_code == 202, r.text
            rcpt = await eventually(
                lambda r=r: api.store.messages.recipient(r.json()["recipients"][0]["id"]),
                until=lambda x: any("reason" in h for h in x["history"]),
            )
            assert rcpt["status"] == "bounced" and rcpt["reply"]["code"] == 550
            reasons[address] = next(h["reason"] for h in rcpt["history"] if "reason" in h)
    finally:
        api.sink.rcpt_reply, api.sink.data_reply = rcpt_reply, data_reply
    assert reasons == {at_rcpt: "userunknown", after_data: "filtered"}
    suppressed = await eventually(
        lambda: api.store.suppressions.suppressed("acme", [at_rcpt, after_data]),
        until=lambda s: at_rcpt in s,
    )
    assert suppressed == {at_rcpt}


def dsn_naming(recipients: list[str], status: str, text: str) -> bytes:
    """One DSN with a failed block for each of ``recipients``."""
    blocks = "".join(
        f"\r\nFinal-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {text}\r\n"
        for r in recipients
    )
    return (
        "From: MAILER-DAEMON@mx.ok.test\r\nTo: bounces\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nThe mail system\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.ok.test\r\n"
        f"{blocks}\r\n--B--\r\n"
    ).encode()


async def test_one_return_path_and_a_dsn_naming_others_bounces_only_its_own_recipient(
    api: Api,
) -> None:
    """Issue 16's attack over SMTP: a recipient sends a DSN naming itself and two fellow
    recipients to its own return path; only its own recipient bounces and is suppressed."""
    me, v1, v2 = (f"{unique(n)}@ok.test" for n in ("me", "victim1", "victim2"))
    r = await api.http.post("/v1/messages", json=message(to=[me, v1, v2]), headers=api.as_tenant())
    assert r.status_code == 202, r.text
    ids = {x["address"]: x["id"] for x in r.json()["recipients"]}
    for address in (me, v1, v2):
        await delivered_to(api, address)
    await eventually(
        lambda: api.store.messages.recipients(r.json()["id"]),
        until=lambda rs: all(x["status"] == "delivered" for x in rs),
    )
    return_path = next(x.mail_from for x in api.sink.received if me in x.rcpt_tos)
    report = dsn_naming([v1, me, v2], "5.1.1", "550 5.1.1 User unknown")
    assert await send_report(api, return_path, report) == [
        "250 2.1.5 Ok",
        "250 2.0.0 Ok: report received",
    ]
    await eventually(
        lambda: api.store.messages.recipient(ids[me]), until=lambda x: x["status"] == "bounced"
    )
    await asyncio.sleep(0.5)  # had the others been touched, it would be by now
    for victim in (v1, v2):
        assert (await api.store.messages.recipient(ids[victim]))["status"] == "delivered"
    assert await api.store.suppressions.suppressed("acme", [me, v1, v2]) == {me}


async def test_the_bounce_listener_takes_at_most_ten_return_paths_per_transaction(
    api: Api,
) -> None:
    """RCPTs beyond the cap get 452 4.5.3 (the sender may retry them in another transaction)."""
    _, _, return_path = await delivered(api, f"{unique('cap')}@ok.test")
    raw = await RawSession.open(api.bounce_port)
    await raw.cmd("EHLO mx.ok.test")
    assert (await raw.cmd("MAIL FROM:<>"))[0].startswith("250")
    replies = [(await raw.cmd(f"RCPT TO:<{return_path}>"))[0] for _ in range(12)]
    await raw.close()
    assert replies[:10] == ["250 2.1.5 Ok"] * 10
    assert all(reply.startswith("452 4.5.3") for reply in replies[10:]), replies

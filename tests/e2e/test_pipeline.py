"""SMTP in → signed → delivered to real SMTP sinks, through the four service processes on the
real RabbitMQ and MongoDB-compatible server."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import dkim
import httpx
import pytest

from services.ingest import replies
from shared.broker import QUEUE_HEADER, REASON_HEADER
from shared.dkim import txt_record_name, txt_record_value
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from shared.views import message_view
from tests.conftest import AMQP_URL, DOMAIN, MONGODB_URL, SELECTOR, provision, unique
from tests.helpers.sinks import Sink
from tests.helpers.smtp import RawSession, make_message, send
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "operator-" + unique("tok")


@dataclass
class Pipeline:
    stack: Stack
    store: Store
    prefix: str
    smtp_port: int
    http_port: int
    ok: Sink
    bouncing: Sink
    flaky: Sink
    public_key: str
    master_key: str


@pytest.fixture(scope="module")
async def pipeline(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Pipeline]:
    prefix, database = unique("e2e"), unique("e2e")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    ok = await Sink(host="127.0.0.2").start()
    bouncing = await Sink(host="127.0.0.3", reply=lambda _n: "550 5.1.1 No such user").start()
    flaky = await Sink(
        host="127.0.0.4",
        reply=lambda n: "451 4.7.1 Try again later" if n == 1 else "250 2.0.0 Ok: finally",
    ).start()
    smtp_port, http_port = free_port(), free_port()
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_AMQP_ERROR_BACKOFF": "0.5",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_INGEST_ADMIN_TOKEN": ADMIN_TOKEN,
            "HATO_DISPATCHER_ROUTES": (
                f"bounce.test={bouncing.address},flaky.test={flaky.address},*={ok.address}"
            ),
            "HATO_DISPATCHER_RETRY_DELAYS": "1",
            "HATO_LOG_LEVEL": "DEBUG",
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await stack.start_all()
    yield Pipeline(
        stack,
        store,
        prefix,
        smtp_port,
        http_port,
        ok,
        bouncing,
        flaky,
        dkim_key.public_b64,
        master_key,
    )
    await stack.stop_all()
    for sink in (ok, bouncing, flaky):
        await sink.stop()
    await store.client.drop_database(database)
    await store.close()


async def recipient(store: Store, message_id: str, status: str) -> dict:
    docs = await eventually(
        lambda: store.messages.recipients(message_id),
        until=lambda rs: bool(rs) and all(r["status"] == status for r in rs),
    )
    return docs[0]


async def event_types(store: Store, message_id: str, *expected: str) -> list[str]:
    events = await eventually(
        lambda: store.events.of_message(message_id),
        until=lambda es: set(expected) <= {e["type"] for e in es},
    )
    return [e["type"] for e in events]


async def test_mail_arrives_signed_and_is_recorded_delivered(pipeline: Pipeline) -> None:
    """A relayed mail reaches the sink with a DKIM signature that verifies against the
    published key, and its recipient is `delivered` with the sink's reply."""
    outcome = await send(pipeline.smtp_port, rcpts=("bob@ok.test",))
    assert outcome.code == 250, outcome
    message_id = outcome.queued_id

    received = (await pipeline.ok.wait_for(1))[-1]
    assert received.rcpt_tos == ["bob@ok.test"]
    assert received.data.startswith(b"DKIM-Signature:")
    record = txt_record_value({"public_key": pipeline.public_key, "algorithm": "rsa-sha256"})

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name.decode().rstrip(".") == txt_record_name(DOMAIN, SELECTOR)
        return record.encode()

    assert dkim.verify(received.data, dnsfunc=dns)
    assert base64.b64decode(pipeline.public_key)  # the record carries a real key

    rcpt = await recipient(pipeline.store, message_id, "delivered")
    assert rcpt["reply"]["code"] == 250
    assert rcpt["reply"]["text"] == "Ok: stored"
    assert rcpt["attempts"] == 1
    assert (await message_view(pipeline.store, message_id))["status"] == "delivered"
    types = await event_types(pipeline.store, message_id, "accepted", "signed", "delivered")
    assert types.index("accepted") < types.index("delivered")


async def test_a_550_makes_the_recipient_bounced(pipeline: Pipeline) -> None:
    """A destination answering 550 leaves the recipient `bounced` with that reply."""
    outcome = await send(pipeline.smtp_port, rcpts=("nobody@bounce.test",))
    assert outcome.code == 250, outcome
    rcpt = await recipient(pipeline.store, outcome.queued_id, "bounced")
    assert (rcpt["reply"]["code"], rcpt["reply"]["enhanced"]) == (550, "5.1.1")
    assert rcpt["reply"]["text"] == "No such user"
    await event_types(pipeline.store, outcome.queued_id, "bounced")
    assert (await message_view(pipeline.store, outcome.queued_id))["status"] == "bounced"


async def test_a_451_defers_and_the_retry_delivers(pipeline: Pipeline) -> None:
    """A 451 makes the recipient `deferred`; the TTL retry queue brings the job back and the
    second attempt delivers."""
    outcome = await send(pipeline.smtp_port, rcpts=("carol@flaky.test",))
    assert outcome.code == 250, outcome
    await eventually(  # between the attempts, the message itself says it is deferred
        lambda: message_view(pipeline.store, outcome.queued_id),
        until=lambda view: view is not None and view["status"] == "deferred",
    )
    rcpt = await recipient(pipeline.store, outcome.queued_id, "delivered")
    assert rcpt["attempts"] == 2
    assert rcpt["reply"]["text"] == "Ok: finally"
    types = await event_types(pipeline.store, outcome.queued_id, "deferred", "delivered")
    assert types.index("deferred") < types.index("delivered")
    assert pipeline.flaky.attempts == 2


async def test_several_domains_in_one_message_each_get_their_fate(pipeline: Pipeline) -> None:
    """One message to three destinations fans out; each recipient ends in its own state."""
    outcome = await send(
        pipeline.smtp_port, rcpts=("dave@ok.test", "erin@bounce.test", "frank@ok.test")
    )
    assert outcome.code == 250, outcome
    docs = await eventually(
        lambda: pipeline.store.messages.recipients(outcome.queued_id),
        until=lambda rs: all(r["status"] in ("delivered", "bounced") for r in rs),
    )
    assert {r["address"]: r["status"] for r in docs} == {
        "dave@ok.test": "delivered",
        "erin@bounce.test": "bounced",
        "frank@ok.test": "delivered",
    }


@pytest.mark.parametrize(
    "fake_end", [b"\n.\n", b"\r.\r", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"]
)
async def test_smuggled_end_of_data_does_not_split_a_message(
    pipeline: Pipeline, fake_end: bytes
) -> None:
    """A bare-LF/CR end-of-data variant followed by a second transaction stays inside the one
    message: one 250, one delivery, and the smuggled commands arrive as text."""
    tag = unique("smuggle")
    smuggled = (
        b"MAIL FROM:<orders@shop.test>\r\nRCPT TO:<victim@ok.test>\r\nDATA\r\n"
        b"From: orders@shop.test\r\nSubject: " + tag.encode() + b"\r\n\r\nspoofed\r\n"
    )
    before = len(pipeline.ok.received)
    raw = await RawSession.open(pipeline.smtp_port)
    await raw.cmd("EHLO client.test")
    await raw.cmd("MAIL FROM:<orders@shop.test>")
    await raw.cmd("RCPT TO:<smuggle@ok.test>")
    assert (await raw.cmd("DATA"))[0].startswith("354")
    await raw.send(
        make_message(to="smuggle@ok.test") + b"body" + fake_end + smuggled + b"\r\n.\r\n"
    )
    first = await raw.reply()
    assert first[0].startswith("250 2.0.0 Ok: queued as")
    assert (await raw.cmd("QUIT"))[0].startswith("221")
    await raw.close()

    received = await pipeline.ok.wait_for(before + 1)
    await asyncio.sleep(0.3)  # a second, smuggled message would arrive by now
    assert len(pipeline.ok.received) == before + 1
    assert received[-1].rcpt_tos == ["smuggle@ok.test"]
    assert b"RCPT TO:<victim@ok.test>" in received[-1].data
    assert await pipeline.store.db.messages.count_documents({"subject": tag}) == 0


async def test_a_stranger_is_refused_relaying(pipeline: Pipeline) -> None:
    """A client from 127.0.0.9 (not an authorised network) gets 554 5.7.1 at RCPT."""
    outcome = await send(pipeline.smtp_port, source="127.0.0.9")
    assert (outcome.stage, outcome.code) == ("rcpt", replies.RELAY_DENIED.code)
    assert outcome.message.startswith(replies.RELAY_DENIED.enhanced)


async def test_a_foreign_sender_domain_is_refused(pipeline: Pipeline) -> None:
    """An authorised client may not use a domain that is not its tenant's (550 5.7.1)."""
    outcome = await send(pipeline.smtp_port, mail_from="ceo@bank.test")
    assert (outcome.stage, outcome.code) == ("mail", 550)
    assert outcome.message.startswith("5.7.1")
    outcome = await send(pipeline.smtp_port, data=make_message(from_="ceo@bank.test"))
    assert (outcome.stage, outcome.code) == ("data", 550)


async def test_an_undecodable_message_is_dead_lettered_and_work_goes_on(
    pipeline: Pipeline,
) -> None:
    """Garbage on the sign queue lands in the dead-letter queue with its reason; the signer
    keeps running and the next mail is delivered."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        work = await channel.get_exchange(f"{pipeline.prefix}.work")
        await work.publish(aio_pika.Message(b"\x00not a hato message"), routing_key="sign")
        dead = await channel.get_queue(f"{pipeline.prefix}.dead")

        async def take():
            return await dead.get(fail=False, no_ack=True)

        message = await eventually(take, until=lambda m: m is not None)
        assert message.body == b"\x00not a hato message"
        assert message.headers[QUEUE_HEADER] == f"{pipeline.prefix}.sign"
        assert "undecodable" in message.headers[REASON_HEADER]

    before = len(pipeline.ok.received)
    outcome = await send(pipeline.smtp_port, rcpts=("gina@ok.test",))
    assert outcome.code == 250
    await recipient(pipeline.store, outcome.queued_id, "delivered")
    assert len(pipeline.ok.received) == before + 1


async def test_the_http_api_shows_a_message_to_the_operator_only(pipeline: Pipeline) -> None:
    """GET /v1/messages/{id} with the operator token shows every recipient's fate; without it,
    or for an unknown id, the answer is a problem document."""
    outcome = await send(pipeline.smtp_port, rcpts=("hank@ok.test", "ivy@bounce.test"))
    await eventually(
        lambda: pipeline.store.messages.recipients(outcome.queued_id),
        until=lambda rs: {r["status"] for r in rs} == {"delivered", "bounced"},
    )
    base = f"http://127.0.0.1:{pipeline.http_port}/v1/messages"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient() as client:
        ok = await client.get(f"{base}/{outcome.queued_id}", headers=auth)
        assert ok.status_code == 200
        body = ok.json()
        assert body["id"] == outcome.queued_id and body["tenant"] == "acme"
        assert {r["address"]: (r["status"], r["reply"]["code"]) for r in body["recipients"]} == {
            "hank@ok.test": ("delivered", 250),
            "ivy@bounce.test": ("bounced", 550),
        }
        assert "accepted" in {e["type"] for e in body["events"]}
        # The message's own status follows its recipients' final states.
        assert body["status"] == "partially_delivered"
        assert body["recipient_counts"] == {"delivered": 1, "bounced": 1}
        assert body["stage"] == "signed"

        for headers in ({}, {"Authorization": "Bearer wrong"}):
            denied = await client.get(f"{base}/{outcome.queued_id}", headers=headers)
            assert denied.status_code == 401
            assert denied.headers["content-type"] == "application/problem+json"
            assert denied.json()["title"] == "Unauthorized"
        missing = await client.get(f"{base}/nope", headers=auth)
        assert (missing.status_code, missing.json()["status"]) == (404, 404)


async def test_every_recipient_has_its_whole_timeline_in_order(pipeline: Pipeline) -> None:
    """Each service writes the events of the changes it makes: a recipient deferred once and
    then delivered, one delivered at once and one bounced each have every event, once, in
    the order the changes happened, with the message's signing between acceptance and the
    first attempt."""
    pipeline.flaky.attempts = 0  # its next DATA is the first: 451, then 250
    outcome = await send(
        pipeline.smtp_port, rcpts=("kim@ok.test", "lee@flaky.test", "max@bounce.test")
    )
    assert outcome.code == 250, outcome
    expected = {
        "kim@ok.test": ["accepted", "delivered"],
        "lee@flaky.test": ["accepted", "deferred", "delivered"],
        "max@bounce.test": ["accepted", "bounced"],
    }

    def per_recipient(events: list[dict]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in events:
            if e.get("address"):
                out.setdefault(e["address"], []).append(e["type"])
        return out

    events = await eventually(
        lambda: pipeline.store.events.of_message(outcome.queued_id),
        until=lambda es: per_recipient(es) == expected,
        timeout=30,
    )
    times = [e["at"] for e in events]
    assert times == sorted(times)
    signed = [i for i, e in enumerate(events) if e["type"] == "signed"]
    assert len(signed) == 1
    first_attempt = min(
        i for i, e in enumerate(events) if e["type"] in ("delivered", "deferred", "bounced")
    )
    last_accepted = max(i for i, e in enumerate(events) if e["type"] == "accepted")
    assert last_accepted < signed[0] < first_attempt
    bounced = next(e for e in events if e["type"] == "bounced")
    assert bounced["detail"]["reason"] == "userunknown"  # classified where it is written


async def test_a_burst_is_written_published_and_delivered_whole_and_once(
    pipeline: Pipeline,
) -> None:
    """Sixty mails from twenty sessions at once, so that the services' writes and publishes
    go in groups: every recipient is delivered once, the store has each one's accepted,
    signed and delivered events once and in order, and a platform team's queue on the events
    exchange receives every one of those events once."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(await channel.get_exchange(f"{pipeline.prefix}.events"), "acme.#")
        before = len(pipeline.ok.received)

        async def session(n: int) -> list[str]:
            ids = []
            for i in range(3):
                outcome = await send(pipeline.smtp_port, rcpts=(f"burst{n}-{i}@ok.test",))
                assert outcome.code == 250, outcome
                ids.append(outcome.queued_id)
            return ids

        message_ids = [m for ids in await asyncio.gather(*map(session, range(20))) for m in ids]
        await pipeline.ok.wait_for(before + 60)
        published: dict[str, list[str]] = {}
        wanted = {(m, t) for m in message_ids for t in ("accepted", "signed", "delivered")}
        seen: set[tuple[str, str]] = set()
        ids: list[str] = []
        async with asyncio.timeout(30):
            async with queue.iterator() as incoming:
                async for message in incoming:
                    await message.ack()
                    event = json.loads(message.body.split(b"\n", 1)[0])
                    if event["message_id"] in set(message_ids):
                        ids.append(event["id"])
                        seen.add((event["message_id"], event["type"]))
                        published.setdefault(event["message_id"], []).append(event["type"])
                    if wanted <= seen:
                        break
    assert len(ids) == len(set(ids)), "an event published twice"
    await asyncio.sleep(0.5)
    arrived = [r for r in pipeline.ok.received[before:] if b"burst" in r.data]
    assert len(arrived) == 60  # each delivered once
    for message_id in message_ids:
        stored = [e["type"] for e in await pipeline.store.events.of_message(message_id)]
        assert stored == ["accepted", "signed", "delivered"], (message_id, stored)
        assert sorted(published[message_id]) == ["accepted", "delivered", "signed"]


async def test_each_service_serves_health_readiness_and_metrics(pipeline: Pipeline) -> None:
    """Every service answers /healthz, /readyz and Prometheus /metrics on its own port, and the
    counters show the work done."""
    expected = {
        "ingest": "hato_ingest_accepted_total",
        "signer": "hato_signer_messages_total",
        "dispatcher": "hato_dispatcher_recipients_total",
        "bounce": 'hato_consumed_messages_total{outcome="ack",queue="results"}',
    }
    async with httpx.AsyncClient() as client:
        for name, process in pipeline.stack.processes.items():
            health = await client.get(f"{process.ops_url}/healthz")
            assert health.json() == {"service": name, "status": "ok"}
            ready = await client.get(f"{process.ops_url}/readyz")
            checks = {"serving": True, "broker": True, "store": True}
            if name == "signer":
                checks["dkim_keys"] = True  # every live DKIM key opens with the master key
            assert ready.json()["checks"] == checks
            metrics = (await client.get(f"{process.ops_url}/metrics")).text
            assert expected[name] in metrics


async def test_every_service_stops_cleanly_on_sigterm(pipeline: Pipeline) -> None:
    """SIGTERM drains each service and it exits 0 (this runs last in the module); no secret
    ever reached a log line."""
    codes = await pipeline.stack.stop_all()
    assert codes == {"ingest": 0, "signer": 0, "dispatcher": 0, "bounce": 0}
    for process in pipeline.stack.processes.values():
        log = process.log()
        assert '"event": "stopped"' in log
        assert pipeline.master_key not in log
        assert ADMIN_TOKEN not in log
        assert "PRIVATE KEY" not in log

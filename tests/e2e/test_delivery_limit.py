"""A job RabbitMQ dead-letters itself, past a quorum queue's delivery limit, takes no mail into
limbo either: its recipients end `failed` with the reason and a `failed` event each, and
`hato dead list|retry` shows the job and puts it back — the services as real processes, with
quorum queues."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import httpx
import pytest

from shared import schemas
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, provision, unique
from tests.helpers.cli import run_hato
from tests.helpers.sinks import Sink
from tests.helpers.smtp import send
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

LIMIT = 2  # HATO_AMQP_DELIVERY_LIMIT: handed out three times, the job is dead-lettered


@dataclass
class Limited:
    store: Store
    stack: Stack
    sink: Sink
    smtp_port: int
    prefix: str
    env: dict[str, str]


@pytest.fixture
async def limited(tmp_path, master_key, dkim_key) -> AsyncIterator[Limited]:
    """Ingest and bounce on quorum queues with a delivery limit of 2; no signer yet."""
    database, prefix = unique("limit"), unique("limit")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    sink = await Sink(host="127.0.0.2").start()
    smtp_port = free_port()
    env = {
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": prefix,
        "HATO_AMQP_QUEUE_TYPE": "quorum",
        "HATO_AMQP_DELIVERY_LIMIT": str(LIMIT),
        "HATO_AMQP_QUEUE_EXPIRES": "600000",
        "HATO_MONGODB_URL": MONGODB_URL,
        "HATO_MONGODB_DATABASE": database,
        "HATO_MASTER_KEY": master_key,
    }
    stack = Stack(
        env={
            **env,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(free_port()),
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_BOUNCE_SMTP_PORT": str(free_port()),
        },
        log_dir=tmp_path,
    )
    await stack.start("ingest")
    await stack.start("bounce")
    yield Limited(store, stack, sink, smtp_port, prefix, env)
    await stack.stop_all()
    await sink.stop()
    await store.client.drop_database(database)
    await store.close()


async def never_acked(queue: str) -> int:
    """Take the message waiting in ``queue`` and close the channel without an ack (a
    consumer that dies with it), again and again until RabbitMQ no longer hands it out;
    returns how often it did."""
    handed_out = 0
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:

        async def once() -> bool:
            nonlocal handed_out
            channel = await connection.channel()
            message = await (await channel.get_queue(queue)).get(fail=False, no_ack=False)
            await channel.close()  # never acked: back to the queue, one delivery more
            handed_out += message is not None
            return message is None and handed_out > 0

        await eventually(once, until=bool, timeout=30)
    return handed_out


async def test_a_job_past_the_delivery_limit_fails_its_recipients_and_can_be_retried(
    limited: Limited,
) -> None:
    """A sign job handed out past the delivery limit without an ack ends its recipients
    `failed` (the reason names the limit) with a `failed` event each on the events exchange,
    is listed by `hato dead list`, and `hato dead retry` makes them wait again and delivers."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        failed_events = await channel.declare_queue(exclusive=True)
        await failed_events.bind(f"{limited.prefix}.events", routing_key="#.failed")
        addresses = (f"{unique('a')}@ok.test", f"{unique('b')}@ok.test")
        message_id = (await send(limited.smtp_port, rcpts=addresses)).queued_id

        assert await never_acked(f"{limited.prefix}.sign") == LIMIT + 1
        recipients = await eventually(
            lambda: limited.store.messages.recipients(message_id),
            until=lambda rs: all(r["status"] == "failed" for r in rs),
            timeout=30,
        )
        reason = f"handed out 3 times without an ack (delivery limit of {limited.prefix}.sign)"
        for r in recipients:
            assert r["reply"]["enhanced"] == "5.3.0" and reason in r["reply"]["text"]

        published: list[schemas.Event] = []

        async def collect() -> list[schemas.Event]:
            while message := await failed_events.get(fail=False, no_ack=True):
                published.append(schemas.decode(message.body)[0])
            return published

        await eventually(collect, until=lambda es: len(es) >= len(addresses))
        assert sorted(e.recipient_id for e in published) == sorted(r["_id"] for r in recipients)
        assert all(e.message_id == message_id and reason in e.reply.text for e in published)
    stored = [e["type"] for e in await limited.store.events.of_message(message_id)]
    assert stored.count("dead_lettered") == 1 and stored.count("failed") == 2
    async with httpx.AsyncClient() as http:  # the alert on dead letters counts it
        metrics = (await http.get(f"{limited.stack.processes['bounce'].ops_url}/metrics")).text
    assert 'hato_consumed_messages_total{outcome="dead",queue="sign"} 1.0' in metrics

    code, out, err = await run_hato(limited.env, "dead", "list", "--json")
    assert code == 0, err
    jobs = [j for j in json.loads(out) if j.get("message_id") == message_id]
    assert [(j["kind"], j["queue"], j["reason"]) for j in jobs] == [
        ("sign", f"{limited.prefix}.sign", reason)
    ]
    assert sorted(jobs[0]["recipients"]) == sorted(r["_id"] for r in recipients)

    code, out, err = await run_hato(limited.env, "dead", "retry", jobs[0]["id"])
    assert code == 0 and "1 retried" in out, (out, err)
    waiting = await limited.store.messages.recipients(message_id)
    assert [r["status"] for r in waiting] == ["queued", "queued"]
    await limited.stack.start("signer")
    await limited.stack.start("dispatcher")
    await eventually(
        lambda: limited.store.messages.recipients(message_id),
        until=lambda rs: all(r["status"] == "delivered" for r in rs),
        timeout=30,
    )
    assert {a for r in limited.sink.received for a in r.rcpt_tos} >= set(addresses)

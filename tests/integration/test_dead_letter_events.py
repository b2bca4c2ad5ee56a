"""The bounce service's side of dead letters: a dead_lettered event ends the job's waiting
recipients `failed`, and their `failed` events reach the events exchange even when the first
publish of them failed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aio_pika
import pytest

from services.bounce.service import BrokerDeadLetters, EventRecorder
from shared import schemas
from shared.broker import Broker, Delivery, Queue, dead_lettered_event, undecoded
from shared.errors import Unavailable
from shared.schemas import EventType, Recipient, SignJob
from shared.settings import BrokerSettings
from shared.store import Store
from shared.timeline import Timeline
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

JOB = SignJob(
    message_id="m-dead",
    tenant="acme",
    mail_from="a@shop.test",
    from_domain="shop.test",
    recipients=(Recipient(id="r1", address="b@ok.test"), Recipient(id="r2", address="c@ok.test")),
    pool="default",
)


@pytest.fixture
async def brokers(broker_settings: BrokerSettings) -> AsyncIterator[tuple[Broker, Broker]]:
    """The bounce service's consuming broker, and the one its timeline publishes with."""
    consuming = Broker(broker_settings, name="bounce", pools=["default"])
    publishing = Broker(broker_settings, name="bounce-events", pools=["default"])
    await consuming.connect()
    await publishing.connect()
    yield consuming, publishing
    await consuming.drain(5)
    for b in (consuming, publishing):
        await b.close()


async def test_failed_events_are_published_again_when_their_dead_letter_comes_back(
    brokers: tuple[Broker, Broker], store: Store
) -> None:
    """The first run fails the recipients and stores their `failed` events, then cannot
    publish them (the broker is away): the dead_lettered event comes back and the same
    `failed` events (same ids) are published, though the recipients were failed already."""
    consuming, publishing = brokers
    for r in JOB.recipients:
        await store.db.recipients.insert_one(
            {"_id": r.id, "message_id": JOB.message_id, "address": r.address, "status": "queued"}
        )
    connection = await aio_pika.connect(consuming.settings.url)
    async with connection:
        channel = await connection.channel()
        failed = await channel.declare_queue(exclusive=True)
        await failed.bind(consuming.full("events"), routing_key="#.failed")
        await publishing.close()  # the failed events' publish fails: Unavailable
        await consuming.consume(
            Queue.EVENTS_STORE, EventRecorder(store, Timeline(store.events, publishing)).handle
        )
        event = dead_lettered_event(
            consuming.full(Queue.SIGN), JOB, b"job", "handler failed 6 times", None
        )
        assert event is not None
        await consuming.publish(event)

        stored = await eventually(
            lambda: store.events.of_message(JOB.message_id),
            until=lambda es: sum(e["type"] == EventType.FAILED.value for e in es) == 2,
        )
        assert {r["status"] for r in await store.messages.recipient_docs(JOB.message_id)} == {
            "failed"
        }
        await publishing.connect()  # back: the next try of the dead_lettered event publishes

        published: list[schemas.Event] = []

        async def collect() -> list[schemas.Event]:
            while message := await failed.get(fail=False, no_ack=True):
                published.append(schemas.decode(message.body)[0])
            return published

        await eventually(collect, until=lambda es: len(es) >= 2)
    assert sorted(e.id for e in published) == sorted(
        e["_id"] for e in stored if e["type"] == EventType.FAILED.value
    )
    assert sorted(e.recipient_id for e in published) == ["r1", "r2"]


async def test_a_broker_dead_letter_event_keeps_its_id_when_its_publish_is_retried(
    broker_settings: BrokerSettings,
) -> None:
    """The watch of dead letters cannot publish the event of a job RabbitMQ dead-lettered (past
    the sign queue's delivery limit): the copy comes back through a retry queue, and the event
    then published has the id and reason consume() would give that death."""
    settings = broker_settings.model_copy(
        update={"queue_type": "quorum", "delivery_limit": 1, "error_backoff": 0.05}
    )
    consuming = Broker(settings, name="bounce", pools=["default"])
    publishing = Broker(settings, name="bounce-events", pools=["default"])
    await consuming.connect()
    failures: list[Exception] = []

    async def watch(d: Delivery) -> None:
        try:
            await BrokerDeadLetters(publishing).handle(d)
        except Exception as exc:
            failures.append(exc)
            raise

    try:
        await consuming.consume(Queue.DEAD_WATCH, watch, decode=undecoded)
        await consuming.publish(JOB, b"payload")
        connection = await aio_pika.connect(settings.url)
        async with connection:
            for _ in range(2):  # the limit, then once more: dead-lettered on that return
                channel = await connection.channel()
                q = await channel.get_queue(consuming.full(Queue.SIGN))
                await eventually(lambda q=q: q.get(fail=False, no_ack=False))
                await channel.close()
        await eventually(lambda: asyncio.sleep(0, failures))
        assert isinstance(failures[0], Unavailable)
        await publishing.connect()
        message = await eventually(lambda: take(consuming, Queue.EVENTS_STORE))
    finally:
        await consuming.drain(5)
        await consuming.close()
        await publishing.close()
    event = schemas.decode(message.body)[0]
    sign = consuming.full(Queue.SIGN)
    reason = f"handed out 2 times without an ack (delivery limit of {sign})"
    expected = dead_lettered_event(sign, JOB, schemas.encode(JOB, b"payload"), reason, "m-dead")
    assert event.model_dump(exclude={"at"}) == expected.model_dump(exclude={"at"})


async def take(broker: Broker, queue: str):
    """One message from a queue, or None."""
    q = await broker._publish_channel.get_queue(broker.full(queue))
    return await q.get(fail=False, no_ack=True)

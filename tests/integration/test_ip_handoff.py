"""A dispatcher that dies strands no job in its per-IP queue: the queue hands what it holds
back to the pool's queue after the handoff TTL (what a Kubernetes rescheduling relies on)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import pytest

from services.bounce.service import BrokerDeadLetters
from services.dispatcher.pools import Member, Pool, PoolView
from services.dispatcher.service import Dispatcher
from shared import schemas
from shared.broker import (
    REASON_HEADER,
    Broker,
    Delivery,
    Queue,
    deliver_queue,
    ip_queue,
    undecoded,
)
from shared.schemas import DeliveryJob, EventType, Recipient
from shared.settings import BrokerSettings
from shared.store import Store
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

POOL, IP, HANDOFF = "default", "192.0.2.25", 0.5


def delivery_job() -> DeliveryJob:
    return DeliveryJob(
        message_id="m-handoff",
        tenant="acme",
        mail_from="a@shop.test",
        from_domain="shop.test",
        recipients=(Recipient(id="r1", address="b@ok.test"),),
        pool=POOL,
        domain="ok.test",
    )


@pytest.fixture
async def brokers(broker_settings: BrokerSettings) -> AsyncIterator[tuple[Broker, Broker]]:
    owner = Broker(broker_settings, name="dispatcher-0", pools=[POOL])
    other = Broker(broker_settings, name="dispatcher-1", pools=[POOL])
    await owner.connect()
    await other.connect()
    yield owner, other
    for b in (owner, other):
        if b.is_connected:  # the test closed the owner the hard way already
            await b.drain(1)
            await b.close()


async def test_a_job_held_by_a_dispatcher_that_died_goes_back_to_its_pool(
    brokers: tuple[Broker, Broker],
) -> None:
    """The owner of an IP takes a forwarded job and dies before acking it: the job is
    requeued in the IP's queue and, with no owner consuming there, reaches the pool's queue
    after the handoff TTL, where any other instance of the pool gets it."""
    owner, other = brokers
    await owner.declare_ip_queue(POOL, IP, handoff=HANDOFF)
    taken = asyncio.Event()

    async def dies_mid_delivery(_: Delivery) -> None:
        taken.set()
        await asyncio.Event().wait()

    await owner.consume(ip_queue(POOL, IP), dies_mid_delivery)
    await other.forward(
        ip_queue(POOL, IP), schemas.encode(delivery_job(), b"signed bytes\r\n"), {}, "m-handoff"
    )
    await asyncio.wait_for(taken.wait(), 10)
    # SIGKILL: the connection goes away with the job unacked.
    await owner.close()
    for task in list(owner._in_flight):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    seen: list[Delivery] = []

    async def pool_consumer(d: Delivery) -> None:
        seen.append(d)

    await other.consume(deliver_queue(POOL), pool_consumer)
    await eventually(lambda: asyncio.sleep(0, seen), timeout=15)
    assert seen[0].message.message_id == "m-handoff"
    assert seen[0].payload == b"signed bytes\r\n"


async def ready(broker: Broker, queue: str) -> int:
    """Messages ready in ``queue``."""
    depth = await broker.depth(queue)
    assert depth is not None
    return depth


async def test_a_job_back_from_an_ip_queue_past_its_delivery_limit_is_not_forwarded_again(
    broker_settings: BrokerSettings, store: Store
) -> None:
    """A job the owner of its IP took past the IP queue's delivery limit without an ack comes
    back to the pool's queue: the dispatcher does not forward it to that IP again but
    dead-letters it, naming the limit, with one dead_lettered event (the dead letters' watch
    adds none); `hato dead retry` gives it a fresh start, and it is forwarded again."""
    settings = broker_settings.model_copy(update={"queue_type": "quorum", "delivery_limit": 2})
    b = Broker(settings, name="dispatcher-1", pools=[POOL])
    await b.connect()
    try:
        await b.declare_ip_queue(POOL, IP, handoff=600)
        view = PoolView(store=None, own_ips=(), default_helo="h.test", heartbeat_timeout=30)  # type: ignore[arg-type]
        view.pools, view.live = {POOL: Pool(POOL, (Member(IP, "h.test"),))}, {IP}
        dispatcher = Dispatcher(
            store,
            b,
            view,
            None,
            None,
            None,
            retry_delays=[60],
            max_age=3600,  # type: ignore[arg-type]
        )
        watched: list[Delivery] = []

        async def watch(d: Delivery) -> None:
            await BrokerDeadLetters(b).handle(d)
            watched.append(d)

        await b.consume(Queue.DEAD_WATCH, watch, decode=undecoded)
        await b.consume(deliver_queue(POOL), dispatcher.route)
        await b.forward(
            ip_queue(POOL, IP), schemas.encode(delivery_job(), b"signed\r\n"), {}, "m-handoff"
        )
        full = b.full(ip_queue(POOL, IP))
        connection = await aio_pika.connect(settings.url)
        async with connection:
            for _ in range(3):  # the owner dies with it each time: the limit, then once more
                channel = await connection.channel()
                q = await channel.get_queue(full)
                message = await eventually(lambda q=q: q.get(fail=False, no_ack=False))
                await channel.close()

        await eventually(lambda: asyncio.sleep(0, watched))
        listed = await b.dead_letters()
        assert [(e["message_id"], e["queue"], e["reason"]) for e in listed] == [
            (
                "m-handoff",
                b.full(deliver_queue(POOL)),
                f"handed out 3 times without an ack (delivery limit of {full})",
            )
        ]
        assert REASON_HEADER in watched[0].headers  # consume()'s dead letter: its event is out
        assert await ready(b, ip_queue(POOL, IP)) == 0  # not forwarded again
        events = []
        while message := await take(b, Queue.EVENTS_STORE):
            events.append(schemas.decode(message.body)[0])
        assert [(e.type, e.message_id) for e in events] == [(EventType.DEAD_LETTERED, "m-handoff")]

        # Retried, the job starts afresh: routed and forwarded to the IP again.
        await b.dead_letters(act=lambda m: asyncio.sleep(0, "retry"))
        await eventually(lambda: ready(b, ip_queue(POOL, IP)), until=lambda n: n == 1)
        assert await b.dead_letters() == []
    finally:
        await b.drain(5)
        await b.close()


async def take(broker: Broker, queue: str):
    """One message from a queue, or None."""
    q = await broker._publish_channel.get_queue(broker.full(queue))
    return await q.get(fail=False, no_ack=True)

"""A dispatcher that dies strands no job in its per-IP queue: the queue hands what it holds
back to the pool's queue after the handoff TTL (what a Kubernetes rescheduling relies on)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from shared import schemas
from shared.broker import Broker, Delivery, deliver_queue, ip_queue
from shared.schemas import DeliveryJob, Recipient
from shared.settings import BrokerSettings
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

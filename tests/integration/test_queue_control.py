"""Queue control against the real servers: held jobs wait as the same attempt and a sweep
brings the matching ones back at once (RabbitMQ); controls with expiries, the waiting
recipients a filter finds, and a purge that bounces only what waits (FerretDB/MongoDB)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from shared.broker import Broker, Delivery
from shared.broker.topology import retry_name
from shared.errors import Held, RetryLater
from shared.queue_control import Action, Scope
from shared.schemas import DeliveryJob, Recipient, RecipientStatus, utcnow
from shared.settings import BrokerSettings
from shared.store import Store
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    b = Broker(broker_settings, name="test", pools=["default"])
    await b.connect()
    yield b
    await b.drain(5)
    await b.close()


def job(domain: str, message_id: str = "m1") -> DeliveryJob:
    return DeliveryJob(
        message_id=message_id,
        tenant="acme",
        mail_from="a@shop.test",
        domain=domain,
        recipients=(Recipient(id=f"r-{message_id}", address=f"b@{domain}"),),
        pool="default",
    )


async def test_held_jobs_keep_their_attempt_and_a_sweep_brings_back_only_matches(
    broker: Broker,
) -> None:
    """Held (a retry that does not count) parks jobs for the hold delay as the same attempt;
    a sweep sends those matching at once and leaves the others waiting."""
    seen: list[tuple[str, int]] = []

    async def handler(d: Delivery) -> None:
        seen.append((d.message.domain, d.attempt))
        if d.message.domain == "late.test" and d.attempt == 1:
            raise RetryLater(30)  # a deferral: the next attempt
        if len(seen) <= 2:
            raise Held(30, "suspended")

    await broker.consume("deliver.default", handler)
    await broker.publish(job("held.test", "m1"))
    await broker.publish(job("other.test", "m2"))
    await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: len(s) == 2)
    await broker.publish(job("late.test", "m3"))
    await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: len(s) == 3)
    # The handler's answer is published after it returns: sweep once all three wait.
    await eventually(lambda: broker.depth(retry_name(30)), until=lambda n: n == 3)
    moved = await broker.sweep([30], lambda m: m.domain in ("held.test", "late.test"))
    assert moved == 2
    await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: len(s) == 5)
    assert sorted(seen[3:]) == [("held.test", 1), ("late.test", 2)]
    await asyncio.sleep(0.5)
    assert len(seen) == 5  # other.test still waits out its hold
    assert await broker.sweep([30, 12345], lambda m: True) == 1  # a missing queue is skipped


async def test_controls_expire_and_a_scope_finds_its_waiting_recipients(store: Store) -> None:
    """A control replaces the one of its scope; an expired one is not active; a domain
    filter finds its subdomains, not a longer name; a purge bounces only what waits."""
    await store.controls.put(Action.SUSPEND, Scope(domain="shop.test"), reason="one")
    await store.controls.put(Action.SUSPEND, Scope(domain="shop.test"), reason="two")
    await store.controls.put(Action.SUSPEND, Scope(tenant="acme"), expires_in=0.001)
    await asyncio.sleep(0.01)
    [active] = await store.controls.active()
    assert active["reason"] == "two" and len(await store.controls.all()) == 2
    now = utcnow()
    docs = [
        {"_id": "r1", "domain": "shop.test", "status": "queued"},
        {"_id": "r2", "domain": "mx.shop.test", "status": "deferred", "attempts": 2},
        {"_id": "r3", "domain": "notshop.test", "status": "queued"},
        {"_id": "r4", "domain": "shop.test", "status": "delivered"},
    ]
    await store.db.recipients.insert_many(
        [
            {
                "message_id": "m1",
                "tenant": "acme",
                "address": f"x@{d['domain']}",
                "created_at": now - timedelta(seconds=5),
                **d,
            }
            for d in docs
        ]
    )
    found = await store.waiting.find(Scope(domain="shop.test"))
    assert sorted(d["_id"] for d in found) == ["r1", "r2"]
    events = await store.waiting.purge(Scope(domain="shop.test"), "bought list")
    assert sorted(e.recipient_id for e in events) == ["r1", "r2"]
    statuses = {d["_id"]: d["status"] async for d in store.db.recipients.find({})}
    assert statuses == {
        "r1": RecipientStatus.BOUNCED,
        "r2": RecipientStatus.BOUNCED,
        "r3": "queued",
        "r4": "delivered",
    }
    stored = await store.db.events.find({"type": "bounced"}).to_list()
    assert {e["detail"]["operator_reason"] for e in stored} == {"bought list"}

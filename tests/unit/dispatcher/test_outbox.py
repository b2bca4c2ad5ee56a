"""A delivery job that comes back publishes again the events its first run recorded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.dispatcher.service import Dispatcher
from shared.schemas import (
    DeliveryJob,
    DeliveryResult,
    Recipient,
    RecipientResult,
    RecipientStatus,
    Reply,
)
from shared.testing import FakeBroker, MemoryEvents
from shared.timeline import attempt_events

JOB = DeliveryJob(
    message_id="m1",
    tenant="acme",
    mail_from="orders@shop.test",
    domain="x.test",
    recipients=(Recipient(id="r1", address="a@x.test"), Recipient(id="r2", address="b@x.test")),
    pool="default",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)
DELIVERED = attempt_events(
    DeliveryResult(
        message_id="m1",
        tenant="acme",
        attempt=1,
        destination="127.0.0.1:25",
        source_ip="192.0.2.1",
        results=(
            RecipientResult(
                recipient_id="r1",
                address="a@x.test",
                status=RecipientStatus.DELIVERED,
                reply=Reply(code=250),
            ),
        ),
    )
)


@dataclass
class Events(MemoryEvents):
    reads: int = 0

    async def of_attempt(self, message_id: str, ids: list[str], attempt: int) -> list:
        self.reads += 1
        return [
            e
            for e in self.stored.values()
            if e.recipient_id in ids and e.detail.get("attempt") == attempt
        ]


class Messages:
    async def pending_recipients(self, ids: Any) -> set[str]:
        return {i for i in ids if i != "r1"}  # r1 was delivered by the first run


@dataclass
class Store:
    events: Events = field(default_factory=Events)
    messages: Messages = field(default_factory=Messages)


def dispatcher(store: Store, broker: FakeBroker) -> Dispatcher:
    return Dispatcher(store, broker, None, None, None, None, retry_delays=[60], max_age=3600)  # type: ignore[arg-type]


async def test_recipients_already_final_get_their_attempts_events_published_again() -> None:
    """The first run wrote r1's delivery and its event, then the publish failed: back (same
    attempt), the job sends only to r2 and publishes r1's stored event, same id."""
    store, broker = Store(), FakeBroker()
    await store.events.append(DELIVERED)
    pending = await dispatcher(store, broker).pending(JOB, 1)
    assert [r.id for r in pending] == ["r2"]
    assert broker.events == DELIVERED


async def test_a_later_attempt_publishes_nothing_old_again() -> None:
    """At the next attempt the recipient delivered before has no events of that attempt:
    nothing is published twice."""
    store, broker = Store(), FakeBroker()
    await store.events.append(DELIVERED)
    await dispatcher(store, broker).pending(JOB, 2)
    assert broker.events == [] and store.events.reads == 1

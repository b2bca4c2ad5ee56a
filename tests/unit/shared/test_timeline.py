"""Delivery results become one event per recipient."""

from __future__ import annotations

from shared.schemas import DeliveryResult, EventType, RecipientResult, RecipientStatus, Reply
from shared.timeline import attempt_events


def test_each_recipient_outcome_is_an_event_with_its_reply() -> None:
    """Each recipient's result is one event of its status with the reply, the attempt, destination,
    source IP and domain, and the bounce reason when known; no two share an id."""
    result = DeliveryResult(
        message_id="m",
        tenant="acme",
        attempt=3,
        destination="127.0.0.1:25",
        source_ip="192.0.2.1",
        results=tuple(
            RecipientResult(
                recipient_id=f"r{i}", address=f"u{i}@x.test", status=s, reply=Reply(code=c)
            )
            for i, (s, c) in enumerate(
                [
                    (RecipientStatus.DELIVERED, 250),
                    (RecipientStatus.BOUNCED, 550),
                    (RecipientStatus.DEFERRED, 451),
                    (RecipientStatus.EXPIRED, 451),
                ]
            )
        ),
    )
    events = attempt_events(result)
    assert [e.type for e in events] == [
        EventType.DELIVERED,
        EventType.BOUNCED,
        EventType.DEFERRED,
        EventType.EXPIRED,
    ]
    assert [e.reply.code for e in events] == [250, 550, 451, 451]
    assert all(
        e.detail
        == {
            "attempt": 3,
            "destination": "127.0.0.1:25",
            "source_ip": "192.0.2.1",
            "domain": "x.test",
        }
        for e in events
    )
    with_reason = attempt_events(result, {"r1": "userunknown"})
    assert with_reason[1].detail["reason"] == "userunknown"
    assert len({e.id for e in events}) == 4


def test_an_attempt_recorded_twice_is_the_same_events() -> None:
    """Event ids come from what happened (message, recipient, type, attempt): a redelivered
    job's events are stored once and a receiver de-duplicating by id sees them once."""

    def attempt(n: int, status: RecipientStatus = RecipientStatus.DEFERRED) -> DeliveryResult:
        return DeliveryResult(
            message_id="m",
            tenant="acme",
            attempt=n,
            destination="127.0.0.1:25",
            source_ip="192.0.2.1",
            results=(
                RecipientResult(
                    recipient_id="r1", address="u@x.test", status=status, reply=Reply(code=451)
                ),
            ),
        )

    first, again = attempt_events(attempt(1)), attempt_events(attempt(1))
    assert [e.id for e in first] == [e.id for e in again]
    assert first[0].id != attempt_events(attempt(2))[0].id  # the next attempt is another event
    delivered = attempt_events(attempt(1, RecipientStatus.DELIVERED))
    assert first[0].id != delivered[0].id


async def test_events_the_broker_refuses_are_the_callers_failure() -> None:
    """Written but not confirmed: Timeline raises Unavailable (the job comes back and
    publishes them again) instead of logging and going on."""
    import pytest

    from shared.errors import Unavailable
    from shared.testing import FakeBroker, MemoryEvents
    from shared.timeline import Timeline

    store, broker = MemoryEvents(), FakeBroker(refuse_events=1)
    events = attempt_events(
        DeliveryResult(
            message_id="m",
            tenant="acme",
            attempt=1,
            destination="d",
            source_ip="192.0.2.1",
            results=(
                RecipientResult(
                    recipient_id="r1",
                    address="u@x.test",
                    status=RecipientStatus.DELIVERED,
                    reply=Reply(code=250),
                ),
            ),
        )
    )
    with pytest.raises(Unavailable):
        await Timeline(store, broker).record(events)  # type: ignore[arg-type]
    assert list(store.stored) == [events[0].id] and broker.events == []
    await Timeline(store, broker).record(events)  # type: ignore[arg-type]
    assert broker.events == events and len(store.stored) == 1

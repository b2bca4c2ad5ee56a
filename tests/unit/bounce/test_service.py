"""The bounce service's handlers over the testing kit's in-memory store and broker
(services/bounce/service.py): a dead job ends its waiting recipients ``failed`` with one event
each, told again when it comes back; a report's death is stored; a bounced delivery result
is classified, recorded with its reason and fed to the suppression list."""

from __future__ import annotations

from typing import Any

from services.bounce.feedback import Addressee
from services.bounce.service import EventRecorder, ResultHandler
from shared.bounces.classify import Verdict, rules
from shared.broker import Delivery
from shared.schemas import (
    DeliveryResult,
    Event,
    EventType,
    RecipientResult,
    RecipientStatus,
    Reply,
)
from shared.testing import FakeBroker, MemoryStore
from shared.timeline import Timeline


def delivery(message: Any) -> Delivery:
    return Delivery(message, b"", 1, "q", {})


def dead_job(message_id: str, *recipient_ids: str) -> Event:
    return Event.of(
        EventType.DEAD_LETTERED,
        tenant="acme",
        message_id=message_id,
        step=("hato.sign", "abc"),
        detail={"queue": "hato.sign", "reason": "no key", "recipients": ",".join(recipient_ids)},
    )


def recorder() -> tuple[EventRecorder, MemoryStore, FakeBroker]:
    store, broker = MemoryStore(), FakeBroker()
    return EventRecorder(store, Timeline(store.events, broker)), store, broker  # type: ignore[arg-type]


async def test_a_dead_job_fails_its_waiting_recipients_with_one_event_each() -> None:
    """The job's queued recipient ends failed (554 5.3.0 naming the queue), its delivered
    one stays delivered; the dead_lettered event and one failed event are stored, the failed
    one published."""
    h, store, broker = recorder()
    message_id, ids = store.messages.add("acme", "a@ok.test", "b@ok.test")
    store.messages.docs[ids["b@ok.test"]]["status"] = RecipientStatus.DELIVERED.value
    event = dead_job(message_id, *ids.values())
    await h.handle(delivery(event))
    a, b = store.messages.docs[ids["a@ok.test"]], store.messages.docs[ids["b@ok.test"]]
    assert (a["status"], b["status"]) == ("failed", "delivered")
    assert a["reply"]["code"] == 554 and a["reply"]["enhanced"] == "5.3.0"
    assert "hato.sign" in a["reply"]["text"]
    assert [e.type for e in broker.events] == [EventType.FAILED]
    assert broker.events[0].recipient_id == ids["a@ok.test"]
    assert {e.type for e in store.events.stored.values()} == {
        EventType.DEAD_LETTERED,
        EventType.FAILED,
    }


async def test_the_same_death_told_twice_publishes_the_same_failed_event_again() -> None:
    """The event comes back (its first handling's publish was not confirmed): the failed
    recipient's event goes out again with the same id; nothing else changes."""
    h, store, broker = recorder()
    message_id, ids = store.messages.add("acme", "a@ok.test")
    event = dead_job(message_id, ids["a@ok.test"])
    await h.handle(delivery(event))
    await h.handle(delivery(event))
    assert len(broker.events) == 2 and broker.events[0].id == broker.events[1].id
    assert len(store.events.stored) == 2


async def test_a_dead_report_is_stored_and_fails_nobody() -> None:
    """A report job's death names no message: its event is kept, no recipient moves."""
    h, store, broker = recorder()
    _, ids = store.messages.add("acme", "a@ok.test")
    event = Event.of(
        EventType.DEAD_LETTERED,
        tenant="",
        step=("hato.reports", "r1"),
        detail={"queue": "hato.reports", "reason": "unreadable", "report_id": "r1"},
    )
    await h.handle(delivery(event))
    assert list(store.events.stored) == [event.id]
    assert store.messages.docs[ids["a@ok.test"]]["status"] == "queued" and broker.events == []


class FakeFeedback:
    def __init__(self) -> None:
        self.suppressed: list[tuple[Addressee, Verdict, str]] = []

    async def suppress(self, target: Addressee, verdict: Verdict, source: str) -> None:
        self.suppressed.append((target, verdict, source))


async def test_a_bounced_result_is_classified_recorded_and_suppressed() -> None:
    """550 5.1.1 at RCPT: the bounced event carries the reason ``userunknown``, the
    delivered recipient's event none, and only the bounced address is fed to the list."""
    store, broker, feedback = MemoryStore(), FakeBroker(), FakeFeedback()
    message_id, ids = store.messages.add("acme", "gone@ok.test", "here@ok.test")
    result = DeliveryResult(
        message_id=message_id,
        tenant="acme",
        attempt=1,
        destination="mx.ok.test",
        results=(
            RecipientResult(
                recipient_id=ids["gone@ok.test"],
                address="gone@ok.test",
                status=RecipientStatus.BOUNCED,
                reply=Reply.of(550, "5.1.1", "No such user"),
                command="RCPT",
            ),
            RecipientResult(
                recipient_id=ids["here@ok.test"],
                address="here@ok.test",
                status=RecipientStatus.DELIVERED,
                reply=Reply.of(250, "2.0.0", "Ok"),
                command="DATA",
            ),
        ),
    )
    h = ResultHandler(Timeline(store.events, broker), feedback, rules())  # type: ignore[arg-type]
    await h.handle(delivery(result))
    by_type = {e.type: e for e in broker.events}
    assert by_type[EventType.BOUNCED].detail["reason"] == "userunknown"
    assert "reason" not in by_type[EventType.DELIVERED].detail
    [(target, verdict, source)] = feedback.suppressed
    assert (target.address, verdict.reason, source) == ("gone@ok.test", "userunknown", "delivery")

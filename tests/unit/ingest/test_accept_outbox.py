"""Ingest publishes the acceptance's events before it answers, and refuses what it cannot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.ingest.accept import Acceptor, Submission, summarize_headers
from shared.directory import Identity
from shared.errors import Unavailable
from shared.schemas import EventType, SignJob
from shared.testing import FakeBroker, MemoryEvents

RAW = b"From: shop <orders@shop.test>\r\nSubject: hi\r\n\r\nbody\r\n"


class HourlyCounts:
    async def count(self, tenant: str, n: int = 1) -> int:
        return 1


@dataclass
class Suppressions:
    suppressed_addresses: set[str] = field(default_factory=set)

    async def suppressed(self, tenant: str, addresses: Any, *, scopes: Any = ()) -> set[str]:
        return self.suppressed_addresses


@dataclass
class Messages:
    """Writes the events of an acceptance through ``events``, as ``Messages`` does."""

    events: MemoryEvents
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def insert_message(self, message: dict, recipients: list, events: list) -> None:
        self.stored[message["_id"]] = message
        await self.events.write(events)

    async def discard_message(self, message_id: str) -> None:
        self.stored.pop(message_id, None)
        self.events.stored = {
            k: e for k, e in self.events.stored.items() if e.message_id != message_id
        }


@dataclass
class Store:
    hourly: HourlyCounts = field(default_factory=HourlyCounts)
    suppressions: Suppressions = field(default_factory=Suppressions)
    events: MemoryEvents = field(default_factory=MemoryEvents)
    messages: Messages = field(init=False)

    def __post_init__(self) -> None:
        self.messages = Messages(self.events)


def submission(*rcpts: str) -> Submission:
    return Submission(
        identity=Identity(tenant="acme", pool="default"),
        mail_from="orders@shop.test",
        recipients=rcpts or ("alice@example.com",),
        raw=RAW,
        headers=summarize_headers(RAW),
        door="smtp",
        client="127.0.0.1",
    )


async def test_accepted_events_are_confirmed_before_the_answer() -> None:
    """When accept() returns (the 250 / 202), the sign job and the accepted events are out."""
    store, broker = Store(), FakeBroker()
    accepted = await Acceptor(store, broker).accept(submission("a@x.test", "b@y.test"))  # type: ignore[arg-type]
    assert [type(m) for m, _ in broker.published] == [SignJob]
    assert {(e.type, e.recipient_id) for e in broker.events} == {
        (EventType.ACCEPTED, r.id) for r in accepted.recipients
    }
    assert {e.id for e in broker.events} == set(store.events.stored)


@pytest.mark.parametrize("suppressed", [False, True])
async def test_events_the_broker_refuses_refuse_the_message(suppressed: bool) -> None:
    """Events not confirmed: the door answers a temporary failure (451 / 503) and what was
    written is removed, as when the sign job is not confirmed — also for a message whose
    recipients are all suppressed (no sign job, only events)."""
    store, broker = Store(), FakeBroker(refuse_events=1)
    if suppressed:
        store.suppressions.suppressed_addresses = {"alice@example.com"}
    with pytest.raises(Unavailable):
        await Acceptor(store, broker).accept(submission())  # type: ignore[arg-type]
    assert broker.refused == 1 and not broker.events
    assert store.messages.stored == {} and store.events.stored == {}

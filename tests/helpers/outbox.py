"""Small fakes at the broker and store boundary for the outbox tests: a broker that refuses
event publishes while told to, and a store that keeps what it was given in memory."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.errors import Unavailable
from shared.schemas import BrokerMessage, Event


@dataclass
class RefusingBroker:
    """Publishes into lists; ``refuse_events`` event publishes in a row are refused (the
    broker closed the channel, say) before the next ones are confirmed."""

    refuse_events: int = 0
    published: list[tuple[BrokerMessage, bytes]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    refused: int = 0

    async def publish(self, message: BrokerMessage, payload: bytes = b"", **_: Any) -> None:
        if isinstance(message, Event):
            await self.emit([message])
            return
        self.published.append((message, payload))

    async def emit(self, events: Iterable[Event]) -> None:
        events = list(events)
        if self.refuse_events:
            self.refuse_events -= 1
            self.refused += 1
            raise Unavailable("publish to 'events' not confirmed: channel closed")
        self.events.extend(events)


@dataclass
class EventStore:
    """The event-keeping part of ``shared.store.Store``: events by id, first write wins."""

    stored: dict[str, Event] = field(default_factory=dict)

    async def insert_events(self, events: Sequence[Event]) -> None:
        for e in events:
            self.stored.setdefault(e.id, e)

    def doc(self, event: Event) -> dict[str, Any]:
        return {"_id": event.id, **event.model_dump(exclude={"id", "kind", "schema_version"})}

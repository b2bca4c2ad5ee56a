"""Events, written where the state changes and published for whoever listens.

The service that changes a recipient's or a message's state writes the events of that change in
the same group commit as the change (``store.messages.insert_message``, ``record_attempt``; the
signer's ``signed`` event, the whole record of a signing, with ``store.events.append``), then
publishes them on the events exchange for platform teams' queues and for the webhook router,
which binds only what tenants subscribed to. So no service reads every event back from the
broker just to store it, and a mail nobody subscribed to costs no consumer anything. Services
whose events come with no state change of their own (feedback, key rotation) write them with
``record``.

The job is the outbox. A publish the broker does not confirm raises ``Unavailable``: the
job that made the events is not acked and comes back (``consume()``'s retry, or the broker's
redelivery after a crash), and the service publishes again what the database recorded for it
(ingest answers ``451``/``503`` instead). Event ids are derived from what happened
(``shared.ids.event_id``), so an event published twice is one event to a receiver that drops
ids it has seen. Nothing is written to mark an event published: the normal path of a mail
costs no database command for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from shared import logging as hlog
from shared.broker import Broker
from shared.domains import domain_of
from shared.errors import Unavailable
from shared.schemas import DeliveryResult, Event, EventType, RecipientStatus

log = hlog.get_logger(__name__)


_EVENT_FOR_STATUS = {
    RecipientStatus.DELIVERED: EventType.DELIVERED,
    RecipientStatus.BOUNCED: EventType.BOUNCED,
    RecipientStatus.DEFERRED: EventType.DEFERRED,
    RecipientStatus.EXPIRED: EventType.EXPIRED,
    RecipientStatus.FAILED: EventType.FAILED,
    RecipientStatus.SUPPRESSED: EventType.SUPPRESSED,
}


def attempt_events(
    result: DeliveryResult,
    reasons: dict[str, str] | None = None,
    *,
    retry_at: datetime | None = None,
) -> list[Event]:
    """One event per recipient of a delivery attempt, with the remote reply (for bounces and
    expiries, the classified reason by recipient id; for deferrals, when the next attempt is
    due)."""
    reasons = reasons or {}
    retry = {"next_attempt_at": retry_at.isoformat()} if retry_at else {}
    return [
        Event.of(
            _EVENT_FOR_STATUS[r.status],
            tenant=result.tenant,
            message_id=result.message_id,
            recipient_id=r.recipient_id,
            step=(result.attempt,),  # the same attempt recorded twice is the same event
            address=r.address,
            reply=r.reply,
            detail={
                "attempt": result.attempt,
                "destination": result.destination,
                "source_ip": result.source_ip,
                "domain": domain_of(r.address),
                **({"reason": reasons[r.recipient_id]} if r.recipient_id in reasons else {}),
                **(retry if r.status is RecipientStatus.DEFERRED else {}),
            },
            at=result.at,
            tags=result.tags,
            metadata=result.metadata,
        )
        for r in result.results
        if r.status in _EVENT_FOR_STATUS
    ]


class EventLog(Protocol):
    """Where events are written (``store.events``, a ``shared.events.Events``, is one): all a
    Timeline needs of the database."""

    async def append(self, events: Sequence[Event]) -> None: ...


class Timeline:
    def __init__(self, events: EventLog, broker: Broker) -> None:
        self.events = events
        self.broker = broker

    async def record(self, events: Sequence[Event]) -> None:
        """Write ``events`` (group commit), then publish them."""
        if not events:
            return
        await self.events.append(events)
        await self.publish(events)

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish events already written; raises Unavailable when the broker did not confirm
        every one of them (the caller's job is not done: it comes back and publishes them
        again, with the same ids)."""
        if not events:
            return
        try:
            await self.broker.emit(events)
        except Unavailable as exc:
            log.warning("events written but not published", events=len(events), error=str(exc))
            raise

"""Turning delivery results into timeline events, and writing events in batches."""

from __future__ import annotations

from shared.batching import Batcher
from shared.ids import new_id
from shared.schemas import DeliveryResult, Event, EventType, RecipientStatus
from shared.store import Store

_EVENT_FOR_STATUS = {
    RecipientStatus.DELIVERED: EventType.DELIVERED,
    RecipientStatus.BOUNCED: EventType.BOUNCED,
    RecipientStatus.DEFERRED: EventType.DEFERRED,
    RecipientStatus.EXPIRED: EventType.EXPIRED,
    RecipientStatus.FAILED: EventType.FAILED,
    RecipientStatus.SUPPRESSED: EventType.SUPPRESSED,
}


def events_for(result: DeliveryResult, reasons: dict[str, str] | None = None) -> list[Event]:
    """One event per recipient of a delivery attempt, with the remote reply (and, for bounces
    and expiries, the classified reason by recipient id)."""
    reasons = reasons or {}
    return [
        Event(
            id=new_id(),
            type=_EVENT_FOR_STATUS[r.status],
            message_id=result.message_id,
            tenant=result.tenant,
            recipient_id=r.recipient_id,
            address=r.address,
            reply=r.reply,
            detail={
                "attempt": result.attempt,
                "destination": result.destination,
                "source_ip": result.source_ip,
                "domain": r.address.rpartition("@")[2].lower(),
                **({"reason": reasons[r.recipient_id]} if r.recipient_id in reasons else {}),
            },
            at=result.at,
        )
        for r in result.results
        if r.status in _EVENT_FOR_STATUS
    ]


class EventWriter:
    """Writes events from concurrent handlers together (group commit); each ``write``
    returns once its event is stored, so its broker message is acked only then."""

    def __init__(self, store: Store, *, max_batch: int) -> None:
        self._batcher: Batcher[Event, None] = Batcher(store.insert_events, max_batch=max_batch)

    async def write(self, event: Event) -> None:
        await self._batcher.submit(event)

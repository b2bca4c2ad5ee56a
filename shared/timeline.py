"""Events, written where the state changes and published for whoever listens.

The service that changes a recipient's or a message's state writes the events of that change
in the same group commit as the change (``Store.insert_message``, ``mark_signed``,
``record_attempt``), then publishes them on the events exchange for platform teams' queues
and for the webhook router, which binds only what tenants subscribed to. So no service reads
every event back from the broker just to store it, and a mail nobody subscribed to costs no
consumer anything. Services whose events come with no state change of their own (feedback,
key rotation) write them with ``record``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared import logging as hlog
from shared.broker import Broker
from shared.errors import Unavailable
from shared.ids import event_id
from shared.schemas import DeliveryResult, Event, EventType, RecipientStatus
from shared.store import Store

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
        Event(
            # The same attempt recorded twice (its job redelivered) is the same event.
            id=event_id(
                _EVENT_FOR_STATUS[r.status], result.message_id, r.recipient_id, result.attempt
            ),
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
                **(retry if r.status is RecipientStatus.DEFERRED else {}),
            },
            at=result.at,
        )
        for r in result.results
        if r.status in _EVENT_FOR_STATUS
    ]


class Timeline:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def record(self, events: Sequence[Event]) -> None:
        """Write ``events`` (group commit), then publish them."""
        if not events:
            return
        await self.store.insert_events(events)
        await self.publish(events)

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish events already written. When the broker cannot take them they stay in the
        timeline (and in webhook replays), but live listeners miss them: said in the log."""
        try:
            await self.broker.emit(events)
        except Unavailable as exc:
            log.warning("events written but not published", events=len(events), error=str(exc))

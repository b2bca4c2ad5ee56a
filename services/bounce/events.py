"""Turning delivery results into timeline events, and writing events in batches."""

from __future__ import annotations

import asyncio
import contextlib

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
    """Collects events from concurrent handlers into one ``insert_many``; each ``write``
    returns once its event is stored (so its broker message is acked only then)."""

    def __init__(self, store: Store, *, max_batch: int, max_wait: float) -> None:
        self.store = store
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: list[tuple[Event, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def write(self, event: Event) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((event, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._flush)
        await future

    def _flush(self) -> None:
        """Take what is pending now and insert it in the background."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._insert(batch))
            self._flushes.add(task)  # keep a reference until it is done
            task.add_done_callback(self._flushes.discard)

    async def _insert(self, batch: list[tuple[Event, asyncio.Future[None]]]) -> None:
        try:
            await self.store.insert_events([e for e, _ in batch])
        except Exception as exc:
            for _, f in batch:
                if not f.done():
                    f.set_exception(exc)
            return
        for _, f in batch:
            with contextlib.suppress(asyncio.InvalidStateError):
                f.set_result(None)

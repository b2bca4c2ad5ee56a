"""Releasing scheduled messages when their time comes, and cancelling them before it
(``shared/schedule.py`` keeps them). The release runs on one ingest replica at a time (the
``scheduled-release`` lease): it makes the recipients ``queued`` and publishes the sign job, as
an acceptance would have; a cancellation ends them ``cancelled``, with an event each."""

from __future__ import annotations

from typing import Any

from shared import logging as hlog
from shared.broker import Broker
from shared.schemas import (
    Change,
    Event,
    EventType,
    MessageStage,
    RecipientStatus,
    SignJob,
    utcnow,
)
from shared.store import Store
from shared.timeline import Timeline

log = hlog.get_logger(__name__)


class Releaser:
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

    async def run(self) -> None:
        """Release every message whose time has come."""
        schedules = self.store.schedules
        for doc in await schedules.due():
            if not await schedules.claim(doc):
                continue  # cancelled, or another pass took it
            message_id = doc["_id"]
            # Its retries and expiry count from now, not from when it was accepted.
            job = SignJob.model_validate(doc["job"]).model_copy(update={"created_at": utcnow()})
            raw = await schedules.raw(message_id)
            await self.store.messages.move_scheduled(
                message_id, Change.RELEASE, RecipientStatus.QUEUED, MessageStage.ACCEPTED
            )
            await self.broker.publish(job, raw)
            await schedules.forget(message_id)
            log.info("scheduled message released", message_id=message_id)


async def cancel(store: Store, timeline: Timeline, tenant: str, message_id: str) -> bool:
    """Cancel a waiting scheduled message of ``tenant``: False when it has none such."""
    if not await store.schedules.cancel(tenant, message_id):
        return False
    message: dict[str, Any] = await store.messages.message(message_id) or {}
    docs = await store.messages.move_scheduled(
        message_id, Change.CANCEL, RecipientStatus.CANCELLED, MessageStage.CANCELLED
    )
    await timeline.record(
        [
            Event.of(
                EventType.CANCELLED,
                tenant=tenant,
                message_id=message_id,
                recipient_id=d["_id"],
                address=d["address"],
                tags=message.get("tags") or (),
                metadata=message.get("metadata") or {},
            )
            for d in docs
        ]
    )
    log.info("scheduled message cancelled", message_id=message_id)
    return True

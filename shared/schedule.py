"""Scheduled sending: a message accepted with a ``send_at`` waits in MongoDB, not in the broker,
until then: its sign job and raw bytes are kept here (``scheduled``, the bytes in parts of at
most ``PART`` in ``scheduled_parts``: a 25 MB message does not fit one document), its
recipients are ``scheduled``. Durable as any accepted message: a restart loses nothing.

When it is due, one ingest replica (holding the ``scheduled-release`` lease) claims it
(``waiting`` → ``releasing``), makes its recipients ``queued`` and publishes its sign job, then
forgets it. A release that dies after its claim is taken up again after ``RECLAIM`` seconds
(the job may then be published twice: the dispatcher sends a recipient once, by its state).
A cancellation takes only a ``waiting`` message, so a message is either cancelled or
released, never both.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bson import Binary
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared.schemas import SignJob, utcnow

PART = 8 * 1024 * 1024  # bytes of a message in one document (BSON's limit is 16 MiB)
RECLAIM = 60.0  # seconds after which a claimed release that did not finish is taken up again


class ScheduleState(StrEnum):
    WAITING = "waiting"  # until send_at; cancellable
    RELEASING = "releasing"  # claimed by a release in progress


class Schedules:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        await self.db.scheduled.create_index([("state", ASCENDING), ("send_at", ASCENDING)])
        await self.db.scheduled_parts.create_index([("message_id", ASCENDING)])

    async def hold(self, job: SignJob, raw: bytes, send_at: datetime) -> None:
        """Keep ``job`` and its message until ``send_at``."""
        parts = [
            {
                "_id": f"{job.message_id}:{n}",
                "message_id": job.message_id,
                "n": n,
                "data": Binary(raw[i : i + PART]),
            }
            for n, i in enumerate(range(0, max(len(raw), 1), PART))
        ]
        await self.db.scheduled_parts.insert_many(parts)
        await self.db.scheduled.insert_one(
            {
                "_id": job.message_id,
                "tenant": job.tenant,
                "send_at": send_at,
                "state": ScheduleState.WAITING.value,
                "job": job.model_dump(mode="json"),
                "parts": len(parts),
                "created_at": utcnow(),
            }
        )

    async def forget(self, message_id: str) -> None:
        await self.db.scheduled.delete_one({"_id": message_id})
        await self.db.scheduled_parts.delete_many({"message_id": message_id})

    async def due(self, limit: int = 100) -> list[dict[str, Any]]:
        """Messages whose time has come, and releases that died after their claim."""
        now = utcnow()
        query = {
            "$or": [
                {"state": ScheduleState.WAITING.value, "send_at": {"$lte": now}},
                {
                    "state": ScheduleState.RELEASING.value,
                    "claimed_at": {"$lte": now - timedelta(seconds=RECLAIM)},
                },
            ]
        }
        return await self.db.scheduled.find(query).sort("send_at", ASCENDING).limit(limit).to_list()

    async def claim(self, doc: dict[str, Any]) -> bool:
        """Take a due message for release (False: cancelled or taken meanwhile)."""
        result = await self.db.scheduled.update_one(
            {"_id": doc["_id"], "state": doc["state"], "claimed_at": doc.get("claimed_at")},
            {"$set": {"state": ScheduleState.RELEASING.value, "claimed_at": utcnow()}},
        )
        return result.modified_count == 1

    async def raw(self, message_id: str) -> bytes:
        parts = (
            await self.db.scheduled_parts.find({"message_id": message_id})
            .sort("n", ASCENDING)
            .to_list()
        )
        return b"".join(bytes(p["data"]) for p in parts)

    async def cancel(self, tenant: str, message_id: str) -> bool:
        """Take a waiting message of ``tenant`` off the schedule (False: none such: another
        tenant's, released, or never scheduled)."""
        result = await self.db.scheduled.delete_one(
            {"_id": message_id, "tenant": tenant, "state": ScheduleState.WAITING.value}
        )
        if result.deleted_count != 1:
            return False
        await self.db.scheduled_parts.delete_many({"message_id": message_id})
        return True

"""The ``rates`` collection: counts per period, each an upserted document incremented in
place. A tenant's messages this hour (``HourlyCounts``, the hourly limit ingest enforces) and
a source IP's messages today (``shared.directory.Pools``, for warm-up) are kept here.

==============  ================================================================
document        what
==============  ================================================================
tenant:hour     ``_id`` "<tenant>:<YYYYMMDDHH>": tenant, count, created_at
ip:day          ``_id`` "ip:<ip>:<YYYYMMDD>": ip, day, count
==============  ================================================================
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pymongo.errors
from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from shared.batching import Batcher
from shared.schemas import utcnow


async def increment(
    rates: AsyncCollection[dict[str, Any]], id_: str, n: int, update: dict[str, Any]
) -> int:
    """Add ``n`` to the count of a rates document, creating it; returns the new count."""
    for attempt in (1, 2):
        try:
            doc = await rates.find_one_and_update(
                {"_id": id_},
                {"$inc": {"count": n}, **update},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            return int(doc["count"])
        except pymongo.errors.DuplicateKeyError:
            # Two first upserts of the period raced (another instance); the document
            # exists now, so the update applies.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@dataclass(slots=True)
class _HourlyCount:
    """A tenant's messages this hour as this process knows them: the store's count when it
    last asked (``base``, with its own share) and what it accepted since (``unsynced``)."""

    hour: str
    base: int
    unsynced: int
    synced: float  # time.monotonic()


class HourlyCounts:
    """This hour's count of each tenant's accepted messages, for the tenants' hourly limits;
    what ingest's acceptance asks of the ``rates`` collection."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db
        self._batcher: Batcher[tuple[str, int], int] = Batcher(self._batch, max_batch=500)
        self._counts: dict[str, _HourlyCount] = {}
        self.sync = 1.0  # seconds: see count

    async def count(self, tenant: str, n: int = 1) -> int:
        """Add ``n`` to this hour's count of the tenant's messages; returns the new count.

        The store is asked at most every ``sync`` seconds per tenant: in between this
        process counts on its own, on top of the count the store last gave it, and adds its
        share with the next increment. So the count is exact for one ingest process and
        behind by at most ``sync`` seconds of the other processes' accepts (a limit of
        an hour can be passed by that much), and a busy tenant costs the store one increment
        a second instead of one per batch of accepts. Concurrent callers that reach the store
        share one increment (each sees the count up to its own share)."""
        hour = utcnow().strftime("%Y%m%d%H")
        moment = time.monotonic()
        mine = self._counts.get(tenant)
        if mine is not None and mine.hour == hour and moment - mine.synced < self.sync:
            mine.unsynced += n
            return mine.base + mine.unsynced
        carried = 0
        if mine is not None and mine.hour == hour:  # an hour gone by no longer limits anything
            carried, mine.unsynced = mine.unsynced, 0
        count = await self._batcher.submit((tenant, n + carried))
        assert count is not None
        mine = self._counts.get(tenant)
        if mine is None or mine.hour != hour:
            self._counts[tenant] = _HourlyCount(hour, count, 0, moment)
        elif count > mine.base:
            mine.base, mine.synced = count, moment
        return count

    async def _batch(self, items: list[tuple[str, int]]) -> list[int]:
        totals: dict[str, int] = {}
        for tenant, n in items:
            totals[tenant] = totals.get(tenant, 0) + n
        after = {tenant: await self._add(tenant, n) for tenant, n in totals.items()}
        results = []
        for tenant, n in reversed(items):  # the last item of a tenant sees the full count
            results.append(after[tenant])
            after[tenant] -= n
        return results[::-1]

    async def _add(self, tenant: str, n: int) -> int:
        hour = utcnow().strftime("%Y%m%d%H")
        return await increment(
            self.db.rates,
            f"{tenant}:{hour}",
            n,
            {"$setOnInsert": {"tenant": tenant, "created_at": utcnow()}},
        )

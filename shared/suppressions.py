"""The suppression list: the ``suppressions`` collection (addresses a tenant must not mail,
for any mail or within a scope) and ``soft_bounces`` (the recent soft bounces by address that
put an address on it when they add up).

==============  ================================================================
collection      what
==============  ================================================================
suppressions    (tenant, address, scope): never mailed (scope null: any mail; ``list:<name>``:
                mail to that list, an unsubscribe); reason and source
soft_bounces    (tenant, address): the times of its recent soft bounces, and the keys of the
                reports counted (a report applied again counts once)
==============  ================================================================

``Suppressions`` owns both (``store.suppressions``): ingest asks ``suppressed`` for every
message it accepts (concurrent calls share one query); the bounce service adds what bounces
and complaints tell (``suppress``, ``soft_bounce``); an unsubscribe adds one for its list
(``unsubscribe``, then ``announced`` once its event is out); the admin commands list, add
and lift them (``page``, ``suppress``, ``unsuppress``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from shared.batching import Batcher
from shared.schemas import utcnow


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Suppressions:
    """The ``suppressions`` and ``soft_bounces`` collections of ``db``; concurrent
    ``suppressed`` calls wait up to ``batch_wait`` seconds for company when the service is
    busy."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, batch_wait: float = 0.0) -> None:
        self.db = db
        self._suppressed: Batcher[tuple[str, tuple[str, ...], frozenset[str]], set[str]] = Batcher(
            self._suppressed_batch, max_batch=100, wait=batch_wait
        )

    async def ensure_indexes(self) -> None:
        """Create the collections' indexes (idempotent)."""
        # One suppression per (tenant, address, scope); before scopes, per (tenant, address).
        with contextlib.suppress(pymongo.errors.OperationFailure):
            await self.db.suppressions.drop_index("tenant_1_address_1")
        await self.db.suppressions.create_index(
            [("tenant", ASCENDING), ("address", ASCENDING), ("scope", ASCENDING)], unique=True
        )

    async def suppress(
        self,
        tenant: str,
        address: str,
        *,
        reason: str,
        source: str,
        expires_at: datetime | None = None,
    ) -> None:
        """Never mail ``address`` for ``tenant`` again (until ``expires_at``, when given)."""
        await self.db.suppressions.update_one(
            {"tenant": tenant, "address": address.lower(), "scope": None},
            {
                "$set": {
                    "reason": reason,
                    "source": source,
                    "updated_at": utcnow(),
                    "expires_at": expires_at,
                },
                "$setOnInsert": {"created_at": utcnow()},
            },
            upsert=True,
        )

    async def unsubscribe(
        self, tenant: str, address: str, *, scope: str, source: str
    ) -> tuple[dict[str, Any], bool]:
        """Never mail ``address`` for ``tenant`` within ``scope`` again (an unsubscribe from a
        list); the suppression, and whether this call made it. A repeat changes nothing."""
        query = {"tenant": tenant, "address": address.lower(), "scope": scope}
        for _ in range(2):  # two at once: one inserts, the other's upsert meets the unique key
            try:
                result = await self.db.suppressions.update_one(
                    query,
                    {
                        "$setOnInsert": {
                            "reason": "unsubscribed",
                            "source": source,
                            "created_at": utcnow(),
                            "updated_at": utcnow(),
                            "expires_at": None,
                            "announced": False,
                        }
                    },
                    upsert=True,
                )
                break
            except pymongo.errors.DuplicateKeyError:
                continue
        doc = await self.db.suppressions.find_one(query)
        assert doc is not None
        return doc, result.upserted_id is not None

    async def announced(self, suppression_id: Any) -> None:
        """The ``unsubscribed`` event of this suppression is written and published."""
        await self.db.suppressions.update_one(
            {"_id": suppression_id}, {"$set": {"announced": True}}
        )

    async def page(self, tenant: str, *, limit: int = 100, after: str = "") -> list[dict[str, Any]]:
        """The tenant's suppressions by address, after ``after``: ``limit`` of them, and the
        other scopes of the last address too (a page never ends inside one address, so
        ``after`` = its last address loses nothing)."""
        query: dict[str, Any] = {"tenant": tenant}
        if after:
            query["address"] = {"$gt": after}
        order = [("address", ASCENDING), ("scope", ASCENDING)]
        docs = await self.db.suppressions.find(query).sort(order).limit(limit).to_list()
        if len(docs) == limit:
            seen = {d["_id"] for d in docs}
            rest = self.db.suppressions.find({"tenant": tenant, "address": docs[-1]["address"]})
            docs += [d async for d in rest.sort(order) if d["_id"] not in seen]
        return docs

    async def soft_bounce(
        self, tenant: str, address: str, *, window: timedelta, key: str = ""
    ) -> int:
        """Record a soft bounce; how many the address had within ``window`` (this one too).
        A bounce with a ``key`` already recorded (the same report applied again) is counted
        once."""
        at = utcnow()
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # BSON keeps milliseconds
        _id = f"{tenant}:{address.lower()}"
        query: dict[str, Any] = {"_id": _id}
        update: dict[str, Any] = {
            "$push": {"at": at},
            "$set": {"tenant": tenant, "address": address.lower()},
        }
        if key:
            query["keys"] = {"$ne": key}
            update["$push"] = {"at": at, "keys": {"$each": [key], "$slice": -100}}
        try:
            doc = await self.db.soft_bounces.find_one_and_update(
                query, update, upsert=True, return_document=ReturnDocument.AFTER
            )
        except pymongo.errors.DuplicateKeyError:  # the key is there: a repeat, not a bounce
            doc = await self.db.soft_bounces.find_one({"_id": _id})
            assert doc is not None
            return len([t for t in doc["at"] if _aware(t) > at - window])
        recent = [t for t in doc["at"] if _aware(t) > at - window]
        if len(recent) != len(doc["at"]):
            await self.db.soft_bounces.update_one({"_id": doc["_id"]}, {"$set": {"at": recent}})
        return len(recent)

    async def suppressed(
        self, tenant: str, addresses: Iterable[str], *, scopes: Iterable[str] = ()
    ) -> set[str]:
        """Which of these addresses (lower-cased) the tenant must not mail now: suppressed
        for any mail, or within one of ``scopes`` (the message's list, its tags). Concurrent
        calls share one query."""
        wanted = sorted({a.lower() for a in addresses})
        if not wanted:
            return set()
        key = (tenant, tuple(wanted), frozenset(scopes))
        return await self._suppressed.submit(key) or set()

    async def _suppressed_batch(
        self, batch: list[tuple[str, tuple[str, ...], frozenset[str]]]
    ) -> list[set[str]]:
        by_tenant: dict[str, set[str]] = {}
        for tenant, wanted, _ in batch:
            by_tenant.setdefault(tenant, set()).update(wanted)
        query = {
            "$or": [{"tenant": t, "address": {"$in": sorted(a)}} for t, a in by_tenant.items()]
        }
        at = utcnow()
        found: set[tuple[str, str, str | None]] = set()
        async for d in self.db.suppressions.find(
            query, {"tenant": 1, "address": 1, "expires_at": 1, "scope": 1}
        ):
            if d.get("expires_at") is None or _aware(d["expires_at"]) > at:
                found.add((d["tenant"], d["address"], d.get("scope")))
        return [
            {
                a
                for a in wanted
                if (tenant, a, None) in found or any((tenant, a, sc) in found for sc in scopes)
            }
            for tenant, wanted, scopes in batch
        ]

    async def unsuppress(self, tenant: str, address: str, *, scope: str | None = None) -> bool:
        """Mail ``address`` again (within ``scope``; None: the suppression for any mail)."""
        result = await self.db.suppressions.delete_one(
            {"tenant": tenant, "address": address.lower(), "scope": scope}
        )
        return result.deleted_count > 0

"""The ``events`` collection: every service's timeline of what happened to a message, a
recipient or a tenant's setup, appended and never changed.

``Events`` owns the collection: its indexes (a TTL index keeps events ``ttl_days``; FerretDB
1.x has none, so ``ttl_index`` stays False and the bounce service runs ``purge_expired``
instead), its writes, and its reads. Events are written where the state they describe changes,
before that change (``shared/timeline.py``): ``append`` shares one insert among concurrent
callers (group commit); ``write`` is the plain insert other group commits make inside their own
batch (``Messages.insert_message``, ``Messages.record_attempt`` of shared/messages.py; ``hato
queue purge`` calls the same ``write_events``). Either way an event already stored (same id: a
redelivered job, a retried batch) is skipped, not an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared.batching import Batcher
from shared.schemas import Event, EventType, utcnow

_NOT_IMPLEMENTED = 238  # the server's answer to a TTL index on FerretDB 1.x
_DUPLICATE_KEY = 11000
_ORDER = [("at", ASCENDING), ("_id", ASCENDING)]  # a timeline's order


class Events:
    """The ``events`` collection of ``db``: events kept ``ttl_days``; concurrent ``append``
    calls wait up to ``batch_wait`` seconds for company when the service is busy."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, batch_wait: float = 0.0, ttl_days: int = 30
    ) -> None:
        if ttl_days < 1:
            raise ValueError(f"ttl_days must be at least 1, not {ttl_days}")
        self.db = db
        self.ttl_days = ttl_days
        self.ttl_index = False  # set by ensure_indexes when the server keeps a TTL index
        self._appends: Batcher[list[Event], None] = Batcher(
            self._append_batch, max_batch=200, wait=batch_wait
        )

    async def ensure_indexes(self) -> None:
        """Create the collection's indexes (idempotent); the TTL index where the server has
        TTL indexes (``ttl_index``), a plain index on ``at`` for ``purge_expired`` where not."""
        await self.db.events.create_index([("message_id", ASCENDING), ("at", ASCENDING)])
        await self.db.events.create_index([("tenant", ASCENDING), ("at", ASCENDING)])
        try:
            await self.db.events.create_index(
                [("at", ASCENDING)], name="events_ttl", expireAfterSeconds=self.ttl_days * 86400
            )
            self.ttl_index = True
        except pymongo.errors.OperationFailure as exc:
            if exc.code != _NOT_IMPLEMENTED:
                raise
            # FerretDB 1.x has no TTL indexes: purge_expired() does the same job.
            await self.db.events.create_index([("at", ASCENDING)], name="events_at")

    # -- writes ----------------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> None:
        """Append events (concurrent calls share one insert); ones already stored (a
        redelivered batch) are skipped."""
        if events:
            await self._appends.submit(list(events))

    async def _append_batch(self, items: list[list[Event]]) -> None:
        await self.write([e for events in items for e in events])

    async def write(self, events: Sequence[Event]) -> None:
        """Insert events now, in the caller's own group commit; ones already stored are
        skipped (so a batch written again after a failure is no error)."""
        await write_events(self.db, events)

    async def forget(self, message_ids: Sequence[str]) -> None:
        """Delete the events of these messages (their documents go too)."""
        if message_ids:
            await self.db.events.delete_many({"message_id": {"$in": list(message_ids)}})

    async def purge_expired(self) -> int:
        """Delete events older than the retention (what a TTL index does on MongoDB)."""
        cutoff = utcnow() - timedelta(days=self.ttl_days)
        result = await self.db.events.delete_many({"at": {"$lt": cutoff}})
        return result.deleted_count

    # -- reads -----------------------------------------------------------------------------

    async def of_message(self, message_id: str) -> list[dict[str, Any]]:
        """A message's events as stored, oldest first."""
        return await self.db.events.find({"message_id": message_id}).sort(_ORDER).to_list()

    async def signing(self, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """How each of these messages was signed: its ``signed`` or ``unsigned`` event, by
        message id (none for a message not signed yet). That event is the only record of the
        signing: the message's stage, keys and time of signing are read from it."""
        if not message_ids:
            return {}
        cursor = self.db.events.find(
            {
                "message_id": {"$in": list(message_ids)},
                "type": {"$in": [EventType.SIGNED.value, EventType.UNSIGNED.value]},
            }
        ).sort(_ORDER)
        return {e["message_id"]: e async for e in cursor}

    async def of_attempt(
        self, message_id: str, recipient_ids: Sequence[str], attempt: int
    ) -> list[Event]:
        """The stored events of these recipients' delivery ``attempt``: what a job that came
        back publishes again for recipients its first run made final."""
        if not recipient_ids:
            return []
        docs = self.db.events.find(
            {
                "message_id": message_id,
                "recipient_id": {"$in": list(recipient_ids)},
                "detail.attempt": attempt,
            }
        ).sort(_ORDER)
        return [event_of(d) async for d in docs]

    async def pages(
        self,
        tenant: str,
        since: datetime,
        until: datetime,
        *,
        types: Sequence[str] = (),
        page: int = 1000,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A tenant's events of a time range (of these types; all if none), oldest first, as
        JSON-ready dicts in pages of ``page`` (for webhook replays: a long range is never
        held in memory whole)."""
        query: dict[str, Any] = {"tenant": tenant, "at": {"$gte": since, "$lt": until}}
        if types:
            query["type"] = {"$in": list(types)}
        after: tuple[datetime, str] | None = None
        while True:
            q = query
            if after is not None:  # keyset paging on (at, _id): no skip, no gaps
                q = {
                    **query,
                    "$or": [
                        {"at": {"$gt": after[0], "$lt": until}},
                        {"at": after[0], "_id": {"$gt": after[1]}},
                    ],
                }
            docs = await self.db.events.find(q).sort(_ORDER).limit(page).to_list()
            if not docs:
                return
            out = []
            for d in docs:
                e = {k: v for k, v in d.items() if k != "_id"}
                e["id"] = d["_id"]
                out.append(Event.model_validate(e).model_dump(mode="json"))
            yield out
            if len(docs) < page:
                return
            after = (docs[-1]["at"], docs[-1]["_id"])

    async def counts(
        self, since: datetime, types: Sequence[str], *, tenant: str | None = None, cap: int
    ) -> tuple[dict[str, dict[str, int]], int]:
        """How many events of each of ``types`` each tenant has had since ``since`` (one
        tenant's only, with ``tenant``), from at most ``cap`` events, and how many were read
        (``cap`` of them: the counts stopped there)."""
        query: dict[str, Any] = {"at": {"$gte": since}, "type": {"$in": list(types)}}
        if tenant is not None:
            query["tenant"] = tenant
        counts: dict[str, dict[str, int]] = {}
        seen = 0
        async for e in self.db.events.find(query, {"tenant": 1, "type": 1}).limit(cap):
            seen += 1
            per_type = counts.setdefault(e.get("tenant") or "-", {})
            per_type[e["type"]] = per_type.get(e["type"], 0) + 1
        return counts, seen

    async def destination_report(
        self, tenant: str, since: datetime, until: datetime, *, cap: int = 50_000
    ) -> list[dict[str, Any]]:
        """Bounces and deferrals of a time range counted by destination domain and reason:
        how a tenant sees that a receiver blocks or throttles it."""
        counts: dict[tuple[str, str, str], int] = {}
        cursor = self.db.events.find(
            {
                "tenant": tenant,
                "type": {"$in": ["bounced", "deferred", "expired"]},
                "at": {"$gte": since, "$lt": until},
            },
            {"type": 1, "address": 1, "detail": 1},
        ).limit(cap)
        async for e in cursor:
            detail = e.get("detail") or {}
            domain = detail.get("domain") or (e.get("address") or "").rpartition("@")[2]
            key = (domain.lower(), e["type"], detail.get("reason") or "unclassified")
            counts[key] = counts.get(key, 0) + 1
        return [
            {"domain": d, "type": t, "reason": r, "count": n}
            for (d, t, r), n in sorted(counts.items(), key=lambda kv: -kv[1])
        ]


async def write_events(db: AsyncDatabase[dict[str, Any]], events: Sequence[Event]) -> None:
    """Insert ``events`` into ``db``'s events collection; ones already stored (same id) are
    skipped. The one way events are written (``Events.write``, and ``Waiting.purge`` of
    shared/queue_control.py, which has the database but no repository)."""
    if not events:
        return
    docs = [
        {
            "_id": e.id,
            **e.model_dump(
                mode="python",
                # Unlabelled mail's events store no empty tags and metadata: bytes a mail
                # less (read back, they are the defaults again).
                exclude={"id", "kind", "schema_version"}
                | ({"tags"} if not e.tags else set())
                | ({"metadata"} if not e.metadata else set()),
            ),
        }
        for e in events
    ]
    try:
        await db.events.insert_many(docs, ordered=False)
    except pymongo.errors.BulkWriteError as exc:
        if any(err.get("code") != _DUPLICATE_KEY for err in exc.details.get("writeErrors", [])):
            raise


def event_of(doc: dict[str, Any]) -> Event:
    """An event as stored, as it was published (its id is the document's ``_id``)."""
    return Event.model_validate({**doc, "id": doc["_id"]})

"""The ``messages`` and ``recipients`` collections: one document per accepted submission and
one per envelope recipient (its status, attempts and last reply), and every query on them.

``Messages`` owns both collections: their indexes, their writes and their reads. Ingest
writes a message with its recipients (``insert_message``); the signer and the dispatcher move
the recipients (``pending_recipients``, ``record_attempt``, ``fail_message``); the bounce
service applies what comes back (``mark_feedback``, ``fail_dead_lettered``) and deletes what
is past its retention (``purge_finished``). A recipient moves only as the transition table
(``shared.schemas.TRANSITIONS``) lets it.

The events of a change are written through the ``Events`` repository it is given
(``shared/events.py``), before the change they describe, in the same group commit
(``insert_message``, ``record_attempt``): whoever reads a recipient's new status finds its
history in them (``with_history``). A message's events go with it (``discard_message``,
``purge_finished``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.batching import Batcher
from shared.events import Events
from shared.schemas import (
    Change,
    Event,
    MessageStage,
    RecipientResult,
    RecipientStatus,
    Reply,
    moves_from,
    utcnow,
)

_FINAL = [s.value for s in RecipientStatus if s.is_final]
_FAILS = moves_from(Change.FAILURE, RecipientStatus.FAILED)  # the recipients a failure ends
# Written for a whole batch at once: their details live in their events.
_GROUPED = (RecipientStatus.DELIVERED, RecipientStatus.DEFERRED)
# What a recipient's history is made of: the events of its attempts and of what came back.
_HISTORY = ("deferred", "delivered", "bounced", "expired", "complained", "failed")


def _stamps(status: RecipientStatus, at: datetime) -> dict[str, datetime]:
    return {"updated_at": at, **({"finished_at": at} if status.is_final else {})}


def with_history(recipient: dict[str, Any], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A recipient document with its history read from its events: every attempt and what
    came back (time, status, reply, server, source IP, reason); its last reply, server and
    source IP, and when the next attempt is due, as fields."""
    history = [
        {
            "at": e["at"],
            "status": e["type"],
            "reply": e.get("reply"),
            **{
                k: e["detail"][k]
                for k in ("destination", "source_ip", "reason", "source", "next_attempt_at")
                if (e.get("detail") or {}).get(k) is not None
            },
        }
        for e in events
        if e.get("recipient_id") == recipient["_id"] and e["type"] in _HISTORY
    ]
    out = dict(recipient, history=history)
    if history:
        last = history[-1]
        out.setdefault("reply", last["reply"])
        for key in ("destination", "source_ip"):
            if key in last:
                out[key] = last[key]
        if recipient.get("status") == "deferred" and "next_attempt_at" in last:
            out["next_attempt_at"] = last["next_attempt_at"]
    return out


class Messages:
    """The ``messages`` and ``recipients`` collections of ``db``, with the ``events``
    repository their changes' events are written through; concurrent writes wait up to
    ``batch_wait`` seconds for company when the service is busy (group commit)."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], events: Events, *, batch_wait: float = 0.0
    ) -> None:
        self.db = db
        self.events = events
        wait = batch_wait  # a busy service's writes wait this long for company
        self._messages: Batcher[tuple[dict[str, Any], list[dict[str, Any]], list[Event]], None] = (
            Batcher(self._insert_messages, max_batch=100, wait=wait)
        )
        # Group commit for the signer's and the dispatcher's per-message writes, too.
        self._pending: Batcher[tuple[str, ...], set[str]] = Batcher(
            self._pending_batch, max_batch=200, wait=wait
        )
        self._attempts: Batcher[tuple[list[RecipientResult], list[Event], str], None] = Batcher(
            self._attempts_batch, max_batch=200, wait=wait
        )

    async def ensure_indexes(self) -> None:
        """Create the collections' indexes (idempotent)."""
        await self.db.recipients.create_index([("message_id", ASCENDING)])
        await self.db.recipients.create_index([("tenant", ASCENDING), ("address", ASCENDING)])
        await self.db.recipients.create_index([("tenant", ASCENDING), ("finished_at", ASCENDING)])
        await self.db.messages.create_index([("tenant", ASCENDING), ("created_at", ASCENDING)])

    async def insert_message(
        self,
        message: dict[str, Any],
        recipients: Sequence[dict[str, Any]],
        events: Sequence[Event] = (),
    ) -> None:
        """Make an accepted message durable: its document, one per recipient, and the events
        of its acceptance. Concurrent calls share their inserts (group commit)."""
        await self._messages.submit((message, list(recipients), list(events)))

    async def _insert_messages(
        self, batch: list[tuple[dict[str, Any], list[dict[str, Any]], list[Event]]]
    ) -> None:
        # Repeatable (the batcher writes a failed batch's items again one by one): what an
        # earlier try wrote is a duplicate key now, not an error.
        await _insert_new(self.db.messages, [m for m, _, _ in batch])
        await _insert_new(self.db.recipients, [r for _, rs, _ in batch for r in rs])
        await self.events.write([e for _, _, es in batch for e in es])

    async def discard_message(self, message_id: str) -> None:
        """Forget a message whose acceptance failed after it was written (best effort)."""
        await self.events.forget([message_id])
        await self.db.recipients.delete_many({"message_id": message_id})
        await self.db.messages.delete_one({"_id": message_id})

    async def move_scheduled(
        self, message_id: str, change: Change, to: RecipientStatus, stage: MessageStage
    ) -> list[dict[str, Any]]:
        """A scheduled message released (``queued``, stage ``accepted``) or cancelled
        (``cancelled``, its stage too): its recipients the table lets move, returned."""
        query = {"message_id": message_id, "status": {"$in": moves_from(change, to)}}
        docs = await self.db.recipients.find(query).to_list()
        now = utcnow()
        await self.db.recipients.update_many(
            query, {"$set": {"status": to.value, **_stamps(to, now)}}
        )
        await self.db.messages.update_one({"_id": message_id}, {"$set": {"status": stage}})
        return docs

    async def fail_message(self, message_id: str, reply: Reply) -> None:
        """Every recipient of a message not yet final becomes ``failed`` with ``reply``."""
        await self.db.messages.update_one(
            {"_id": message_id}, {"$set": {"status": MessageStage.FAILED}}
        )
        await self.db.recipients.update_many(
            {"message_id": message_id, "status": {"$in": _FAILS}},
            {
                "$set": {
                    "status": RecipientStatus.FAILED.value,
                    "reply": reply.model_dump(),
                    "finished_at": utcnow(),
                    "updated_at": utcnow(),
                }
            },
        )

    async def fail_dead_lettered(
        self, message_id: str, recipient_ids: Sequence[str], reply: Reply
    ) -> list[dict[str, Any]]:
        """The recipients of a dead-lettered job that were not final yet become ``failed``
        with ``reply`` (marked, so a retry of the job can bring them back); returns them, and
        those a dead letter failed already (the event of a first try whose ``failed`` events
        were not published comes back: they are published again)."""
        query = {"message_id": message_id, "_id": {"$in": list(recipient_ids)}}
        docs = await self.db.recipients.find(
            {**query, "$or": [{"status": {"$in": _FAILS}}, {"dead_lettered": True}]}
        ).to_list()
        waiting = [d["_id"] for d in docs if d.get("status") in _FAILS]
        if waiting:
            await self.db.recipients.update_many(
                {**query, "_id": {"$in": waiting}, "status": {"$in": _FAILS}},
                {
                    "$set": {
                        "status": RecipientStatus.FAILED.value,
                        "reply": reply.model_dump(),
                        "dead_lettered": True,
                        "finished_at": utcnow(),
                        "updated_at": utcnow(),
                    }
                },
            )
        return docs

    async def revive_dead_lettered(self, message_id: str, recipient_ids: Sequence[str]) -> int:
        """Recipients failed by a dead-lettered job wait again (the job is retried)."""
        result = await self.db.recipients.update_many(
            {
                "message_id": message_id,
                "_id": {"$in": list(recipient_ids)},
                "status": {"$in": moves_from(Change.RETRY, RecipientStatus.QUEUED)},
                "dead_lettered": True,
            },
            {
                "$set": {"status": RecipientStatus.QUEUED.value, "updated_at": utcnow()},
                "$unset": {"dead_lettered": "", "finished_at": "", "reply": ""},
            },
        )
        return result.modified_count

    async def purge_finished(
        self, default_days: float, tenant_days: dict[str, float], *, batch: int = 2000
    ) -> int:
        """Delete messages whose every recipient reached its final state more than their
        tenant's retention ago (``tenant_days``, else ``default_days``), with their recipients
        and events; a message with a recipient still waiting is never touched. Returns how
        many went (at most ``batch`` per tenant a call)."""
        deleted = 0
        tenants = set(tenant_days) | set(await self.db.recipients.distinct("tenant"))
        for tenant in sorted(tenants):
            cutoff = utcnow() - timedelta(days=tenant_days.get(tenant, default_days))
            old = (
                await self.db.recipients.find(
                    {"tenant": tenant, "finished_at": {"$lt": cutoff}}, {"message_id": 1}
                )
                .limit(batch)
                .to_list()
            )
            ids = list({r["message_id"] for r in old})
            if not ids:
                continue
            young = await self.db.recipients.distinct(
                "message_id",
                {
                    "message_id": {"$in": ids},
                    "$or": [
                        {"status": {"$nin": _FINAL}},
                        {"finished_at": {"$gte": cutoff}},
                        {"finished_at": None},
                    ],
                },
            )
            gone = [i for i in ids if i not in set(young)]
            if not gone:
                continue
            await self.events.forget(gone)
            await self.db.recipients.delete_many({"message_id": {"$in": gone}})
            result = await self.db.messages.delete_many({"_id": {"$in": gone}})
            deleted += result.deleted_count
        return deleted

    async def message(self, message_id: str) -> dict[str, Any] | None:
        return await self.db.messages.find_one({"_id": message_id})

    async def recipients(self, message_id: str) -> list[dict[str, Any]]:
        """A message's recipients, each with its history (read from the message's events).
        The documents are read first: writers write the events of a change before the change,
        so every status read has its events."""
        docs = await self.recipient_docs(message_id)
        events = await self.events.of_message(message_id)
        return [with_history(d, events) for d in docs]

    async def recipient_docs(self, message_id: str) -> list[dict[str, Any]]:
        """A message's recipient documents as stored."""
        return (
            await self.db.recipients.find({"message_id": message_id})
            .sort("_id", ASCENDING)
            .to_list()
        )

    async def recipient_statuses(self, message_ids: Sequence[str]) -> dict[str, list[str]]:
        """Each message's recipients' statuses (for listing messages with their status)."""
        out: dict[str, list[str]] = {}
        if not message_ids:
            return out
        docs = self.db.recipients.find(
            {"message_id": {"$in": list(message_ids)}}, {"message_id": 1, "status": 1}
        )
        async for d in docs:
            out.setdefault(d["message_id"], []).append(d["status"])
        return out

    async def pending_recipients(self, ids: Iterable[str]) -> set[str]:
        """Which of these recipients still wait for delivery: stored and not final. A
        recipient already final is not sent again (a redelivered job); one without a document
        belongs to a message whose acceptance failed, and is not sent at all. Final ones whose
        result was never reported come back marked ``!<id>``."""
        return await self._pending.submit(tuple(ids)) or set()

    async def _pending_batch(self, items: list[tuple[str, ...]]) -> list[set[str]]:
        ids = sorted({i for item in items for i in item})
        docs = self.db.recipients.find({"_id": {"$in": ids}}, {"status": 1, "result_pending": 1})
        waiting: set[str] = set()
        unreported: set[str] = set()
        async for d in docs:
            if d.get("status") not in _FINAL:
                waiting.add(d["_id"])
            elif d.get("result_pending"):
                unreported.add(f"!{d['_id']}")  # marked: see unreported_results()
        return [
            (waiting | unreported).intersection({*item, *(f"!{i}" for i in item)}) for item in items
        ]

    async def unreported_results(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Recipients of these whose bounce or expiry was written but whose result never
        reached the bounce service (the publish failed after the write): to publish again."""
        return await self.db.recipients.find(
            {"_id": {"$in": list(ids)}, "result_pending": True},
            {"address": 1, "status": 1, "reply": 1, "command": 1, "attempts": 1},
        ).to_list()

    async def results_reported(self, ids: Sequence[str]) -> None:
        """The bounce service has these recipients' results (published and confirmed)."""
        if ids:
            await self.db.recipients.update_many(
                {"_id": {"$in": list(ids)}}, {"$unset": {"result_pending": ""}}
            )

    async def record_attempt(
        self,
        results: Sequence[RecipientResult],
        events: Sequence[Event] = (),
        *,
        source_ip: str = "",
    ) -> None:
        """Write one delivery attempt's outcome for each recipient, with its events, together
        with concurrent attempts' (group commit). Delivered and deferred recipients change
        only their status and counters — one update per status for the whole batch; the reply,
        server and source IP of every attempt are in its event, which ``recipients`` reads
        back as the recipient's history. A bounce or an expiry keeps its reply on the
        recipient itself too (it outlives the events' retention). A recipient already final
        keeps its state. The source IP is kept on the recipient (``hato queue list`` counts
        waiting mail by it), and a suspension it waited for is over."""
        if results:
            await self._attempts.submit((list(results), list(events), source_ip))

    async def _attempts_batch(
        self, items: list[tuple[list[RecipientResult], list[Event], str]]
    ) -> None:
        at = utcnow()
        by_status: dict[tuple[RecipientStatus, str], list[str]] = {}
        one_by_one: list[UpdateOne] = []
        for results, _, source_ip in items:
            for r in results:
                if r.status in _GROUPED:
                    by_status.setdefault((r.status, source_ip), []).append(r.recipient_id)
                    continue
                # A bounce or an expiry is reported to the bounce service after this write;
                # until that publish is confirmed the recipient says so (result_pending), and
                # a redelivered job publishes it again (dispatcher Dispatcher.report_missed).
                fields = {
                    "status": r.status.value,
                    "reply": r.reply.model_dump(),
                    "result_pending": True,
                    **({"command": r.command} if r.command else {}),
                }
                if source_ip:
                    fields["source_ip"] = source_ip
                one_by_one.append(
                    UpdateOne(
                        {
                            "_id": r.recipient_id,
                            "status": {"$in": moves_from(Change.ATTEMPT, r.status)},
                        },
                        {
                            "$set": {**fields, **_stamps(r.status, at)},
                            "$inc": {"attempts": 1},
                            "$unset": {"held": ""},
                        },
                    )
                )
        # Events first: whoever sees a recipient's new status finds its reply in them.
        await self.events.write([e for _, es, _ in items for e in es])
        for (status, source_ip), ids in by_status.items():
            where = {"source_ip": source_ip} if source_ip else {}
            await self.db.recipients.update_many(
                {"_id": {"$in": ids}, "status": {"$in": moves_from(Change.ATTEMPT, status)}},
                {
                    "$set": {"status": status.value, **where, **_stamps(status, at)},
                    "$inc": {"attempts": 1},
                    "$unset": {"held": ""},
                },
            )
        if one_by_one:
            await self.db.recipients.bulk_write(one_by_one, ordered=False)

    async def list_messages(
        self,
        tenant: str,
        *,
        recipient: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        metadata: dict[str, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: str | None = None,
        limit: int = 50,
        sender: str | None = None,
        subject: str | None = None,
        message_id_header: str | None = None,
    ) -> list[dict[str, Any]]:
        """A tenant's messages, newest first (ids are time-ordered, so ``before`` pages).
        ``sender`` is the envelope sender or the From address, ``subject`` a part of the
        subject (any case), ``message_id_header`` the Message-ID (with or without <>);
        ``metadata`` keys are checked by the caller (letters, digits, _ and -)."""
        query: dict[str, Any] = {"tenant": tenant}
        if sender:
            either = [sender, sender.lower()]
            query["$or"] = [{"mail_from": {"$in": either}}, {"header_from": {"$in": either}}]
        if subject:
            query["subject"] = {"$regex": re.escape(subject), "$options": "i"}
        if message_id_header:
            bare = message_id_header.strip().strip("<>")
            query["message_id_header"] = {"$in": [bare, f"<{bare}>"]}
        if recipient or status:
            rquery: dict[str, Any] = {"tenant": tenant}
            if recipient:
                rquery["address"] = {"$in": [recipient, recipient.lower()]}
            if status:
                rquery["status"] = status
            ids = {
                d["message_id"] async for d in self.db.recipients.find(rquery, {"message_id": 1})
            }
            query["_id"] = {"$in": sorted(ids)}
        if tag:
            query["tags"] = tag
        for key, value in (metadata or {}).items():
            query[f"metadata.{key}"] = value
        created: dict[str, Any] = {}
        if since:
            created["$gte"] = since
        if until:
            created["$lt"] = until
        if created:
            query["created_at"] = created
        if before:
            query.setdefault("_id", {})
            if isinstance(query["_id"], dict):
                query["_id"]["$lt"] = before
        cursor = self.db.messages.find(query).sort("_id", -1).limit(limit)
        return await cursor.to_list()

    async def recipient(self, recipient_id: str) -> dict[str, Any] | None:
        """One recipient with its history, or None."""
        doc = await self.db.recipients.find_one({"_id": recipient_id})
        if doc is None:
            return None
        return with_history(doc, await self.events.of_message(doc["message_id"]))

    async def recipient_by_address(self, message_id: str, address: str) -> dict[str, Any] | None:
        return await self.db.recipients.find_one(
            {"message_id": message_id, "address": {"$in": [address, address.lower()]}}
        )

    async def mark_feedback(self, recipient_id: str, status: RecipientStatus, reply: Reply) -> None:
        """An asynchronous bounce or a complaint: it overrides ``delivered`` and a recipient
        still waiting, not one already final otherwise (its event, written by the caller, is
        the history entry either way)."""
        at = utcnow()
        await self.db.recipients.update_one(
            {"_id": recipient_id, "status": {"$in": moves_from(Change.FEEDBACK, status)}},
            {
                "$set": {
                    "status": status.value,
                    "reply": reply.model_dump(),
                    "updated_at": at,
                    "finished_at": at,
                }
            },
        )


async def _insert_new(collection: Any, docs: list[dict[str, Any]]) -> None:
    """Insert ``docs``; those already there (same ``_id``) are not an error."""
    if not docs:
        return
    try:
        await collection.insert_many(docs, ordered=False)
    except pymongo.errors.BulkWriteError as exc:
        if any(err.get("code") != 11000 for err in exc.details.get("writeErrors", [])):
            raise

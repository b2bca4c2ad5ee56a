"""Queue control: what operators, and the dispatcher's reply rules, put on the delivery of
waiting mail, and the reads and writes of waiting recipients behind ``hato queue``.

A control is a document of the ``queue_controls`` collection, so every dispatcher replica
sees it and it outlives restarts; each has a scope (tenant, destination domain, source IP,
provider: what is left empty matches everything) and an optional expiry:

- ``suspend``: matching deliveries wait (held in a retry queue, their attempts not counted)
  until it is lifted or expires;
- ``move``: matching jobs go out from another pool (``pool``);
- ``avoid``: the source IP is not picked for matching destinations (another member of the
  pool takes them) — what the "move to another IP" rule leaves;
- ``slow``: the pace from the source IP to matching destinations is kept at ``factor``.

One scope holds one control of each action: the same scope given again replaces it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared.domains import walk_up
from shared.events import write_events
from shared.schemas import (
    Change,
    Event,
    EventType,
    RecipientStatus,
    Reply,
    moves_from,
    utcnow,
)

WAITING = [RecipientStatus.QUEUED.value, RecipientStatus.DEFERRED.value]
LIST_CAP = 100_000  # recipients a listing reads at most
PURGE_BATCH = 1000


class Action(StrEnum):
    """What a control does to the deliveries in its scope."""

    SUSPEND = "suspend"
    MOVE = "move"
    AVOID = "avoid"
    SLOW = "slow"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which deliveries a control or a queue command is about; an empty field matches all.
    ``domain`` covers its subdomains; ``provider`` is a provider group (gmail, docomo ...)
    or a destination domain."""

    tenant: str = ""
    domain: str = ""
    source_ip: str = ""
    provider: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", self.domain.strip().lower().rstrip("."))
        object.__setattr__(self, "provider", self.provider.strip().lower().rstrip("."))

    @property
    def empty(self) -> bool:
        return not (self.tenant or self.domain or self.source_ip or self.provider)

    def key(self) -> str:
        return "|".join((self.tenant, self.domain, self.source_ip, self.provider))

    def matches(
        self, *, tenant: str = "", domain: str = "", source_ip: str = "", provider: str = ""
    ) -> bool:
        """Whether a delivery of ``tenant`` to ``domain`` from ``source_ip`` (to a server of
        ``provider``) is in this scope."""
        if self.tenant and self.tenant != tenant:
            return False
        parents = list(walk_up(domain, top=True)) if domain else []
        if self.domain and self.domain not in parents:
            return False
        if self.source_ip and self.source_ip != source_ip:
            return False
        return not (self.provider and self.provider != provider and self.provider not in parents)

    def describe(self) -> str:
        parts = [f"{k} {v}" for k, v in asdict(self).items() if v]
        return ", ".join(parts) or "everything"

    def recipient_query(self) -> dict[str, Any]:
        """The waiting recipients in this scope, as a store query (the provider and the
        source IP are matched on what the recipient's last attempt recorded)."""
        query: dict[str, Any] = {"status": {"$in": WAITING}}
        if self.tenant:
            query["tenant"] = self.tenant
        if self.domain:
            escaped = re.escape(self.domain)
            query["domain"] = {"$regex": f"^(.+\\.)?{escaped}$"}
        if self.source_ip:
            query["source_ip"] = self.source_ip
        return query


RETRY_PREFIX = "retry:"


def retry_request(scope: Scope) -> str:
    """The name of a QUEUE change asking dispatchers to send the jobs in ``scope`` that wait
    for a retry (held or deferred) again now."""
    return RETRY_PREFIX + json.dumps(asdict(scope), sort_keys=True)


def retry_requested(name: str) -> Scope | None:
    """The scope a QUEUE change's name asks to retry now; None when it asks nothing."""
    if not name.startswith(RETRY_PREFIX):
        return None
    try:
        fields = json.loads(name[len(RETRY_PREFIX) :])
        return Scope(**{k: str(v) for k, v in fields.items() if k in Scope.__slots__})
    except (ValueError, TypeError):
        return None


def scope_of(doc: dict[str, Any]) -> Scope:
    return Scope(
        doc.get("tenant") or "",
        doc.get("domain") or "",
        doc.get("source_ip") or "",
        doc.get("provider") or "",
    )


def control_id(action: Action, scope: Scope) -> str:
    return f"{action.value}:{scope.key()}"


def control_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "action": doc["action"],
        **asdict(scope_of(doc)),
        "pool": doc.get("pool"),
        "factor": doc.get("factor"),
        "reason": doc.get("reason", ""),
        "origin": doc.get("origin", "operator"),
        "created_at": doc.get("created_at"),
        "expires_at": doc.get("expires_at"),
    }


class Controls:
    """The ``queue_controls`` collection."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        await self.db.queue_controls.create_index([("expires_at", ASCENDING)])

    async def put(
        self,
        action: Action,
        scope: Scope,
        *,
        reason: str = "",
        origin: str = "operator",
        expires_in: float | None = None,
        pool: str | None = None,
        factor: float | None = None,
        detail: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Add (or replace) the control of ``action`` over ``scope``."""
        now = utcnow()
        doc: dict[str, Any] = {
            "_id": control_id(action, scope),
            "action": action.value,
            **asdict(scope),
            "reason": reason,
            "origin": origin,
            "created_at": now,
            "expires_at": now + timedelta(seconds=expires_in) if expires_in else None,
            **({"pool": pool} if pool else {}),
            **({"factor": factor} if factor is not None else {}),
            **({"detail": detail} if detail else {}),
        }
        await self.db.queue_controls.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return doc

    async def remove(self, action: Action, scope: Scope) -> dict[str, Any] | None:
        """Lift the control of ``action`` over exactly ``scope``; the removed document."""
        doc = await self.db.queue_controls.find_one({"_id": control_id(action, scope)})
        if doc is not None:
            await self.db.queue_controls.delete_one({"_id": doc["_id"]})
        return doc

    async def remove_id(self, control: str) -> bool:
        result = await self.db.queue_controls.delete_one({"_id": control})
        return bool(result.deleted_count)

    async def all(self) -> list[dict[str, Any]]:
        """Every control, expired ones included (their dispatcher ends them)."""
        return await self.db.queue_controls.find({}).sort("_id", ASCENDING).to_list()

    async def active(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [d for d in await self.all() if not expired(d, now)]


def expired(doc: dict[str, Any], now: datetime) -> bool:
    until = doc.get("expires_at")
    if until is None:
        return False
    if until.tzinfo is None:
        until = until.replace(tzinfo=now.tzinfo)
    return until <= now


@dataclass(frozen=True, slots=True)
class ControlSet:
    """A snapshot of the controls in force, as the dispatcher consults them per job."""

    docs: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(cls, docs: Iterable[dict[str, Any]]) -> ControlSet:
        now = utcnow()
        return cls(tuple(d for d in docs if not expired(d, now)))

    def _matching(self, action: Action, **where: str) -> list[dict[str, Any]]:
        now = utcnow()
        return [
            d
            for d in self.docs
            if d["action"] == action.value and not expired(d, now) and scope_of(d).matches(**where)
        ]

    def hold(
        self, *, tenant: str, domain: str, source_ip: str, provider: str
    ) -> dict[str, Any] | None:
        """The suspension that keeps this delivery waiting, if any."""
        found = self._matching(
            Action.SUSPEND, tenant=tenant, domain=domain, source_ip=source_ip, provider=provider
        )
        return found[0] if found else None

    def move(self, *, tenant: str, domain: str) -> str | None:
        """The pool a job of ``tenant`` to ``domain`` is moved to; the most specific move
        (tenant and domain over tenant over domain) wins."""
        found = self._matching(Action.MOVE, tenant=tenant, domain=domain)
        if not found:
            return None
        best = max(found, key=lambda d: (bool(d.get("tenant")), len(d.get("domain") or "")))
        return str(best["pool"])

    def avoided(self, *, domain: str, provider: str = "") -> set[str]:
        """Source IPs not to pick for ``domain`` (served by a server of ``provider``)."""
        now = utcnow()
        return {
            d["source_ip"]
            for d in self.docs
            if d["action"] == Action.AVOID.value
            and d.get("source_ip")
            and not expired(d, now)
            # The control's scope names its IP: the rest of it says where to avoid it.
            and Scope(domain=d.get("domain") or "", provider=d.get("provider") or "").matches(
                domain=domain, provider=provider
            )
        }

    def slow(self, *, source_ip: str, domain: str, provider: str) -> float:
        """The pace factor (at most 1) controls keep from ``source_ip`` to ``domain``."""
        factors = [
            float(d.get("factor") or 1.0)
            for d in self._matching(
                Action.SLOW, source_ip=source_ip, domain=domain, provider=provider
            )
        ]
        return min([1.0, *factors])


# -- waiting recipients --------------------------------------------------------------------


def _reason(doc: dict[str, Any]) -> str:
    if doc.get("held"):
        return f"suspended: {doc['held']}"
    return str(doc.get("status", "queued"))


def summarize(docs: Sequence[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """Counts of waiting recipients by tenant, destination domain, source IP and reason,
    with the oldest's age."""
    by: dict[str, dict[str, int]] = {"tenant": {}, "domain": {}, "source_ip": {}, "reason": {}}
    oldest: datetime | None = None
    attempts = 0
    for d in docs:
        for key, value in (
            ("tenant", d.get("tenant") or "-"),
            ("domain", d.get("domain") or "-"),
            ("source_ip", d.get("source_ip") or "-"),
            ("reason", _reason(d)),
        ):
            by[key][value] = by[key].get(value, 0) + 1
        created = d.get("created_at")
        if created is not None:
            if created.tzinfo is None:
                created = created.replace(tzinfo=now.tzinfo)
            oldest = created if oldest is None or created < oldest else oldest
        attempts += int(d.get("attempts") or 0)
    return {
        "waiting": len(docs),
        "attempts": attempts,
        "oldest": oldest,
        "oldest_seconds": round((now - oldest).total_seconds(), 1) if oldest else None,
        **{
            f"by_{key}": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
            for key, counts in by.items()
        },
    }


class Waiting:
    """The waiting recipients (``queued``, ``deferred``) as operators see and change them."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def find(self, scope: Scope, *, limit: int = LIST_CAP) -> list[dict[str, Any]]:
        fields = {
            "tenant": 1,
            "domain": 1,
            "source_ip": 1,
            "status": 1,
            "held": 1,
            "created_at": 1,
            "attempts": 1,
            "message_id": 1,
            "address": 1,
        }
        return await self.db.recipients.find(scope.recipient_query(), fields).limit(limit).to_list()

    async def mark_held(self, ids: Sequence[str], reason: str, source_ip: str) -> None:
        """These recipients wait because of a suspension (their attempts do not grow)."""
        if ids:
            await self.db.recipients.update_many(
                {"_id": {"$in": list(ids)}, "status": {"$in": WAITING}},
                {"$set": {"held": reason, "source_ip": source_ip}},
            )

    async def purge(self, scope: Scope, reason: str) -> list[Event]:
        """Every waiting recipient in ``scope`` ends ``bounced`` with the operator's reason;
        their ``bounced`` events (written here, published by the caller)."""
        reply = Reply.of(550, "5.0.0", f"purged by the operator: {reason}")
        sources = moves_from(Change.PURGE, RecipientStatus.BOUNCED)
        events: list[Event] = []
        while True:
            docs = await self.find(scope, limit=PURGE_BATCH)
            if not docs:
                return events
            ids = [d["_id"] for d in docs]
            at = utcnow()
            batch = [
                Event.of(
                    EventType.BOUNCED,
                    tenant=d["tenant"],
                    message_id=d["message_id"],
                    recipient_id=d["_id"],
                    address=d.get("address"),
                    step=("purge", int(d.get("attempts") or 0)),
                    reply=reply,
                    detail={
                        "reason": "purged",
                        "purged": True,
                        "operator_reason": reason,
                        "domain": d.get("domain"),
                    },
                    at=at,
                )
                for d in docs
            ]
            await write_events(self.db, batch)
            await self.db.recipients.update_many(
                {"_id": {"$in": ids}, "status": {"$in": sources}},
                {
                    "$set": {
                        "status": RecipientStatus.BOUNCED.value,
                        "reply": reply.model_dump(),
                        "purged": True,
                        "updated_at": at,
                        "finished_at": at,
                    },
                    "$unset": {"held": ""},
                },
            )
            events += batch
            if len(docs) < PURGE_BATCH:
                return events

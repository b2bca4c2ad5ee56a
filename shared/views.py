"""A message as the people who ask about it see it (``hato message show``, ``GET
/v1/messages``): its status follows its recipients' states, and a message that waits says for
what.

The status is worked out when asked, from the recipients: writing it on every recipient's
final state would cost each delivery another database write for what only a reader needs.
For the same reason the signer does not write on the message: its stage (``accepted`` until
signed), the keys it was signed with and when are read from its ``signed`` or ``unsigned``
event.

=======================  ===================================================================
status                   when
=======================  ===================================================================
``accepted``             durable, not signed yet
``signed``               signed; no recipient has reached a final state or been deferred
``deferred``             some recipient waits for a retry
``delivered`` ...        every recipient ended the same way: ``delivered``, ``bounced``,
                         ``complained``, ``suppressed``, ``expired`` or ``failed``
``partially_delivered``  every recipient is final, some delivered and some not
``undelivered``          every recipient is final, none delivered, in different ways
=======================  ===================================================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from shared.messages import with_history
from shared.schemas import EventType, MessageStage, MessageStatus, RecipientStatus
from shared.store import Store

_FINAL = {s.value for s in RecipientStatus if s.is_final}
HEARTBEAT_WITHIN = 30.0  # seconds: a dispatcher heard from since is taken as running
SIGNING_TAKES = 10.0  # seconds after which a message not yet signed is said to wait


def message_status(stage: str, statuses: Iterable[str]) -> str:
    """The status of a message at ``stage`` (what its own document says) whose recipients
    are in ``statuses``."""
    statuses = list(statuses)
    if statuses and all(s in _FINAL for s in statuses):
        kinds = set(statuses)
        if len(kinds) == 1:
            return kinds.pop()
        return (
            MessageStatus.PARTIALLY_DELIVERED
            if RecipientStatus.DELIVERED.value in kinds
            else MessageStatus.UNDELIVERED
        )
    if RecipientStatus.DEFERRED.value in statuses:
        return RecipientStatus.DEFERRED.value
    return stage


def with_signing(message: dict[str, Any], signing: dict[str, Any] | None) -> dict[str, Any]:
    """The message document with what its ``signed`` or ``unsigned`` event (``signing``) says:
    ``status`` (its stage) ``signed``, ``dkim`` (domain, selectors, alignment; null when sent
    unsigned) and ``signed_at``. A message failed before signing, or not signed yet, is as
    stored."""
    if signing is None or message.get("status") == MessageStage.FAILED:
        return message
    detail = signing.get("detail") or {}
    dkim = (
        {k: detail.get(k) for k in ("domain", "selectors", "aligned")}
        if signing["type"] == EventType.SIGNED.value
        else None
    )
    return {**message, "status": MessageStage.SIGNED, "dkim": dkim, "signed_at": signing["at"]}


def _signing_event(events: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    signing = {EventType.SIGNED.value, EventType.UNSIGNED.value}
    return next((e for e in events if e["type"] in signing), None)


async def waiting_for(store: Store, message: dict[str, Any], statuses: list[str]) -> str | None:
    """What a message (with its signing: ``with_signing``) that has recipients still queued
    waits for, when it is not just a moment's work: a signer, or a dispatcher of its pool."""
    if RecipientStatus.QUEUED.value not in statuses:
        return None
    if message.get("status") == MessageStage.ACCEPTED:
        created = message.get("created_at")
        age = (datetime.now(UTC) - created).total_seconds() if created else 0.0
        if age < SIGNING_TAKES:
            return None
        return f"for a signer: accepted {age:.0f} s ago and not signed yet (does a signer run?)"
    pool = message.get("pool") or "default"
    live = await store.pools.live_dispatchers(HEARTBEAT_WITHIN)
    serving = [d["_id"] for d in live if pool in d.get("pools", [])]
    if serving:
        return None
    members = next((p.get("members", []) for p in await store.pools.all() if p["_id"] == pool), [])
    ips = ", ".join(m["ip"] for m in members) or "none"
    return (
        f"for a dispatcher of pool {pool}: none is running (member IPs: {ips}); the pool's "
        f"mail waits in its queue until a dispatcher owning one of them starts"
    )


async def message_view(store: Store, message_id: str) -> dict[str, Any] | None:
    """A message with its status, per-status recipient counts, recipients and events."""
    message = await store.messages.message(message_id)
    if message is None:
        return None
    # The documents before the events: see Messages.recipients.
    docs = await store.messages.recipient_docs(message_id)
    events = await store.events.of_message(message_id)
    message = with_signing(message, _signing_event(events))
    recipients = [with_history(r, events) for r in docs]
    statuses = [r["status"] for r in recipients]
    view = _message(message)
    view["stage"] = message.get("status")
    view["status"] = message_status(message.get("status", ""), statuses)
    view["recipient_counts"] = dict(Counter(statuses))
    waiting = await waiting_for(store, message, statuses)
    if waiting:
        view["waiting"] = waiting
    view["recipients"] = [_public(r) for r in recipients]
    view["events"] = [_public(e) for e in events]
    return view


async def with_status(store: Store, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listed messages with their status worked out (one query for all their recipients, one
    for their signing)."""
    ids = [m["_id"] for m in messages]
    statuses = await store.messages.recipient_statuses(ids)
    signing = await store.events.signing(ids)
    out = []
    for stored in messages:
        m = with_signing(stored, signing.get(stored["_id"]))
        view = _message(m)
        view["stage"] = m.get("status")
        mine = statuses.get(m["_id"], [])
        view["status"] = message_status(m.get("status", ""), mine)
        view["recipient_counts"] = dict(Counter(mine))
        out.append(view)
    return out


def _message(doc: dict[str, Any]) -> dict[str, Any]:
    """A message document as shown: with ``trace_id``, the id of the mail's trace (null for
    mail accepted before traces were recorded); the full ``traceparent`` is for Hato alone."""
    view = _public(doc)
    view.pop("traceparent", None)
    view["trace_id"] = doc.get("trace_id")
    return view


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored document as shown: its ``_id`` as ``id``, first."""
    return {"id": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}

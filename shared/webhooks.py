"""Webhooks: tenants' endpoints with event filters, and the outbox of their deliveries.

The outbox (``webhook_deliveries``) holds one document per endpoint and event: ``pending``
(due at ``next_at``), then ``delivered`` or ``failed``. The bounce service sends an
endpoint's pending deliveries while it holds that endpoint's lease (``shared/leases.py``).

A POST carries ``{"events": [...]}`` and is signed: ``Hato-Signature: t=<unix time>,
v1=<hex HMAC-SHA256 of "<t>.<body>" with the endpoint's secret>``. Receivers check the
signature and the time, and drop events whose ``id`` they have seen (deliveries are at least
once). Secrets are stored sealed by the master key. An endpoint may instead take its events
in SendGrid's, Postmark's or Mailgun's shape and signature (``webhook_formats.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from shared.ids import new_id
from shared.schemas import utcnow
from shared.secrets import SecretBox
from shared.webhook_formats import WebhookFormat, new_signing_key

SIGNATURE_HEADER = "Hato-Signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, body: bytes, header: str, *, tolerance: float = 300) -> bool:
    """What a receiver does: the signature matches and is recent. Never raises: any header
    a sender could write is an answer, not an error."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t = parts.get("t", "")
    if not (t.isascii() and t.isdigit() and len(t) <= 12):  # a time, not 10**4300
        return False
    if abs(time.time() - int(t)) > tolerance:
        return False
    expected = sign(secret, body, int(t)).split("v1=")[1]
    return hmac.compare_digest(parts.get("v1", "").encode(), expected.encode())


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without the ``user:pass@`` it may carry, and those credentials (None: none)."""
    try:
        parts = urlsplit(url)
        if parts.username is None:
            return url, None
    except ValueError:  # not a URL: the egress check says so
        return url, None
    credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])), credentials


class DeliveryState(StrEnum):
    """Where an event stands in a webhook's outbox."""

    PENDING = "pending"  # to be sent (again, after a back-off)
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # refused for good, or out of retries


class Webhooks:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        await self.db.webhooks.create_index([("tenant", ASCENDING)])
        await self.db.webhook_deliveries.create_index(
            [("state", ASCENDING), ("next_at", ASCENDING)]
        )
        await self.db.webhook_deliveries.create_index(
            [("webhook", ASCENDING), ("created_at", ASCENDING)]
        )

    async def add(
        self,
        tenant: str,
        url: str,
        events: list[str],
        box: SecretBox,
        *,
        format: WebhookFormat = WebhookFormat.HATO,
    ) -> tuple[dict[str, Any], str]:
        """A new endpoint and its secret (shown once). A ``postmark`` endpoint's credentials,
        written in its URL (``https://user:pass@host/``, as Postmark's webhooks carry them),
        are kept sealed and sent as Basic auth, never stored or listed in the URL; a
        ``sendgrid`` endpoint gets its own ECDSA key pair, the public key in ``public_key``."""
        secret = "whsec_" + secrets.token_urlsafe(24)
        credentials = None
        if format is WebhookFormat.POSTMARK:
            url, credentials = split_credentials(url)
        doc: dict[str, Any] = {
            "_id": new_id(),
            "tenant": tenant,
            "url": url,
            "events": events,
            "format": format.value,
            "secret_sealed": box.seal(secret.encode()),
            "created_at": utcnow(),
        }
        if credentials is not None:
            doc["basic_sealed"] = box.seal(credentials.encode())
        if format is WebhookFormat.SENDGRID:
            pem, public = new_signing_key()
            doc["key_sealed"] = box.seal(pem)
            doc["public_key"] = public
        await self.db.webhooks.insert_one(doc)
        return doc, secret

    async def bound_keys(self) -> set[str]:
        """The routing keys the webhook queue was last bound with (for unbinding)."""
        doc = await self.db.meta.find_one({"_id": "webhook_bindings"})
        return set((doc or {}).get("keys", []))

    async def set_bound_keys(self, keys: set[str]) -> None:
        await self.db.meta.update_one(
            {"_id": "webhook_bindings"}, {"$set": {"keys": sorted(keys)}}, upsert=True
        )

    async def of(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """A tenant's webhooks; every tenant's only when ``tenant`` is None (an empty name is
        a tenant with no webhooks, not all of them)."""
        query = {} if tenant is None else {"tenant": tenant}
        return await self.db.webhooks.find(query).sort("_id", ASCENDING).to_list()

    async def get(self, webhook_id: str) -> dict[str, Any] | None:
        return await self.db.webhooks.find_one({"_id": webhook_id})

    async def remove(self, tenant: str, webhook_id: str) -> bool:
        result = await self.db.webhooks.delete_one({"_id": webhook_id, "tenant": tenant})
        return result.deleted_count > 0

    async def enqueue(self, webhook_id: str, events: list[dict[str, Any]]) -> None:
        """Put events in a webhook's outbox (an event already there is not added twice)."""
        if not events:
            return
        ops = [
            UpdateOne(
                {"_id": f"{webhook_id}:{e['id']}"},
                {
                    "$setOnInsert": {
                        "webhook": webhook_id,
                        "event": e,
                        "state": DeliveryState.PENDING,
                        "attempts": 0,
                        "next_at": utcnow(),
                        "created_at": utcnow(),
                    }
                },
                upsert=True,
            )
            for e in events
        ]
        await self.db.webhook_deliveries.bulk_write(ops, ordered=False)

    async def requeue(self, webhook_id: str, events: list[dict[str, Any]]) -> int:
        """Replay: these events are sent again, delivered or not."""
        ops = [
            UpdateOne(
                {"_id": f"{webhook_id}:{e['id']}"},
                {
                    "$set": {
                        "webhook": webhook_id,
                        "event": e,
                        "state": DeliveryState.PENDING,
                        "attempts": 0,
                        "next_at": utcnow(),
                    },
                    "$setOnInsert": {"created_at": utcnow()},
                },
                upsert=True,
            )
            for e in events
        ]
        if ops:
            await self.db.webhook_deliveries.bulk_write(ops, ordered=False)
        return len(ops)

    async def due(self, limit: int = 500) -> list[dict[str, Any]]:
        cursor = self.db.webhook_deliveries.find(
            {"state": DeliveryState.PENDING, "next_at": {"$lte": utcnow()}}
        ).sort("next_at", ASCENDING)
        return await cursor.limit(limit).to_list()

    async def still_due(self, ids: list[str]) -> list[dict[str, Any]]:
        """Those of these deliveries that are still due, read again by ``_id`` (cheap on
        FerretDB too): what another replica sent and settled since ``due()`` is not sent
        again."""
        if not ids:
            return []
        cursor = self.db.webhook_deliveries.find(
            {"_id": {"$in": ids}, "state": DeliveryState.PENDING, "next_at": {"$lte": utcnow()}}
        ).sort("next_at", ASCENDING)
        return await cursor.to_list()

    async def settle(
        self,
        ids: list[str],
        *,
        ok: bool,
        status: int | None,
        error: str,
        attempts: int,
        backoff: float | None,
    ) -> None:
        fields: dict[str, Any] = {
            "last_status": status,
            "last_error": error,
            "last_attempt_at": utcnow(),
            "attempts": attempts,
        }
        if ok:
            fields["state"] = DeliveryState.DELIVERED
        elif backoff is None:
            fields["state"] = DeliveryState.FAILED
        else:
            fields["next_at"] = utcnow() + timedelta(seconds=backoff)
        await self.db.webhook_deliveries.update_many({"_id": {"$in": ids}}, {"$set": fields})

    async def log(self, webhook_id: str, limit: int = 100) -> list[dict[str, Any]]:
        cursor = (
            self.db.webhook_deliveries.find({"webhook": webhook_id})
            .sort("created_at", -1)
            .limit(limit)
        )
        return await cursor.to_list()

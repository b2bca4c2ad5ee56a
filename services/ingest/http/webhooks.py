"""A tenant's webhooks: endpoints its events are POSTed to (signed), their delivery log, and
replays of a time range."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.ingest.api_models import ReplayIn, WebhookIn
from services.ingest.http.deps import Door, DoorDep, Tenant
from services.ingest.http.problems import Problem, problems
from shared.directory import Identity
from shared.egress import Forbidden
from shared.schemas import ChangeKind
from shared.store import Store
from shared.webhook_formats import WebhookFormat
from shared.webhooks import split_credentials

router = APIRouter(tags=["webhooks"])

MAX_REPLAY = 100_000  # events one replay call queues; the caller goes on from next_since
_NO_SUCH = (404, "No such webhook (another tenant's is not found either).")


_FORMAT = "hato, sendgrid, postmark or mailgun: the shape and signature of the POSTs."
_PUBLIC_KEY = (
    "sendgrid format: the public key (base64 DER) that verifies the "
    "X-Twilio-Email-Event-Webhook-Signature, as SendGrid shows its own."
)


class Webhook(BaseModel):
    id: str
    url: str
    events: list[str] = Field(description="Event types sent; empty: all of them.")
    format: str = Field("hato", description=_FORMAT)
    public_key: str | None = Field(None, description=_PUBLIC_KEY)
    created_at: datetime


class WebhookCreated(BaseModel):
    id: str
    url: str
    events: list[str]
    format: str = Field(description=_FORMAT)
    public_key: str | None = Field(None, description=_PUBLIC_KEY)
    secret: str = Field(
        description="The signing secret (mailgun format: the HTTP webhook signing key); "
        "shown in this answer only."
    )


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class DeliveryEntry(BaseModel):
    event_id: str
    type: str
    state: str = Field(description="pending, delivered, failed, ...")
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: datetime | None


class DeliveryLog(BaseModel):
    deliveries: list[DeliveryEntry]


class Replayed(BaseModel):
    queued: int
    complete: bool = Field(description="False: the range holds more; go on from next_since.")
    next_since: datetime | None


@router.post(
    "/v1/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    responses=problems(
        400,
        401,
        403,
        413,
        (422, "The URL is refused: it leads to a private or otherwise forbidden address."),
        (503, "Webhooks need the master key (HATO_MASTER_KEY_FILE), which is not configured."),
    ),
)
async def add_webhook(body: WebhookIn, identity: Tenant, door: DoorDep) -> dict[str, Any]:
    """An endpoint for the tenant's events; the signing secret is in this answer only."""
    if door.box is None:
        raise Problem(503, "webhooks need the master key (HATO_MASTER_KEY_FILE)")
    try:  # checked again before every POST: a name may resolve elsewhere later
        # Postmark's webhooks carry Basic auth credentials in the URL; other URLs may not.
        postmark = body.format is WebhookFormat.POSTMARK
        await door.egress.check_url(split_credentials(body.url)[0] if postmark else body.url)
    except Forbidden as exc:
        raise Problem(422, f"webhook URL refused: {exc}") from None
    doc, secret = await door.store.webhooks.add(
        identity.tenant, body.url, body.events, door.box, format=body.format
    )
    if door.changed is not None:  # the bounce service binds what the webhook subscribed to
        await door.changed(ChangeKind.WEBHOOKS, identity.tenant)
    return {
        "id": doc["_id"],
        "url": doc["url"],
        "events": doc["events"],
        "format": doc["format"],
        "public_key": doc.get("public_key"),
        "secret": secret,
    }


@router.get("/v1/webhooks", response_model=WebhookList, responses=problems(401, 403))
async def list_webhooks(identity: Tenant, door: DoorDep) -> dict[str, Any]:
    """The tenant's webhooks (without their secrets)."""
    return {
        "webhooks": [
            {
                "id": w["_id"],
                "url": w["url"],
                "events": w["events"],
                "format": w.get("format", "hato"),
                "public_key": w.get("public_key"),
                "created_at": w["created_at"],
            }
            for w in await door.store.webhooks.of(identity.tenant)
        ]
    }


async def _own_webhook(door: Door, webhook_id: str, identity: Identity) -> dict[str, Any]:
    hook = await door.store.webhooks.get(webhook_id)
    if hook is None or hook["tenant"] != identity.tenant:
        raise Problem(404, f"no webhook {webhook_id}")
    return hook


@router.delete("/v1/webhooks/{webhook_id}", status_code=204, responses=problems(401, 403, _NO_SUCH))
async def remove_webhook(webhook_id: str, identity: Tenant, door: DoorDep) -> None:
    """Stop sending events to this endpoint."""
    await _own_webhook(door, webhook_id, identity)
    await door.store.webhooks.remove(identity.tenant, webhook_id)
    if door.changed is not None:
        await door.changed(ChangeKind.WEBHOOKS, identity.tenant)


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryLog,
    responses=problems(401, 403, _NO_SUCH),
)
async def webhook_log(webhook_id: str, identity: Tenant, door: DoorDep) -> dict[str, Any]:
    """The delivery log: each event's state, attempts and the last answer."""
    await _own_webhook(door, webhook_id, identity)
    return {
        "deliveries": [
            {
                "event_id": d["event"]["id"],
                "type": d["event"]["type"],
                "state": d["state"],
                "attempts": d.get("attempts", 0),
                "last_status": d.get("last_status"),
                "last_error": d.get("last_error"),
                "last_attempt_at": d.get("last_attempt_at"),
            }
            for d in await door.store.webhooks.log(webhook_id)
        ]
    }


@router.post(
    "/v1/webhooks/{webhook_id}/replay",
    response_model=Replayed,
    responses=problems(400, 401, 403, 413, _NO_SUCH),
)
async def replay(
    webhook_id: str, body: ReplayIn, identity: Tenant, door: DoorDep
) -> dict[str, Any]:
    """Send the tenant's events of a time range to this endpoint again: at most
    100,000 in one call; ``complete`` is false and ``next_since`` says where to go on
    when the range holds more."""
    hook = await _own_webhook(door, webhook_id, identity)
    return await replay_range(door.store, hook, body.since, body.until)


async def replay_range(
    store: Store, hook: dict[str, Any], since: datetime, until: datetime
) -> dict[str, Any]:
    """Queue the hook's tenant's events of ``since``..``until`` (of the types it takes) to it
    again, at most MAX_REPLAY: ``queued``, ``complete`` and where to go on (``next_since``)."""
    queued = 0
    pages = store.events.pages(hook["tenant"], since, until, types=hook["events"])
    async for events in pages:
        if queued + len(events) > MAX_REPLAY:
            return {"queued": queued, "complete": False, "next_since": events[0]["at"]}
        queued += await store.webhooks.requeue(hook["_id"], events)
    return {"queued": queued, "complete": True, "next_since": None}

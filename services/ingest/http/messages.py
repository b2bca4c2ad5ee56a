"""Reading messages: one with its recipients and events, a tenant's list, and the report of
bounces and deferrals by destination.

The views are typed with the fields a message, a recipient and an event have; fields a
stored document does not have are left out (not sent as null), and what later versions add
passes through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.ingest import scheduled
from services.ingest.api_models import Moment
from services.ingest.http.deps import CallerDep, DoorDep, Tenant
from services.ingest.http.problems import Problem, problems
from shared.schemas import RecipientStatus
from shared.views import message_view, with_status

router = APIRouter(tags=["messages"])

_METADATA_FILTER = r"^[\w-]{1,64}:"  # a metadata key as the senders' are checked, then ':'


class _View(BaseModel):
    model_config = ConfigDict(extra="allow")


class HistoryEntry(_View):
    at: datetime
    status: str = Field(description="The event: `deferred`, `delivered`, `bounced`, ...")
    reply: dict[str, Any] | None = Field(None, description="The remote server's reply.")
    destination: str | None = None
    source_ip: str | None = None
    reason: str | None = None
    source: str | None = None
    next_attempt_at: str | None = Field(None, description="ISO 8601, as the deferral said.")


class RecipientView(_View):
    id: str
    address: str
    status: str = Field(description="queued, deferred, delivered, bounced, ...")
    domain: str | None = None
    attempts: int | None = None
    reply: dict[str, Any] | None = Field(None, description="The last reply.")
    destination: str | None = None
    source_ip: str | None = None
    next_attempt_at: str | None = Field(None, description="ISO 8601, when deferred.")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    history: list[HistoryEntry] = []


class EventView(_View):
    id: str
    type: str
    at: datetime
    message_id: str | None = None
    recipient_id: str | None = None
    tenant: str | None = None
    address: str | None = None
    reply: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None
    tags: list[str] = []
    metadata: dict[str, str] = {}


class MessageSummary(_View):
    """A message with its status (see the README for how it follows its recipients')."""

    id: str
    status: str = Field(description="accepted, signed, deferred, delivered, ... (README).")
    stage: str | None = Field(None, description="What the message's own document says.")
    recipient_counts: dict[str, int] = Field(description="Recipients by status.")
    tenant: str | None = None
    door: str | None = None
    client: str | None = None
    credential: str | None = None
    mail_from: str | None = None
    header_from: str | None = None
    from_domain: str | None = None
    subject: str | None = None
    message_id_header: str | None = None
    size: int | None = None
    pool: str | None = None
    recipient_count: int | None = None
    tags: list[str] = []
    metadata: dict[str, str] = {}
    created_at: datetime | None = None
    trace_id: str | None = Field(None, description="The id of the mail's trace.")
    dkim: dict[str, Any] | None = Field(None, description="Signed with: domain, selectors.")
    signed_at: datetime | None = None


class MessageView(MessageSummary):
    """A message with every recipient's state and history, its events, and what it waits
    for when it waits."""

    waiting: str | None = Field(None, description="What it waits for, when it waits long.")
    recipients: list[RecipientView]
    events: list[EventView]


class MessagePage(BaseModel):
    messages: list[MessageSummary]
    next: str | None = Field(description="The `before` of the next page; null at the end.")


class DestinationRow(BaseModel):
    domain: str
    type: str = Field(description="bounced, deferred or expired.")
    reason: str
    count: int


class DestinationReport(BaseModel):
    since: datetime
    until: datetime
    destinations: list[DestinationRow]


@router.get(
    "/v1/messages/{message_id}",
    response_model=MessageView,
    response_model_exclude_unset=True,
    responses=problems(401, (404, "No such message (another tenant's is not found either).")),
)
async def get_message(message_id: str, c: CallerDep, door: DoorDep) -> dict[str, Any]:
    """A message with its status (which follows its recipients': ``delivered`` once all
    are, see the README), every recipient's status with the remote reply, its events,
    and what it waits for when it waits."""
    view = await message_view(door.store, message_id)
    if view is None or not (c.operator or (c.identity and view["tenant"] == c.identity.tenant)):
        raise Problem(404, f"no message {message_id}")
    return view


@router.post(
    "/v1/messages/{message_id}/cancel",
    response_model=MessageView,
    response_model_exclude_unset=True,
    responses=problems(
        401,
        403,
        (404, "No such message (another tenant's is not found either)."),
        (409, "Not a scheduled message waiting for its time (released, sent or cancelled)."),
        (503, "This door does not send."),
    ),
)
async def cancel_message(message_id: str, identity: Tenant, door: DoorDep) -> dict[str, Any]:
    """Cancel a scheduled message before its ``send_at``: its recipients end ``cancelled``
    and nothing is sent."""
    if door.sender is None:
        raise Problem(503, "this door does not send")
    timeline = door.sender.acceptor.timeline
    if not await scheduled.cancel(door.store, timeline, identity.tenant, message_id):
        message = await door.store.messages.message(message_id)
        if message is None or message["tenant"] != identity.tenant:
            raise Problem(404, f"no message {message_id}")
        raise Problem(409, f"message {message_id} is not waiting for its send_at")
    view = await message_view(door.store, message_id)
    assert view is not None
    return view


@router.get(
    "/v1/messages",
    response_model=MessagePage,
    response_model_exclude_unset=True,
    responses=problems(400, 401, 403),
)
async def list_messages(
    identity: Tenant,
    door: DoorDep,
    recipient: str | None = None,
    status: Annotated[
        RecipientStatus | None, Query(description="Messages with a recipient in this status.")
    ] = None,
    tag: str | None = None,
    metadata: Annotated[
        list[Annotated[str, StringConstraints(pattern=_METADATA_FILTER)]],
        Query(
            description="``key:value``: messages with this metadata (SendGrid custom args, "
            "Postmark Metadata, Mailgun variables); repeat for all of several."
        ),
    ] = [],  # noqa: B006 (FastAPI copies it)
    since: Moment | None = None,
    until: Moment | None = None,
    before: str | None = Query(None, description="Page: the `next` of the previous page."),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """The tenant's messages, newest first, filtered by recipient, recipient status, tag,
    metadata and time; ``next`` continues the list."""
    docs = await door.store.messages.list_messages(
        identity.tenant,
        recipient=recipient,
        status=status.value if status else None,
        tag=tag,
        metadata=dict(m.split(":", 1) for m in metadata),
        since=since,
        until=until,
        before=before,
        limit=limit,
    )
    return {
        "messages": await with_status(door.store, docs),
        "next": docs[-1]["_id"] if len(docs) == limit else None,
    }


@router.get(
    "/v1/reports/destinations",
    response_model=DestinationReport,
    responses=problems(400, 401, 403),
)
async def destinations(
    identity: Tenant,
    door: DoorDep,
    since: Moment | None = None,
    until: Moment | None = None,
) -> dict[str, Any]:
    """Bounces, deferrals and expiries by destination domain and reason (default: the last
    24 hours): blocks and rate limits show here even though they suppress nobody."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=1)
    rows = await door.store.events.destination_report(identity.tenant, since, until)
    return {"since": since, "until": until, "destinations": rows}

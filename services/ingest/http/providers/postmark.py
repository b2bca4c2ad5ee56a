"""Postmark compatible sending: ``POST /email`` and ``POST /email/batch`` with
``X-Postmark-Server-Token: <Hato API key>``, so that Postmark's clients send through Hato
when only their base URL changes.

A Postmark message maps onto ``POST /v1/messages``: ``Tag`` is its tag, ``Metadata`` its
metadata, ``Headers`` its custom headers, ``MessageStream`` is taken (Hato has one stream).
Templates stored at Postmark are not available here.

Answers ``{To, SubmittedAt, MessageID, ErrorCode: 0, Message: "OK"}`` (a list of them for a
batch, each message's own); refusals are 422 with Postmark's ErrorCode (300 invalid request,
400 a From the tenant may not send from, 406 every recipient inactive — suppressed: recorded,
not sent), 401 with ErrorCode 10, 429 and 503 (ErrorCode 100) with Retry-After.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ingest.api_models import MessageIn
from services.ingest.http.deps import DoorDep
from services.ingest.http.providers.base import (
    AsciiJSON,
    Guard,
    ProviderError,
    idempotent,
    json_error,
    mailboxes,
    replayed_error,
    route_class,
    tenant_of,
    validation_error,
)
from services.ingest.idempotency import Answer
from services.ingest.send import Refused, Sender
from shared.schemas import RecipientStatus, utcnow

PATHS = frozenset({"/email", "/email/batch"})
MAX_BATCH = 500  # messages in one batch (Postmark's limit)
MAX_RECIPIENTS = 50  # To, Cc and Bcc together (Postmark's limit)

# Postmark's ErrorCodes
BAD_TOKEN = 10
MAINTENANCE = 100
INVALID_REQUEST = 300
SENDER_NOT_FOUND = 400
NOT_ALLOWED = 405
INACTIVE_RECIPIENT = 406
TOO_MANY_BATCH = 410
RATE_LIMITED = 429
_CODES = {
    401: BAD_TOKEN,
    403: SENDER_NOT_FOUND,
    429: RATE_LIMITED,
    503: MAINTENANCE,
}


class PostmarkError(BaseModel):
    """Postmark's error body."""

    ErrorCode: int
    Message: str


class Sent(BaseModel):
    """Postmark's answer to a message."""

    To: str | None = None
    SubmittedAt: str | None = None
    MessageID: str | None = None
    ErrorCode: int
    Message: str


def _code(error: ProviderError) -> int:
    return error.code or _CODES.get(error.status, INVALID_REQUEST)


def render(error: ProviderError) -> Response:
    # Postmark answers a refused message 422 with its ErrorCode; 401, 413, 429 and 503 keep
    # their status.
    status = error.status if error.status in (401, 409, 413, 429, 503) else 422
    message = (
        "Request does not contain a valid Server token." if error.status == 401 else error.message
    )
    return json_error(status, {"ErrorCode": _code(error), "Message": message})


GUARD = Guard(
    "Postmark",
    lambda path: path in PATHS,
    lambda headers: headers.get("x-postmark-server-token", "").strip(),
    render,
)


class PmHeader(BaseModel):
    Name: str
    Value: str


class PmAttachment(BaseModel):
    model_config = ConfigDict(extra="allow")

    Name: str
    Content: str = Field(description="The file, base64-encoded.")
    ContentType: str = "application/octet-stream"
    ContentID: str | None = None


class PostmarkEmail(BaseModel):
    """Postmark's message."""

    model_config = ConfigDict(extra="allow")  # TrackOpens, TrackLinks ...: taken

    From: str
    To: str | None = None
    Cc: str | None = None
    Bcc: str | None = None
    Subject: str = ""
    Tag: str | None = None
    HtmlBody: str | None = None
    TextBody: str | None = None
    ReplyTo: str | None = None
    Headers: list[PmHeader] = []
    Metadata: dict[str, Any] = {}
    Attachments: list[PmAttachment] = []
    MessageStream: str | None = None


def _list(value: str | None) -> list[str]:
    return mailboxes([value]) if value else []


_FIELDS = {
    "from": "From",
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "reply_to": "ReplyTo",
    "subject": "Subject",
    "text": "TextBody",
    "html": "HtmlBody",
    "headers": "Headers",
    "tags": "Tag",
    "metadata": "Metadata",
    "attachments": "Attachments",
}


def message_of(mail: PostmarkEmail) -> MessageIn:
    """The Hato message of a Postmark message; ProviderError (300) when it cannot be one."""
    recipients = [*_list(mail.To), *_list(mail.Cc), *_list(mail.Bcc)]
    if len(recipients) > MAX_RECIPIENTS:
        raise ProviderError(
            422, f"Maximum of {MAX_RECIPIENTS} recipients allowed per email message"
        )
    if mail.TextBody is None and mail.HtmlBody is None:
        raise ProviderError(422, "Provide either email TextBody or HtmlBody or both.")
    body = {
        "from": mail.From,
        "to": _list(mail.To),
        "cc": _list(mail.Cc),
        "bcc": _list(mail.Bcc),
        "reply_to": _list(mail.ReplyTo),
        "subject": mail.Subject,
        "text": mail.TextBody,
        "html": mail.HtmlBody,
        "headers": {h.Name: h.Value for h in mail.Headers},
        "tags": [mail.Tag] if mail.Tag else [],
        "metadata": {k: v if isinstance(v, str) else str(v) for k, v in mail.Metadata.items()},
        "attachments": [
            {
                "filename": a.Name,
                "content_type": a.ContentType,
                "content": a.Content,
                **({"content_id": a.ContentID.removeprefix("cid:")} if a.ContentID else {}),
            }
            for a in mail.Attachments
        ],
    }
    try:
        return MessageIn.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        error = validation_error(exc)
        field = error.field or ""
        head, _, rest = field.partition(".")
        where = _FIELDS.get(head, head) + (f".{rest}" if rest else "")
        said = f"Invalid '{where}': {error.message}" if where else error.message
        raise ProviderError(422, said) from None


async def _send(sender: Sender, identity, mail: PostmarkEmail) -> dict[str, Any]:
    """One message sent; its answer, or ProviderError."""
    message = message_of(mail)
    accepted = await sender.send(identity, message)
    answer = {
        "To": mail.To or "",
        "SubmittedAt": utcnow().isoformat().replace("+00:00", "Z"),
        "MessageID": accepted["id"],
        "ErrorCode": 0,
        "Message": "OK",
    }
    statuses = {r["status"] for r in accepted["recipients"]}
    if statuses == {RecipientStatus.SUPPRESSED.value}:
        inactive = ", ".join(r["address"] for r in accepted["recipients"])
        answer |= {
            "ErrorCode": INACTIVE_RECIPIENT,
            "Message": "You tried to send to recipient(s) that have been marked as inactive. "
            f"Found inactive addresses: {inactive}. Inactive recipients are ones that have "
            "generated a hard bounce, a spam complaint, or a manual suppression.",
        }
    return answer


_ERRORS = {
    status: {"model": PostmarkError, "description": meaning}
    for status, meaning in (
        (401, "No Hato API key in X-Postmark-Server-Token, or not a valid one (ErrorCode 10)."),
        (409, "A request with this Idempotency-Key is in progress."),
        (413, "The request or the message is over the limit."),
        (422, "Refused: ErrorCode 300 (invalid), 400 (From), 406 (inactive recipients)."),
        (429, "The tenant's hourly limit is reached."),
        (503, "Not made durable; try again (ErrorCode 100)."),
    )
}
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]
router = APIRouter(tags=["postmark"], route_class=route_class(GUARD))


@router.post("/email", response_model=Sent, responses=_ERRORS)
async def send_email(
    mail: PostmarkEmail, request: Request, door: DoorDep, idempotency_key: IdemKey = None
) -> JSONResponse:
    """Postmark's single message send, by Hato's rules."""
    identity = await tenant_of(GUARD, request)
    sender = door.sender
    assert sender is not None

    async def work() -> Answer:
        return Answer(200, await _send(sender, identity, mail))

    answer = await idempotent(door, request, identity, idempotency_key, work)
    if (error := replayed_error(answer)) is not None:
        raise error
    if answer.body["ErrorCode"]:
        return AsciiJSON(answer.body, status_code=422)
    return AsciiJSON(answer.body)


@router.post("/email/batch", response_model=list[Sent], responses=_ERRORS)
async def send_batch(
    mails: Annotated[list[PostmarkEmail], Body()],
    request: Request,
    door: DoorDep,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    """Postmark's batch send: each message's own answer, in order."""
    identity = await tenant_of(GUARD, request)
    sender = door.sender
    assert sender is not None
    if len(mails) > MAX_BATCH:
        raise ProviderError(422, f"Too many batch messages (at most {MAX_BATCH})", code=410)

    async def work() -> Answer:
        results = []
        for mail in mails:
            try:
                results.append(await _send(sender, identity, mail))
            except ProviderError as exc:  # each message its own answer, as Postmark's
                results.append({"ErrorCode": _code(exc), "Message": exc.message})
            except Refused as exc:
                error = ProviderError(exc.status, exc.detail)
                results.append({"ErrorCode": _code(error), "Message": exc.detail})
        return Answer(200, results)

    answer = await idempotent(door, request, identity, idempotency_key, work)
    if (error := replayed_error(answer)) is not None:
        raise error
    return AsciiJSON(answer.body)

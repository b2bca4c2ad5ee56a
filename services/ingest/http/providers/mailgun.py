"""Mailgun compatible sending: ``POST /v3/{domain}/messages`` as a multipart or urlencoded form,
with HTTP Basic auth ``api:<Hato API key>``, so that code written for Mailgun's API sends
through Hato when only its base URL changes.

The form maps onto ``POST /v1/messages``: ``to``/``cc``/``bcc`` (repeated, or comma-separated),
``from``, ``subject``, ``text``, ``html``, ``attachment`` and ``inline`` files; ``o:tag``
(repeated) are its tags, ``v:<name>`` its metadata, ``h:<Header>`` its custom headers
(``h:Reply-To`` its Reply-To), ``o:deliverytime`` (RFC 2822) holds it until then and
``o:testmode`` checks and records it without sending. ``{domain}`` must be a sending domain
of the key's tenant (404 otherwise, as Mailgun answers an unknown domain). Templates stored
at Mailgun are not available here.

Answers ``{"id": "<id@domain>", "message": "Queued. Thank you."}``; refusals
``{"message": ...}`` with 400, 403, 404, 413, 429, 503, and a bad key 401 ``Forbidden``.
"""

from __future__ import annotations

import base64
import email.utils
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile

from services.ingest.api_models import MessageIn
from services.ingest.http.deps import DoorDep
from services.ingest.http.providers.base import (
    AsciiJSON,
    Guard,
    ProviderError,
    basic_password,
    idempotent,
    json_error,
    mailboxes,
    replayed_error,
    route_class,
    tenant_of,
    validation_error,
)
from services.ingest.idempotency import Answer
from services.ingest.labels import MAX_LABEL

_PATH = re.compile(r"^/v3/[^/]+/messages$")
QUEUED = "Queued. Thank you."
TRUE = frozenset({"yes", "true", "1", "on"})  # o:testmode's "yes" and the forms clients send


class MailgunAnswer(BaseModel):
    """Mailgun's answer to a message."""

    id: str
    message: str


class MailgunError(BaseModel):
    """Mailgun's error body."""

    message: str


def render(error: ProviderError) -> Response:
    if error.status == 401:
        return PlainTextResponse("Forbidden", status_code=401)
    return json_error(error.status, {"message": error.message})


GUARD = Guard(
    "Mailgun",
    lambda path: bool(_PATH.match(path)),
    lambda headers: basic_password(headers, user="api"),
    render,
)


def _values(form: FormData, name: str) -> list[str]:
    out = []
    for value in form.getlist(name):
        if not isinstance(value, str):
            raise ProviderError(400, f"'{name}' parameter must be text")
        out.append(value)
    return out


def _one(form: FormData, name: str) -> str | None:
    values = _values(form, name)
    if len(values) > 1:
        raise ProviderError(400, f"'{name}' parameter is given more than once")
    return values[0] if values else None


def _addresses(form: FormData, name: str) -> list[str]:
    return mailboxes(_values(form, name))


async def _files(form: FormData, name: str, *, inline: bool) -> list[dict[str, Any]]:
    out = []
    for value in form.getlist(name):
        if not isinstance(value, UploadFile):
            raise ProviderError(400, f"'{name}' parameter must be a file")
        data = await value.read()
        filename = value.filename or "attachment"
        out.append(
            {
                "filename": filename,
                "content_type": value.content_type or "application/octet-stream",
                "content": base64.b64encode(data).decode(),
                **({"content_id": filename} if inline else {}),
            }
        )
    return out


def delivery_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        raise ProviderError(
            400, "'o:deliverytime' parameter is not a valid RFC 2822 date"
        ) from None
    if when.tzinfo is None:
        raise ProviderError(400, "'o:deliverytime' parameter needs a time zone")
    return when


async def message_of(form: FormData) -> MessageIn:
    """The Hato message of a Mailgun form; ProviderError (400) when it cannot be one."""
    sender = _one(form, "from")
    if not sender:
        raise ProviderError(400, "'from' parameter is missing")
    to, cc, bcc = (_addresses(form, n) for n in ("to", "cc", "bcc"))
    if not (to or cc or bcc):
        raise ProviderError(400, "'to' parameter is missing")
    text, html = _one(form, "text"), _one(form, "html")
    if text is None and html is None:
        raise ProviderError(400, "Need at least one of 'text' or 'html' parameters specified")
    headers: dict[str, str] = {}
    reply_to: list[str] = []
    metadata: dict[str, str] = {}
    for key in form:
        if key.startswith("h:"):
            value = _one(form, key) or ""
            if key[2:].lower() == "reply-to":
                reply_to = mailboxes([value])
            else:
                headers[key[2:]] = value
        elif key.startswith("v:"):
            metadata[key[2:]] = _one(form, key) or ""
    tags = _values(form, "o:tag")
    if any(len(t) > MAX_LABEL for t in tags):
        raise ProviderError(400, f"'o:tag' values are at most {MAX_LABEL} characters")
    body = {
        "from": sender,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "reply_to": reply_to,
        "subject": _one(form, "subject") or "",
        "text": text,
        "html": html,
        "headers": headers,
        "tags": tags,
        "metadata": metadata,
        "attachments": [
            *await _files(form, "attachment", inline=False),
            *await _files(form, "inline", inline=True),
        ],
    }
    try:
        return MessageIn.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        error = validation_error(exc)
        field = error.field or ""
        head = field.partition(".")[0]
        name = {"tags": "o:tag", "metadata": "v:", "headers": "h:"}.get(head, head)
        raise ProviderError(400, f"'{name}' parameter is not valid: {error.message}") from None


_FORM_FIELDS = {
    name: {"type": "string"} for name in ("from", "subject", "text", "html", "o:deliverytime")
} | {
    "to": {"type": "array", "items": {"type": "string"}},
    "cc": {"type": "array", "items": {"type": "string"}},
    "bcc": {"type": "array", "items": {"type": "string"}},
    "o:tag": {"type": "array", "items": {"type": "string"}},
    "o:testmode": {"type": "string", "enum": ["yes", "no", "true", "false"]},
}
_FORM_SCHEMA = {
    "type": "object",
    "required": ["from", "to"],
    "properties": _FORM_FIELDS,
    "additionalProperties": {"type": "string"},
    "description": "Mailgun's message form; ``h:<Header>`` and ``v:<name>`` fields too.",
}
_MULTIPART = _FORM_SCHEMA | {
    "properties": _FORM_FIELDS
    | {
        "attachment": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "inline": {"type": "array", "items": {"type": "string", "format": "binary"}},
    }
}

router = APIRouter(tags=["mailgun"], route_class=route_class(GUARD))


@router.post(
    "/v3/{domain}/messages",
    response_model=MailgunAnswer,
    responses={
        **{
            status: {"model": MailgunError, "description": meaning}
            for status, meaning in (
                (400, "The form is missing a parameter, or one is not valid."),
                (403, "A From address or pool the key's tenant may not use."),
                (404, "Not a sending domain of the key's tenant."),
                (409, "A request with this Idempotency-Key is in progress."),
                (413, "The request or the message is over the limit."),
                (422, "This Idempotency-Key was used for another request."),
                (429, "The tenant's hourly limit is reached."),
                (503, "Not made durable; try again."),
            )
        },
        401: {
            "description": "No Hato API key as Basic auth api:KEY, or not a valid one.",
            "content": {"text/plain": {"schema": {"type": "string", "enum": ["Forbidden"]}}},
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _MULTIPART},
                "application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA},
            },
        }
    },
)
async def send_message(domain: str, request: Request, door: DoorDep) -> JSONResponse:
    """Mailgun's message send, by Hato's rules."""
    identity = await tenant_of(GUARD, request)
    sender = door.sender
    assert sender is not None
    if not sender.policy.may_send_from(identity, f"postmaster@{domain}"):
        raise ProviderError(404, f"Domain not found: {domain}")
    content_type = request.headers.get("content-type", "").lower()
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        raise ProviderError(400, "the body must be a multipart or urlencoded form")
    await request.body()  # kept: the Idempotency-Key's fingerprint reads it again
    try:
        form = await request.form()
    except Exception:  # a malformed multipart body is the client's, not a 500
        raise ProviderError(400, "the form could not be read") from None
    message = await message_of(form)
    send_at = delivery_time(_one(form, "o:deliverytime"))
    sandbox = (_one(form, "o:testmode") or "").lower() in TRUE

    async def work() -> Answer:
        accepted = await sender.send(identity, message, send_at=send_at, sandbox=sandbox)
        return Answer(200, {"id": f"<{accepted['id']}@{domain}>", "message": QUEUED})

    answer = await idempotent(door, request, identity, request.headers.get("idempotency-key"), work)
    if (error := replayed_error(answer)) is not None:
        raise error
    return AsciiJSON(answer.body)

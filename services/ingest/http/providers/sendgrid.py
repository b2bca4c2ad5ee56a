"""SendGrid v3 compatible sending: ``POST /v3/mail/send`` with ``Authorization: Bearer <Hato API
key>``, so that code written for SendGrid's client libraries sends through Hato when only its
host changes.

Each personalization is a message of its own (as SendGrid sends them), composed by the same
rules as ``POST /v1/messages``: ``categories`` are its tags, ``custom_args`` (the mail's, then
the personalization's) its metadata, ``substitutions`` are replaced in its subject and
bodies, ``asm.group_id`` is kept as the metadata ``asm_group_id``, ``ip_pool_name`` names the
pool, ``send_at`` holds it until then and ``mail_settings.sandbox_mode`` checks and records it
without sending. Templates stored at SendGrid (``template_id``) are not: there is no such
store here, and a mail that names one is refused rather than sent without its content.

Answers: ``202`` with an empty body and ``X-Message-Id`` (the Hato id of the first message);
errors ``{"errors": [{"message", "field", "help"}]}`` with 400, 401, 403, 413, 429, 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.ingest.api_models import MessageIn
from services.ingest.http.deps import DoorDep
from services.ingest.http.providers.base import (
    Guard,
    ProviderError,
    bearer,
    idempotent,
    json_error,
    mailbox,
    replayed_error,
    route_class,
    tenant_of,
    validation_error,
)
from services.ingest.idempotency import Answer
from services.ingest.labels import LabelError, as_text, unix_time
from services.ingest.send import Sender

PATH = "/v3/mail/send"
UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"


class ErrorItem(BaseModel):
    message: str
    field: str | None = None
    help: str | None = None


class SendGridErrors(BaseModel):
    """SendGrid's error body."""

    errors: list[ErrorItem]


def render(error: ProviderError) -> Response:
    message = UNAUTHORIZED if error.status == 401 else error.message
    body = {"errors": [{"message": message, "field": error.field, "help": None}]}
    return json_error(error.status, body)


GUARD = Guard("SendGrid", lambda path: path == PATH, bearer, render)


class _Model(BaseModel):
    # SendGrid's clients send fields Hato does not act on (tracking settings, ...): taken.
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class EmailAddress(_Model):
    email: str = Field(max_length=320)
    name: str | None = Field(None, max_length=998)

    def mailbox(self) -> str:
        return mailbox(self.name, self.email)


class Personalization(_Model):
    from_: EmailAddress | None = Field(None, alias="from")  # this message's own sender
    to: list[EmailAddress] = Field(min_length=1, max_length=1000)
    cc: list[EmailAddress] = []
    bcc: list[EmailAddress] = []
    subject: str | None = None
    headers: dict[str, str] = {}
    substitutions: dict[str, str] = {}
    dynamic_template_data: dict[str, Any] | None = None
    custom_args: dict[str, Any] = {}
    send_at: int | None = Field(None, ge=0)


class Content(_Model):
    type: str = Field(min_length=1)
    value: str = Field(min_length=1)


class SgAttachment(_Model):
    content: str = Field(description="The file, base64-encoded.")
    filename: str
    type: str | None = None
    disposition: str | None = Field(None, pattern="^(inline|attachment)$")
    content_id: str | None = None


class Asm(_Model):
    group_id: int
    groups_to_display: list[int] = []


class Sandbox(_Model):
    enable: bool = False


class MailSettings(_Model):
    sandbox_mode: Sandbox | None = None


class SendGridMail(_Model):
    """SendGrid's v3 mail/send request."""

    personalizations: list[Personalization] = Field(min_length=1, max_length=1000)
    from_: EmailAddress = Field(alias="from")
    reply_to: EmailAddress | None = None
    reply_to_list: list[EmailAddress] = []
    subject: str | None = None
    content: list[Content] = []
    attachments: list[SgAttachment] = []
    template_id: str | None = None
    headers: dict[str, str] = {}
    categories: list[str] = Field([], max_length=10)
    custom_args: dict[str, Any] = {}
    send_at: int | None = Field(None, ge=0)
    asm: Asm | None = None
    ip_pool_name: str | None = None
    mail_settings: MailSettings | None = None


def messages(mail: SendGridMail) -> list[MessageIn]:
    """One Hato message per personalization; ProviderError (400, with the field) when one
    cannot be made."""
    if mail.template_id:
        raise ProviderError(
            400,
            "templates stored at SendGrid are not available here: send the content",
            field="template_id",
        )
    text = next((c.value for c in mail.content if c.type == "text/plain"), None)
    html = next((c.value for c in mail.content if c.type == "text/html"), None)
    if text is None and html is None:
        raise ProviderError(
            400, "content with the type text/plain or text/html is required", field="content"
        )
    reply_to = [a.mailbox() for a in mail.reply_to_list] or (
        [mail.reply_to.mailbox()] if mail.reply_to else []
    )
    attachments = [
        {
            "filename": a.filename,
            "content_type": a.type or "application/octet-stream",
            "content": a.content,
            **({"content_id": a.content_id} if a.disposition == "inline" and a.content_id else {}),
        }
        for a in mail.attachments
    ]
    out = []
    for i, p in enumerate(mail.personalizations):
        if p.dynamic_template_data is not None:
            raise ProviderError(
                400,
                "dynamic template data needs a template stored at SendGrid; send the content",
                field=f"personalizations.{i}.dynamic_template_data",
            )
        subject = p.subject if p.subject is not None else mail.subject
        if subject is None:
            raise ProviderError(
                400, "the subject is required", field=f"personalizations.{i}.subject"
            )

        def substituted(value: str | None, p: Personalization = p) -> str | None:
            if value is None:
                return None
            for key, replacement in p.substitutions.items():
                value = value.replace(key, replacement)
            return value

        metadata = {k: as_text(v) for k, v in (mail.custom_args | p.custom_args).items()}
        if mail.asm is not None:
            metadata["asm_group_id"] = str(mail.asm.group_id)
        body = {
            "from": (p.from_ or mail.from_).mailbox(),
            "to": [a.mailbox() for a in p.to],
            "cc": [a.mailbox() for a in p.cc],
            "bcc": [a.mailbox() for a in p.bcc],
            "reply_to": reply_to,
            "subject": substituted(subject),
            "text": substituted(text),
            "html": substituted(html),
            "attachments": attachments,
            "headers": mail.headers | p.headers,
            "tags": mail.categories,
            "metadata": metadata,
            "pool": mail.ip_pool_name,
        }
        try:
            out.append(MessageIn.model_validate({k: v for k, v in body.items() if v is not None}))
        except ValidationError as exc:
            error = validation_error(exc)
            raise ProviderError(400, error.message, field=_field(i, error.field)) from None
    return out


_FIELDS = {"from": "from.email", "tags": "categories", "metadata": "custom_args"}


def _field(i: int, field: str | None) -> str | None:
    """Where in SendGrid's request a Hato field came from."""
    if field is None:
        return None
    head, _, rest = field.partition(".")
    if head in ("to", "cc", "bcc", "subject"):
        return f"personalizations.{i}.{field}"
    return _FIELDS.get(head, head) + (f".{rest}" if rest and head not in _FIELDS else "")


router = APIRouter(tags=["sendgrid"], route_class=route_class(GUARD))


@router.post(
    PATH,
    status_code=202,
    response_class=Response,
    responses={
        202: {
            "description": "Accepted; ``X-Message-Id`` is the id of the first message.",
            "headers": {"X-Message-Id": {"schema": {"type": "string"}}},
        },
        **{
            status: {"model": SendGridErrors, "description": meaning}
            for status, meaning in (
                (400, "The request does not match SendGrid's schema, or is refused."),
                (401, "No Hato API key as a Bearer token, or not a valid one."),
                (403, "A From address or pool the key's tenant may not use."),
                (409, "A request with this Idempotency-Key is in progress."),
                (413, "The request or the message is over the limit."),
                (422, "This Idempotency-Key was used for another request."),
                (429, "The tenant's hourly limit is reached."),
                (503, "Not made durable; try again."),
            )
        },
    },
)
async def mail_send(
    mail: SendGridMail,
    request: Request,
    door: DoorDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> Response:
    """SendGrid's v3 mail send: one message per personalization, sent by Hato's rules."""
    identity = await tenant_of(GUARD, request)
    sender: Sender | None = door.sender
    assert sender is not None  # mounted only with one
    sandbox = bool(
        mail.mail_settings
        and mail.mail_settings.sandbox_mode
        and (mail.mail_settings.sandbox_mode.enable)
    )
    built = messages(mail)

    async def work() -> Answer:
        ids = []
        for message, p in zip(built, mail.personalizations, strict=True):
            accepted = await sender.send(
                identity, message, send_at=_when(p.send_at or mail.send_at), sandbox=sandbox
            )
            ids.append(accepted["id"])
        return Answer(202, {"ids": ids})

    answer = await idempotent(door, request, identity, idempotency_key, work)
    if (error := replayed_error(answer)) is not None:
        raise error
    return Response(status_code=202, headers={"X-Message-Id": answer.body["ids"][0]})


def _when(send_at: int | None) -> datetime | None:
    if not send_at:
        return None
    try:
        return unix_time("send_at", send_at)
    except LabelError as exc:
        raise ProviderError(400, str(exc), field="send_at") from None

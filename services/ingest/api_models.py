"""The JSON a sender posts (HTTP ``/v1/messages`` and the AMQP submit queue): one schema for
both doors. Unknown fields are refused."""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from services.ingest import addresses
from services.ingest.content import LINE_BREAKING, ContentError, one_mailbox
from shared.unsubscribe import LIST_NAME
from shared.webhook_formats import WebhookFormat

# Headers the API builds itself; a custom header may not set them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "DKIM-Signature",
        "Return-Path",
        "Received",
        "Sender",
    )
)
# RFC 5322 2.2: printable ASCII except ':'; at most 76 so that "Name: " leaves room on a line.
_FIELD_NAME = re.compile(r"[!-9;-~]{1,76}")
_METADATA_KEY = re.compile(r"[\w-]{1,64}")  # letters, digits, _ and -: a key the store takes
MAX_RECIPIENTS_PER_MESSAGE = 1000


def _no_line_breaks(value: str) -> str:
    # Not only CR and LF: the email package also breaks lines at VT, FF, FS, GS, RS, NEL and
    # the Unicode line and paragraph separators.
    if LINE_BREAKING.search(value):
        raise ValueError("must not contain a line break or a control character")
    return value


OneLine = Annotated[str, AfterValidator(_no_line_breaks)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")  # no mail may carry one (RFC 5322)
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


_NOT_IN_FILE_NAMES = '<>:"/\\|?*'  # what Windows refuses in a file name


def _file_name(value: str) -> str:
    # A name a receiver can save as it is, on any desktop, and read back as it was: a quote,
    # or angle brackets round the whole, do not survive every reader's unquoting (Python's
    # reads '""' and '<a>' back as no name and 'a'), and a slash makes a path.
    if any(c in value for c in _NOT_IN_FILE_NAMES):
        raise ValueError(f"must not contain any of {_NOT_IN_FILE_NAMES}")
    return value


FileName = Annotated[str, AfterValidator(_no_line_breaks), AfterValidator(_file_name)]


def _mailbox(value: str) -> str:
    """``addr@domain`` or ``Name <addr@domain>``: one mailbox (a list in one string is not a
    list), on one line, with an acceptable address."""
    try:
        address = one_mailbox(value)
    except ContentError as exc:
        raise ValueError(str(exc)) from None
    if addresses.split(address) is None:
        raise ValueError(f"not a usable address: {value!r}")
    return value


Mailbox = Annotated[str, AfterValidator(_mailbox)]
ListName = Annotated[str, Field(pattern=LIST_NAME.pattern)]


def _base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    return value


Base64 = Annotated[str, AfterValidator(_base64)]


def _moment(value: datetime) -> datetime:
    """In UTC (a time without an offset is taken as UTC), and within the years the store and
    date arithmetic can hold: an extreme offset must not overflow later (a 500)."""
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None
    if not 1970 <= utc.year <= 9998:
        raise ValueError("the time must be between the years 1970 and 9998")
    return utc


Moment = Annotated[datetime, AfterValidator(_moment)]


def _checked_metadata(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _METADATA_KEY.fullmatch(key):
            raise ValueError(f"metadata keys are 1-64 letters, digits, _ or -: {key[:70]!r}")
    return value


def address_of(mailbox: str) -> str:
    return email.utils.parseaddr(mailbox)[1]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Attachment(_Strict):
    filename: FileName = Field(min_length=1, max_length=255)
    content_type: OneLine = Field("application/octet-stream", pattern=r"^[\w.+-]+/[\w.+-]+$")
    content: Base64 = Field(description="The file, base64-encoded.")
    content_id: OneLine | None = Field(None, description="Makes it inline, for cid: in HTML.")

    def data(self) -> bytes:
        return base64.b64decode(self.content)


class MessageIn(_Strict):
    """A message to compose and send."""

    from_: Mailbox = Field(alias="from")
    to: list[Mailbox] = []
    cc: list[Mailbox] = []
    bcc: list[Mailbox] = []
    reply_to: list[Mailbox] = []
    subject: OneLine = Field("", max_length=998)
    text: Text | None = None
    html: Text | None = None
    attachments: list[Attachment] = []
    headers: dict[str, OneLine] = {}
    tags: list[OneLine] = Field([], max_length=10)
    metadata: dict[str, OneLine] = Field({}, max_length=20)
    charset: Literal["utf-8", "iso-2022-jp"] = "utf-8"
    pool: str | None = Field(None, description="An IP pool other than the tenant's, if allowed.")
    sandbox: bool = Field(
        False, description="Test mode: checked and recorded (recipients `sandboxed`), not sent."
    )
    send_at: Moment | None = Field(None, description="Hold the message until then.")
    unsubscribe: ListName | bool | None = Field(
        None,
        description="One-click unsubscribe (RFC 8058): the list each recipient can leave with "
        "the List-Unsubscribe link Hato adds and signs; true: the message's first tag (leaving "
        "it stops all mail with that tag); false: none, even if the tenant has a default list; "
        "absent: the tenant's default.",
    )

    @field_validator("headers")
    @classmethod
    def _custom_headers(cls, value: dict[str, str]) -> dict[str, str]:
        seen: set[str] = set()
        for name in value:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a header field name: {name!r}")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"{name} is set by Hato, not by a custom header")
            if name.lower() in seen:  # field names know no case: two would be one field twice
                raise ValueError(f"{name} is given twice (header field names ignore case)")
            seen.add(name.lower())
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _checked_metadata(value)

    @model_validator(mode="after")
    def _complete(self) -> MessageIn:
        n = len(self.to) + len(self.cc) + len(self.bcc)
        if n == 0:
            raise ValueError("at least one recipient (to, cc or bcc) is required")
        if n > MAX_RECIPIENTS_PER_MESSAGE:
            raise ValueError(f"at most {MAX_RECIPIENTS_PER_MESSAGE} recipients")
        if self.text is None and self.html is None:
            raise ValueError("text or html is required")
        return self

    def unwritable(self, find: Callable[[str], str | None]) -> tuple[str, str] | None:
        """The first (field, character) of the texts that go into the message that ``find``
        says a charset cannot write (ISO-2022-JP has no emoji, accented Latin letters, ...;
        what it does with ①, 髙 or 﨑 is the tenant's choice, services/ingest/send.py)."""
        texts = {
            "subject": [self.subject],
            "text": [self.text or ""],
            "html": [self.html or ""],
            "from": [self.from_],
            "to": self.to,
            "cc": self.cc,
            "reply_to": self.reply_to,
            "headers": list(self.headers.values()),
            "attachments": [a.filename for a in self.attachments],
        }
        for field, values in texts.items():
            for value in values:
                bad = find(value)
                if bad is not None:
                    return field, bad
        return None

    def envelope_recipients(self) -> tuple[str, ...]:
        seen: dict[str, str] = {}
        for mailbox in (*self.to, *self.cc, *self.bcc):
            addr = address_of(mailbox)
            seen.setdefault(addr.lower(), addr)
        return tuple(seen.values())


class RawMessageIn(_Strict):
    """An RFC 5322 message as it is, with its envelope."""

    from_: Mailbox | Literal[""] = Field(
        "", alias="from", description="Envelope sender; default: the From header's address."
    )
    to: list[Mailbox] = Field(min_length=1, max_length=MAX_RECIPIENTS_PER_MESSAGE)
    message: Base64 = Field(description="The message, base64-encoded.")
    tags: list[OneLine] = Field([], max_length=10)
    metadata: dict[str, OneLine] = Field({}, max_length=20)
    pool: str | None = Field(None, description="An IP pool other than the tenant's, if allowed.")
    sandbox: bool = Field(
        False, description="Test mode: checked and recorded (recipients `sandboxed`), not sent."
    )
    unsubscribe: ListName | bool | None = Field(
        None,
        description="One-click unsubscribe (RFC 8058): the list each recipient can leave with "
        "the List-Unsubscribe link Hato adds and signs; true: the message's first tag (leaving "
        "it stops all mail with that tag); false: none, even if the tenant has a default list; "
        "absent: the tenant's default.",
    )

    @field_validator("metadata")
    @classmethod
    def _metadata_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return _checked_metadata(value)

    def data(self) -> bytes:
        return base64.b64decode(self.message)


class BatchIn(_Strict):
    messages: list[MessageIn] = Field(min_length=1, max_length=100)


class RecipientOut(BaseModel):
    id: str
    address: str
    status: str


class AcceptedOut(BaseModel):
    id: str
    recipients: list[RecipientOut]


class SuppressionIn(_Strict):
    address: Mailbox
    reason: OneLine = Field("manual", max_length=200)


class WebhookIn(_Strict):
    url: str = Field(
        pattern=r"^https?://[^\s]+$",
        max_length=2000,
        description="Credentials in it (https://user:pass@host/...) are sent as Basic auth.",
    )
    events: list[str] = Field([], description="Event types to send; empty: all of them.")
    format: WebhookFormat = Field(
        WebhookFormat.HATO,
        description="The POSTs' shape and signature: Hato's own, or SendGrid's, Postmark's "
        "or Mailgun's event webhook.",
    )

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        from shared.schemas import EventType

        known = {e.value for e in EventType}
        for v in value:
            if v not in known:
                raise ValueError(f"unknown event type {v!r}")
        return value


class ReplayIn(_Strict):
    since: Moment
    until: Moment

"""Sending through the API doors (HTTP and the AMQP submit queue): the rules they share,
from a JSON or raw message to an accepted submission. Refusals carry an HTTP-style status
that each door turns into its own answer."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from services.ingest import content, cp50220
from services.ingest.accept import (
    Accepted,
    Acceptor,
    FrontDoor,
    RateLimited,
    Submission,
    summarize_headers,
)
from services.ingest.api_models import (
    AcceptedOut,
    MessageIn,
    RawMessageIn,
    RecipientOut,
    address_of,
)
from services.ingest.compose import JIS, compose
from services.ingest.labels import LabelError, check_metadata, merged
from services.ingest.labels import extract as extract_labels
from services.ingest.policy import RelayPolicy
from shared import unsubscribe
from shared.directory import Identity
from shared.errors import HatoError, Unavailable
from shared.schemas import EventType


class Refused(HatoError):
    """Raised when a message is not accepted; ``status`` is the HTTP status that says why
    (400, 403, 413, 429, 503)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail

    @property
    def is_temporary(self) -> bool:
        return self.status in (429, 503)


@dataclass(frozen=True, slots=True)
class DoorLimits:
    max_message_size: int
    max_recipients: int
    max_line: int = content.DEFAULT_MAX_LINE  # octets in one line (HATO_INGEST_MAX_LINE_LENGTH)


class Sender:
    """The rules shared by the JSON, raw and batch endpoints."""

    def __init__(
        self, acceptor: Acceptor, policy: RelayPolicy, limits: DoorLimits, *, door: FrontDoor
    ) -> None:
        self.acceptor = acceptor
        self.policy = policy
        self.limits = limits
        self.door = door

    async def send(
        self,
        identity: Identity,
        message: MessageIn,
        *,
        send_at: datetime | None = None,
        sandbox: bool = False,
    ) -> dict[str, Any]:
        """Send ``message``; ``send_at`` holds it until then, ``sandbox`` checks and records it
        without sending."""
        sender = address_of(message.from_)
        self._check_sender(identity, sender)
        charset, notices = charset_for(identity, message)
        raw = compose(message, message_id_domain=sender.rpartition("@")[2], charset=charset)
        return await self._submit(
            identity,
            sender,
            message.envelope_recipients(),
            _checked(raw, self.limits.max_line),
            tags=message.tags,
            metadata=message.metadata,
            pool=message.pool,
            sandbox=sandbox or message.sandbox,
            send_at=send_at or message.send_at,
            notices=notices,
            unsubscribe=_unsubscribe(message.unsubscribe, message.tags),
        )

    async def send_raw(self, identity: Identity, message: RawMessageIn) -> dict[str, Any]:
        raw = _checked(content.with_crlf(message.data()), self.limits.max_line)
        try:
            raw, labels = extract_labels(raw)
            tags = merged(message.tags, labels.tags)
            metadata = check_metadata(message.metadata | labels.metadata)
        except LabelError as exc:
            raise Refused(400, str(exc)) from None
        headers = summarize_headers(raw)
        if headers.from_address is None or headers.from_domain is None:
            raise Refused(400, "the message has no usable From header")
        try:
            raw = content.complete_header(
                raw, headers.from_domain, refuse=identity.limits.missing_headers == "refuse"
            )
        except content.MissingFields as exc:
            raise Refused(400, str(exc)) from None
        self._check_sender(identity, headers.from_address)
        sender = address_of(message.from_) if message.from_ else headers.from_address
        self._check_sender(identity, sender)
        rcpts = tuple(dict.fromkeys(address_of(m) for m in message.to))
        return await self._submit(
            identity,
            sender,
            rcpts,
            raw,
            tags=list(tags),
            metadata=metadata,
            pool=message.pool,
            sandbox=message.sandbox,
            send_at=labels.send_at,
            unsubscribe=_unsubscribe(message.unsubscribe, message.tags),
        )

    def _check_sender(self, identity: Identity, address: str) -> None:
        if not self.policy.may_send_from(identity, address):
            raise Refused(403, f"{address} is not a verified sending address of this key's tenant")

    async def _submit(
        self,
        identity: Identity,
        sender: str,
        rcpts: tuple[str, ...],
        raw: bytes,
        *,
        tags: list[str],
        metadata: dict[str, str],
        pool: str | None = None,
        sandbox: bool = False,
        send_at: datetime | None = None,
        notices: tuple[tuple[EventType, dict[str, str]], ...] = (),
        unsubscribe: str | None = None,
    ) -> dict[str, Any]:
        if pool is not None and not identity.may_use_pool(pool):
            raise Refused(403, f"this tenant may not send through pool {pool}")
        max_rcpts = identity.limits.max_recipients or self.limits.max_recipients
        if len(rcpts) > max_rcpts:
            raise Refused(400, f"{len(rcpts)} recipients; this tenant may send to {max_rcpts}")
        max_size = min(
            identity.limits.max_message_size or self.limits.max_message_size,
            self.limits.max_message_size,
        )
        if len(raw) > max_size:
            raise Refused(413, f"the message is {len(raw)} bytes; the limit is {max_size}")
        submission = Submission(
            identity=identity,
            mail_from=sender,
            recipients=rcpts,
            raw=raw,
            headers=summarize_headers(raw),
            door=self.door,
            client=identity.credential,
            tags=tuple(tags),
            metadata=dict(metadata),
            pool=pool,
            sandbox=sandbox,
            send_at=send_at,
            notices=notices,
            unsubscribe=unsubscribe,
        )
        try:
            accepted = await self.acceptor.accept(submission)
        except RateLimited as exc:
            raise Refused(429, str(exc)) from None
        except Unavailable:
            raise Refused(503, "the message could not be made durable; try again") from None
        return _accepted(accepted)


class JisExtensions(StrEnum):
    """What a tenant's ISO-2022-JP mail does with characters beyond JIS X 0208 (①, 髙, 﨑)."""

    CP50220 = "cp50220"  # Microsoft's extension, as Japanese mail software writes them
    UTF8 = "utf-8"  # the message goes in UTF-8, with a charset_fallback event
    REFUSE = "refuse"  # 400 naming the character


def _unsubscribe(field: str | bool | None, tags: list[str]) -> str | None:
    """The ``unsubscribe`` field as a Submission takes it: a list, ``tag:<first tag>`` for
    true, "" for false, None when absent."""
    if field is True:
        if not tags:
            raise Refused(400, "unsubscribe: true leaves the message's first tag; it has none")
        try:
            return unsubscribe.list_or_tag(f"{unsubscribe.TAG}{tags[0]}")
        except unsubscribe.BadListName as exc:
            raise Refused(400, str(exc)) from None
    return "" if field is False else (field or None)


def beyond_jis(text: str) -> str | None:
    """The first character plain ISO-2022-JP (JIS X 0208, RFC 1468) cannot write."""
    try:
        cp50220.full_width(text).encode(JIS)
    except UnicodeEncodeError as exc:
        return str(exc.object[exc.start : exc.end])
    return None


def _named(char: str) -> str:
    return f"{char!r} (U+{ord(char):04X} {unicodedata.name(char, 'unnamed')})"


def charset_for(
    identity: Identity, message: MessageIn
) -> tuple[str, tuple[tuple[EventType, dict[str, str]], ...]]:
    """The charset ``message`` is written in, and the events that say it is not the one asked
    for; Refused (400) naming the first character the charset cannot write."""
    if message.charset != JIS:
        return message.charset, ()
    beyond = message.unwritable(beyond_jis)
    if beyond is None:
        return JIS, ()
    field, char = beyond
    choice = JisExtensions(identity.limits.jis_extensions or JisExtensions.CP50220)
    if choice is JisExtensions.REFUSE:
        raise Refused(
            400,
            f"{field} has a character ISO-2022-JP (JIS X 0208) cannot write: {_named(char)}; "
            "this tenant does not send it in an extension or in UTF-8",
        )
    if choice is JisExtensions.UTF8:
        said = {"asked": JIS, "charset": "utf-8", "field": field, "character": char}
        return "utf-8", ((EventType.CHARSET_FALLBACK, said),)
    beyond = message.unwritable(cp50220.unencodable)
    if beyond is not None:
        field, char = beyond
        raise Refused(
            400,
            f"{field} has a character ISO-2022-JP cannot write, even with Microsoft's "
            f"extensions (CP50220): {_named(char)}; send it in utf-8",
        )
    return JIS, ()


def _checked(raw: bytes, max_line: int) -> bytes:
    """``raw`` as it will be stored (long lines repaired), or Refused (400)."""
    try:
        return content.accepted(raw, max_line=max_line)
    except content.ContentError as exc:
        raise Refused(400, str(exc)) from None


def _accepted(accepted: Accepted) -> dict[str, Any]:
    return AcceptedOut(
        id=accepted.message_id,
        recipients=[
            RecipientOut(id=r.id, address=r.address, status=accepted.status_of(r).value)
            for r in accepted.recipients
        ],
    ).model_dump()

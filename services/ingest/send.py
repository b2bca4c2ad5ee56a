"""Sending through the API doors (HTTP and the AMQP submit queue): the rules they share,
from a JSON or raw message to an accepted submission. Refusals carry an HTTP-style status
that each door turns into its own answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.ingest import content
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
from services.ingest.compose import compose
from services.ingest.labels import LabelError, check_metadata, merged
from services.ingest.labels import extract as extract_labels
from services.ingest.policy import RelayPolicy
from shared.directory import Identity
from shared.errors import HatoError, Unavailable


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
        raw = _checked(compose(message, message_id_domain=sender.rpartition("@")[2]))
        return await self._submit(
            identity,
            sender,
            message.envelope_recipients(),
            raw,
            tags=message.tags,
            metadata=message.metadata,
            pool=message.pool,
            sandbox=sandbox or message.sandbox,
            send_at=send_at or message.send_at,
        )

    async def send_raw(self, identity: Identity, message: RawMessageIn) -> dict[str, Any]:
        raw = _checked(content.with_crlf(message.data()))
        try:
            raw, labels = extract_labels(raw)
            tags = merged(message.tags, labels.tags)
            metadata = check_metadata(message.metadata | labels.metadata)
        except LabelError as exc:
            raise Refused(400, str(exc)) from None
        headers = summarize_headers(raw)
        if headers.from_address is None:
            raise Refused(400, "the message has no usable From header")
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
        )
        try:
            accepted = await self.acceptor.accept(submission)
        except RateLimited as exc:
            raise Refused(429, str(exc)) from None
        except Unavailable:
            raise Refused(503, "the message could not be made durable; try again") from None
        return _accepted(accepted)


def _checked(raw: bytes) -> bytes:
    try:
        content.check(raw)
    except content.ContentError as exc:
        raise Refused(400, str(exc)) from None
    return raw


def _accepted(accepted: Accepted) -> dict[str, Any]:
    return AcceptedOut(
        id=accepted.message_id,
        recipients=[
            RecipientOut(id=r.id, address=r.address, status=accepted.status_of(r).value)
            for r in accepted.recipients
        ],
    ).model_dump()

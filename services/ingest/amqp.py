"""The AMQP front door: platform teams publish JSON to the ``submit`` exchange (or queue).

Body (``application/json``), the same message schemas as the HTTP API::

    {"api_key": "hato_...", "message": { ...as POST /v1/messages... }}
    {"api_key": "hato_...", "raw":     { ...as POST /v1/messages/raw... }}

The API key names the tenant (the RabbitMQ user does not). An AMQP ``message_id`` works as an
Idempotency-Key; with ``reply_to`` set, the result (the HTTP 202 body, or a problem document)
is published there with the same ``correlation_id`` — but only into RabbitMQ's direct reply-to
(``amq.rabbitmq.reply-to``) or a queue of the key's tenant's team
(``<prefix>.team.<tenant>.*``, ``shared.teams``): a submission cannot make ingest publish into
Hato's own queues or another tenant's. Any other ``reply_to`` gets no answer, and a warning.
The submission is acked only once the message is durable and its sign job confirmed. What
cannot be accepted goes to the dead-letter queue with the reason, and — when the API key is
valid — a ``failed`` event is published.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from services.ingest.api_models import MessageIn, RawMessageIn
from services.ingest.idempotency import Answer, Work, once
from services.ingest.send import Refused, Sender
from shared import logging as hlog
from shared import metrics
from shared.broker import Broker, Delivery
from shared.directory import Directory, IdempotencyConflict, Identity
from shared.errors import TRANSIENT_ERRORS, CodecError, Permanent, RetryLater, Unavailable
from shared.ids import new_id
from shared.schemas import Event, EventType, describe
from shared.store import Store
from shared.teams import may_reply_to
from shared.timeline import Timeline

log = hlog.get_logger(__name__)


def _refusal(exc: Exception) -> Answer | None:
    if isinstance(exc, Refused) and not exc.is_temporary:
        return Answer(exc.status, {"status": exc.status, "detail": exc.detail})
    return None


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str
    message: MessageIn | None = None
    raw: RawMessageIn | None = None

    @model_validator(mode="after")
    def _one(self) -> SubmitRequest:
        if (self.message is None) == (self.raw is None):
            raise ValueError("give exactly one of 'message' and 'raw'")
        return self


def decode_json(body: bytes) -> tuple[dict[str, Any], bytes]:
    """The submit queue's decoder: a JSON object, else CodecError (dead-lettered)."""
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CodecError("not a JSON object")
    return value, b""


class SubmitHandler:
    def __init__(self, store: Store, broker: Broker, sender: Sender) -> None:
        self.store = store
        self.directory: Directory = store.directory
        self.broker = broker
        self.sender = sender

    async def handle(self, delivery: Delivery) -> None:
        body: dict[str, Any] = delivery.message
        token = body.get("api_key")
        identity = await self.directory.api_key_identity(token) if isinstance(token, str) else None
        if identity is None:
            metrics.refused("amqp", 401)
            await self._answer(delivery, None, 401, {"status": 401, "detail": "invalid API key"})
            raise Permanent("invalid or missing api_key")
        hlog.bind(tenant=identity.tenant)  # this job's lines (consume() clears it for the next)
        try:
            request = SubmitRequest.model_validate(body)
        except ValidationError as exc:
            raise await self._refuse(delivery, identity, 400, describe(exc)) from None

        key = delivery.message_id

        async def work() -> Answer:
            if request.message is not None:
                return Answer(202, await self.sender.send(identity, request.message))
            assert request.raw is not None
            return Answer(202, await self.sender.send_raw(identity, request.raw))

        try:
            answer = await self._once(identity, key, work) if key else await work()
        except Refused as exc:
            if exc.is_temporary:
                metrics.refused("amqp", exc.status)
                raise RetryLater(60 if exc.status == 429 else 5, exc.detail) from None
            raise await self._refuse(delivery, identity, exc.status, exc.detail) from None
        if answer.replayed:
            log.info("duplicate submission; replaying the first result", amqp_id=key)
        await self._answer(delivery, identity.tenant, answer.status, answer.body)

    async def _once(self, identity: Identity, key: str, work: Work) -> Answer:
        """``work``'s answer, once per AMQP message id (``services.ingest.idempotency``): a
        refusal is the submission's answer too, a 429 or 503 is not (the id is released). A
        message id an HTTP request used as its Idempotency-Key does not make the submission
        wait or fail: it is sent without one."""
        try:
            return await once(
                self.store.idempotency, identity.tenant, f"amqp:{key}", "amqp", work, kept=_refusal
            )
        except IdempotencyConflict as conflict:
            if conflict.kind == "pending":
                raise RetryLater(5, "the same message_id is being processed") from None
            return await work()

    async def _refuse(
        self, delivery: Delivery, identity: Identity, status: int, detail: str
    ) -> Permanent:
        """Tell the publisher and record a ``failed`` event; returns the Permanent to raise,
        which dead-letters the submission."""
        metrics.refused("amqp", status)
        failed = Event(
            id=new_id(),
            type=EventType.FAILED,
            message_id=new_id(),
            tenant=identity.tenant,
            detail={
                "door": "amqp",
                "status": status,
                "reason": detail[:1000],
                "amqp_message_id": delivery.message_id,
            },
        )
        try:
            await Timeline(self.store.events, self.broker).record([failed])
        except TRANSIENT_ERRORS:
            log.warning("failed event not recorded")
        await self._answer(delivery, identity.tenant, status, {"status": status, "detail": detail})
        return Permanent(f"{status}: {detail}")

    async def _answer(self, delivery: Delivery, tenant: str | None, status: int, body: Any) -> None:
        """Publish the result to the submission's ``reply_to``, if it is the publisher's own."""
        if not delivery.reply_to:
            return
        if not may_reply_to(delivery.reply_to, prefix=self.broker.settings.prefix, tenant=tenant):
            log.warning(
                "reply_to is neither direct reply-to nor a queue of the tenant's team; no answer",
                reply_to=delivery.reply_to[:200],
                status=status,
            )
            return
        try:
            await self.broker.reply(
                delivery.reply_to,
                json.dumps({"status": status, **body}, default=str).encode(),
                correlation_id=delivery.correlation_id,
            )
        except Unavailable:
            log.warning("could not answer on reply_to", reply_to=delivery.reply_to)

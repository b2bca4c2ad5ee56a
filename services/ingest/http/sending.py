"""Sending: a JSON message, a raw RFC 5322 message, or a batch of JSON messages, each accepted
once durable (202). An ``Idempotency-Key`` makes a retry safe: the same key and body get the
first answer again (``Idempotent-Replayed: true``), whatever it was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from services.ingest.api_models import AcceptedOut, BatchIn, MessageIn, RawMessageIn
from services.ingest.http.deps import Door, DoorDep, Tenant
from services.ingest.http.problems import PROBLEM, RETRY_AFTER, Problem, ProblemDocument, problems
from services.ingest.idempotency import Answer, Work, once
from services.ingest.send import Refused, Sender
from shared import logging as hlog
from shared.directory import IdempotencyConflict, Identity

log = hlog.get_logger(__name__)

router = APIRouter(tags=["send"])

BATCH_ITEM_FAILED = "this message could not be handled (the others were); send it again"
SENDING_ROUTES = frozenset({"/v1/messages", "/v1/messages/raw", "/v1/messages/batch"})

IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Makes a retry safe: the same key and body get the first answer again.",
    ),
]
_IDEMPOTENCY = (
    (409, "A request with this Idempotency-Key is still in progress."),
    (422, "This Idempotency-Key was used for another request."),
)
_SENDING = problems(
    400,
    401,
    403,
    429,
    (
        400,
        "The request does not match the schema (``errors`` says where), or the message is "
        "malformed or has too many recipients.",
    ),
    (
        403,
        "Not a tenant's key, a From address the tenant may not send from, or a pool it may "
        "not use.",
    ),
    (413, "The body, or the message, is over the limit."),
    (503, "The message could not be made durable; try again after Retry-After."),
    *_IDEMPOTENCY,
)


class BatchAccepted(AcceptedOut):
    index: int
    status: Literal[202]


class BatchRefused(ProblemDocument):
    model_config = ConfigDict(title="BatchRefused")

    index: int


class BatchOut(BaseModel):
    results: list[BatchAccepted | BatchRefused]


def sender(door: DoorDep) -> Sender:
    assert door.sender is not None  # the router is mounted only with one
    return door.sender


SenderDep = Annotated[Sender, Depends(sender)]


@router.post("/v1/messages", status_code=202, response_model=AcceptedOut, responses=_SENDING)
async def send(
    message: MessageIn,
    request: Request,
    identity: Tenant,
    door: DoorDep,
    sending: SenderDep,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    """Compose and send a message. 202 once it is durable; each recipient has an id."""

    async def work() -> Answer:
        return Answer(202, await refusals_as_problems(sending.send(identity, message)))

    return await idempotent(door, request, identity, idempotency_key, work)


@router.post("/v1/messages/raw", status_code=202, response_model=AcceptedOut, responses=_SENDING)
async def send_raw(
    message: RawMessageIn,
    request: Request,
    identity: Tenant,
    door: DoorDep,
    sending: SenderDep,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    """Send an RFC 5322 message as it is, to the envelope recipients given."""

    async def work() -> Answer:
        return Answer(202, await refusals_as_problems(sending.send_raw(identity, message)))

    return await idempotent(door, request, identity, idempotency_key, work)


@router.post(
    "/v1/messages/batch",
    response_model=BatchOut,
    responses=problems(400, 401, 413, (403, "Not a tenant's key."), *_IDEMPOTENCY),
)
async def send_batch(
    batch: BatchIn,
    request: Request,
    identity: Tenant,
    door: DoorDep,
    sending: SenderDep,
    idempotency_key: IdemKey = None,
) -> JSONResponse:
    """Many messages in one request; ``results[i]`` is message i's 202 or problem."""

    async def work() -> Answer:
        results = []
        for i, message in enumerate(batch.messages):
            try:
                accepted = await refusals_as_problems(sending.send(identity, message))
                results.append({"index": i, "status": 202, **accepted})
            except Problem as exc:
                results.append({"index": i, **exc.document()})
            except Exception:
                # Its own result, not a 500 for the whole batch: the messages
                # accepted before it must not be sent again by a retry.
                log.exception("a batch message failed", index=i)
                results.append({"index": i, **Problem(500, BATCH_ITEM_FAILED).document()})
        return Answer(200, {"results": results})

    return await idempotent(door, request, identity, idempotency_key, work)


async def idempotent(
    door: Door, request: Request, identity: Identity, key: str | None, work: Work
) -> JSONResponse:
    """``work``'s answer, once per Idempotency-Key (``services.ingest.idempotency``): a
    refusal is the request's answer too, a 429 or 503 is not (the key is released)."""
    if not key:
        answer = await work()
        return JSONResponse(answer.body, status_code=answer.status)
    request_hash = hashlib.sha256(await request.body()).hexdigest()
    try:
        answer = await once(
            door.store.idempotency, identity.tenant, key, request_hash, work, kept=_refusal
        )
    except IdempotencyConflict as conflict:
        if conflict.kind == "mismatch":
            raise Problem(422, "this Idempotency-Key was used for another request") from None
        raise Problem(409, "a request with this Idempotency-Key is in progress") from None
    if not answer.replayed:
        return JSONResponse(answer.body, status_code=answer.status)
    return JSONResponse(  # a refusal replayed is the problem document it was
        answer.body,
        status_code=answer.status,
        headers={"Idempotent-Replayed": "true"},
        media_type=PROBLEM if answer.status >= 400 else None,
    )


def _refusal(exc: Exception) -> Answer | None:
    if isinstance(exc, Problem) and exc.status_code not in RETRY_AFTER:
        return Answer(exc.status_code, exc.document())
    return None


async def refusals_as_problems(sending: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await sending
    except Refused as exc:
        raise Problem(exc.status, exc.detail) from None

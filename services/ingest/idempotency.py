"""Idempotency of the sending doors: the first request under a key runs, a repeat gets the
first one's answer again, and a key that is in use (``pending``) or was used for another
request (``mismatch``) is an ``IdempotencyConflict``. One flow for the HTTP door (the
``Idempotency-Key`` header) and the AMQP door (the message's ``message_id``); each door says
which of its failures is the request's answer to keep and how it answers a conflict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Answer:
    """A door's answer to a request: an HTTP-style status and a JSON body; ``replayed`` when
    it is the stored answer to the first request under the key."""

    status: int
    body: Any
    replayed: bool = False


class Keys(Protocol):
    """Where answers are kept by (tenant, key): ``shared.directory.Idempotency``."""

    async def begin(self, tenant: str, key: str, request_hash: str) -> dict[str, Any] | None: ...

    async def finish(self, tenant: str, key: str, status: int, body: Any) -> None: ...

    async def abandon(self, tenant: str, key: str) -> None: ...


Work = Callable[[], Awaitable[Answer]]
Kept = Callable[[Exception], Answer | None]


async def once(
    keys: Keys, tenant: str, key: str, fingerprint: str, work: Work, *, kept: Kept
) -> Answer:
    """Run ``work`` for the first request under ``key`` and keep its answer; a repeat with the
    same ``fingerprint`` gets that answer, ``replayed``. When ``work`` raises, ``kept`` says
    whether the failure is the request's answer (a refusal: kept, so a repeat gets it too)
    or one a retry may overcome (None: the key is released); the exception goes on either
    way. Raises IdempotencyConflict when the key is in use or was used with another
    fingerprint."""
    stored = await keys.begin(tenant, key, fingerprint)
    if stored is not None:
        return Answer(stored["status"], stored["body"], replayed=True)
    try:
        answer = await work()
    except BaseException as exc:
        final = kept(exc) if isinstance(exc, Exception) else None
        if final is None:
            await keys.abandon(tenant, key)
        else:
            await keys.finish(tenant, key, final.status, final.body)
        raise
    await keys.finish(tenant, key, answer.status, answer.body)
    return answer

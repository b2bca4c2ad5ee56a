"""What the SendGrid, Postmark and Mailgun compatible routes share: how each provider's clients
send the API key, how each says no, and the route class that makes every refusal (a schema
mismatch, a bad key, a refused message, a conflict) the provider's own error body instead of
Hato's problem document.

The API key is a Hato API key, checked exactly as for ``/v1`` (``deps.KeyCache``): only the
place it travels in changes. The Gate (``gate.py``) asks each provider's ``Guard`` for the key
before a body is read, and the routes ask it again (``tenant_of``).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from services.ingest.http.deps import Door
from services.ingest.http.problems import RETRY_AFTER, Problem
from services.ingest.idempotency import Answer, Work, once
from services.ingest.send import Refused
from shared import logging as hlog
from shared.directory import IdempotencyConflict, Identity

log = hlog.get_logger(__name__)


class ProviderError(Exception):
    """Raised by a provider route to answer with that provider's error: ``status`` and
    ``message``, and for SendGrid the ``field`` it is about, for Postmark its ErrorCode."""

    def __init__(self, status: int, message: str, *, field: str | None = None, code: int = 0):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code


@dataclass(frozen=True, slots=True)
class Guard:
    """A provider's way of sending the key and of saying no.

    ``matches(path)``: the paths that are this provider's; ``token(headers)``: the API key
    from the request's headers (lower-case names), "" when there is none; ``render(error)``:
    the error as that provider's clients expect it."""

    name: str
    matches: Callable[[str], bool]
    token: Callable[[dict[str, str]], str]
    render: Callable[[ProviderError], Response]

    def refusal(self, status: int, detail: str) -> Response:
        return self.render(ProviderError(status, detail))


def bearer(headers: dict[str, str]) -> str:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def basic_password(headers: dict[str, str], *, user: str | None = None) -> str:
    """The password of ``Authorization: Basic`` (its user must be ``user`` when given)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        name, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):
        return ""
    if not sep or (user is not None and name != user):
        return ""
    return password


async def tenant_of(guard: Guard, request: Request) -> Identity:
    """The tenant whose Hato API key the request carries the provider's way; 401 otherwise."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    token = guard.token(headers)
    if not token:
        raise ProviderError(401, "an API key is required")
    door: Door = request.app.state.door
    identity = await door.keys.identity(token)
    if identity is None:
        raise ProviderError(401, "the API key is not valid")
    hlog.bind(tenant=identity.tenant)
    return identity


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts)


def validation_error(exc: ValidationError | RequestValidationError) -> ProviderError:
    """The first schema mismatch, as the provider's 400 (its field and what is wrong)."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = _location(tuple(first.get("loc", ())))
    message = str(first.get("msg", "invalid"))
    return ProviderError(400, f"{field}: {message}" if field else message, field=field or None)


def route_class(guard: Guard) -> type[APIRoute]:
    """An APIRoute whose refusals are ``guard``'s provider's error bodies."""

    class ProviderRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
            handler = super().get_route_handler()

            async def run(request: Request) -> Response:
                try:
                    return await handler(request)
                except ProviderError as exc:
                    return guard.render(exc)
                except RequestValidationError as exc:
                    return guard.render(validation_error(exc))
                except Refused as exc:
                    return guard.render(ProviderError(exc.status, exc.detail))
                except (Problem, HTTPException) as exc:
                    return guard.render(ProviderError(exc.status_code, str(exc.detail)))

            return run

    ProviderRoute.__name__ = f"{guard.name}Route"
    return ProviderRoute


async def idempotent(
    door: Door, request: Request, identity: Identity, key: str | None, work: Work
) -> Answer:
    """``work``'s answer, once per ``Idempotency-Key`` when the client sends one (as for
    ``/v1``): a refusal is kept as the request's answer, a 429 or 503 is not."""
    if not key:
        return await work()
    fingerprint = hashlib.sha256(request.url.path.encode() + b"\n" + await request.body())
    try:
        return await once(
            door.store.idempotency,
            identity.tenant,
            key,
            fingerprint.hexdigest(),
            work,
            kept=_kept,
        )
    except IdempotencyConflict as conflict:
        if conflict.kind == "mismatch":
            raise ProviderError(422, "this Idempotency-Key was used for another request") from None
        raise ProviderError(409, "a request with this Idempotency-Key is in progress") from None


def _kept(exc: Exception) -> Answer | None:
    if isinstance(exc, ProviderError) and exc.status not in RETRY_AFTER:
        return Answer(exc.status, {"error": [exc.status, exc.message, exc.field, exc.code]})
    return None


def replayed_error(answer: Answer) -> ProviderError | None:
    """The refusal an Idempotency-Key kept, raised again as it was."""
    if isinstance(answer.body, dict) and "error" in answer.body:
        status, message, field, code = answer.body["error"]
        return ProviderError(status, message, field=field, code=code)
    return None


class AsciiJSON(JSONResponse):
    """JSON in ASCII: a text echoed from the request (a name, a bad value) may hold a lone
    surrogate, which UTF-8 cannot write; escaped, it is still the text it was."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def json_error(status: int, body: Any, *, retry: bool = True) -> JSONResponse:
    """A provider's JSON error, with Retry-After on a 429 or 503 (Hato's own promise)."""
    headers = {"Retry-After": RETRY_AFTER[status]} if retry and status in RETRY_AFTER else None
    return AsciiJSON(body, status_code=status, headers=headers)


def mailbox(name: str | None, address: str) -> str:
    """``Name <address>`` as a header writes it; ProviderError (400) when it cannot be."""
    try:
        return email.utils.formataddr((name or "", address))
    except (UnicodeError, ValueError):
        raise ProviderError(400, f"not a usable name or address: {address[:70]!r}") from None


def mailboxes(values: list[str]) -> list[str]:
    """The mailboxes of address-list texts (``a@x, B <b@y>``), each ``Name <address>``."""
    try:
        pairs = email.utils.getaddresses(values)
    except (UnicodeError, ValueError):
        raise ProviderError(400, "not a usable address list") from None
    return [mailbox(name, address) for name, address in pairs if address]

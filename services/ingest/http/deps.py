"""What the HTTP door's routes depend on: the door's parts (``Door``, set by ``create_app``) and
who is calling — a tenant by its API key, or the operator by the operator token.

The routes take them as FastAPI dependencies (``Annotated[..., Depends(...)]``), typed, so a
router module needs nothing from the function that builds the app.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.ingest.http.problems import Problem
from services.ingest.send import Sender
from shared import logging as hlog
from shared.admin import Commands
from shared.directory import Identity
from shared.domain_health import DomainHealth
from shared.egress import Egress
from shared.schemas import ChangeKind
from shared.secrets import SecretBox
from shared.store import Store
from shared.timeline import Timeline
from shared.unsubscribe import Unsubscribe

CACHED_KEYS = 10_000  # API keys the door remembers at most

Changed = Callable[[ChangeKind, str], Awaitable[None]]
"""Told after a tenant's change that other services apply (a webhook added or removed)."""


class KeyCache:
    """API key → identity, remembered for ``ttl`` seconds (a revoked key stops working
    within that time)."""

    def __init__(self, store: Store, ttl: float = 30.0) -> None:
        self.store = store
        self.ttl = ttl
        # Keyed by the token's hash (the token itself is not kept); bounded, least recently
        # used first out.
        self._cache: TTLCache[str, Identity | None] = TTLCache(CACHED_KEYS, ttl)

    async def identity(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        if key in self._cache:
            return self._cache[key]
        identity = self._cache[key] = await self.store.directory.api_key_identity(token)
        return identity

    def clear(self) -> None:
        """Forget every key (one was revoked or its tenant changed)."""
        self._cache.clear()


@dataclass(frozen=True, slots=True)
class Door:
    """The parts the routes work with. ``sender`` is None when the app does not send (the
    sending routes are then not mounted); ``box`` (the master key) None: no webhooks;
    ``health`` None: no domain checks."""

    store: Store
    keys: KeyCache
    operator_digest: bytes | None
    egress: Egress
    sender: Sender | None = None
    box: SecretBox | None = None
    changed: Changed | None = None
    health: DomainHealth | None = None
    unsubscribe: Unsubscribe | None = None  # None: no unsubscribe link is genuine
    timeline: Timeline | None = None  # where an unsubscribe's event is written and published

    def is_operator(self, token: str) -> bool:
        return self.operator_digest is not None and hmac.compare_digest(
            hashlib.sha256(token.encode()).digest(), self.operator_digest
        )

    async def knows(self, token: str) -> bool:
        """The operator token or a tenant's valid API key (what the Gate lets in)."""
        return self.is_operator(token) or await self.keys.identity(token) is not None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a tenant (by API key) or the operator."""

    identity: Identity | None = None
    operator: bool = False


def door(request: Request) -> Door:
    door: Door = request.app.state.door
    return door


_bearer = HTTPBearer(auto_error=False)


async def caller(
    d: Annotated[Door, Depends(door)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    token = credentials.credentials if credentials else ""
    if not token:
        raise Problem(401, "an API key (or the operator token) is required")
    if d.is_operator(token):
        return Caller(operator=True)
    identity = await d.keys.identity(token)
    if identity is None:
        raise Problem(401, "the API key is not valid")
    hlog.bind(tenant=identity.tenant)  # this request's task only
    return Caller(identity=identity)


async def tenant(c: Annotated[Caller, Depends(caller)]) -> Identity:
    if c.identity is None:
        raise Problem(403, "sending needs a tenant's API key")
    return c.identity


async def operator(c: Annotated[Caller, Depends(caller)]) -> None:
    if not c.operator:
        raise Problem(403, "this needs the operator token")


DoorDep = Annotated[Door, Depends(door)]
CallerDep = Annotated[Caller, Depends(caller)]
Tenant = Annotated[Identity, Depends(tenant)]
"""The calling tenant; the operator token is 403 here."""


def commands(request: Request) -> Commands:
    """The admin commands of ``shared.admin`` (the admin router's, set by ``create_app``):
    the tenant routes that do what an operator can do for them use the same ones."""
    found: Commands = request.app.state.admin.commands
    return found


CommandsDep = Annotated[Commands, Depends(commands)]

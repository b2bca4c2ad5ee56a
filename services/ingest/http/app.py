"""The HTTP door's app: the middleware every request passes (metrics, empty query parameters
dropped, the Gate), the problem handlers, and the routers of the resources.

Tenants authenticate with an API key (``Authorization: Bearer hato_...``) and see only their
own messages (another tenant's id is 404). The operator token reads any message and is the
only key of the admin API. Errors are RFC 9457 problem documents (``problems.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from services.ingest import console as web_console
from services.ingest.accept import Acceptor, FrontDoor
from services.ingest.http import admin as admin_routes
from services.ingest.http import domains, messages, providers, sending, suppressions, webhooks
from services.ingest.http import unsubscribe as unsubscribe_routes
from services.ingest.http.admin import Admin
from services.ingest.http.deps import Changed, Door, KeyCache
from services.ingest.http.gate import Gate
from services.ingest.http.problems import document_problems, install
from services.ingest.http.sending import SENDING_ROUTES
from services.ingest.policy import RelayPolicy
from services.ingest.send import DoorLimits, Sender
from shared import metrics
from shared.domain_health import DomainHealth
from shared.egress import Egress
from shared.secrets import SecretBox
from shared.store import Store
from shared.unsubscribe import Unsubscribe

MIB = 1024 * 1024


def body_limits(max_message_size: int) -> Callable[[str, str], int]:
    """The largest body each route takes: a message's (in base64, in JSON) for the sending
    routes (Hato's and the providers'), 1 MiB for the rest."""
    sending = max_message_size * 4 // 3 + MIB

    def limit(method: str, path: str) -> int:
        if method == "POST" and (
            path.rstrip("/") in SENDING_ROUTES or any(g.matches(path) for g in providers.GUARDS)
        ):
            return sending
        return MIB

    return limit


class DropEmptyQueryParameters:
    """``?recipient=&status=`` means "not given", as HTML forms and copied examples send it:
    empty query parameters are dropped before routing, so they never fail validation."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            kept = [(k, v) for k, v in pairs if v != ""]
            if len(kept) != len(pairs):
                scope = dict(scope, query_string=urlencode(kept).encode("latin-1"))
        await self.app(scope, receive, send)


def create_app(
    store: Store,
    *,
    operator_token: str,
    acceptor: Acceptor | None = None,
    policy: RelayPolicy | None = None,
    limits: DoorLimits | None = None,
    admin: Admin | None = None,
    box: SecretBox | None = None,
    changed: Changed | None = None,
    egress: Egress | None = None,
    health: DomainHealth | None = None,
    console: bool = False,
    console_secure_cookies: bool = False,
    console_grafana_url: str = "",
    unsubscribe: Unsubscribe | None = None,
) -> FastAPI:
    """The door over ``store``. It sends with ``acceptor``, ``policy`` and ``limits`` (the
    sending routes are there only with all three) and mounts the admin API with ``admin``;
    webhooks need ``box``, and ``changed`` is told of their changes; domain checks need
    ``health``. The one-click unsubscribe links are checked with ``unsubscribe`` (without it
    none is genuine). With ``console`` (and ``admin``, whose commands it runs) it serves the
    web console at /console, left out of the OpenAPI document."""
    app = FastAPI(
        title="Hato",
        version="0.1.0",
        docs_url="/docs",
        redoc_url=None,
        description="Send mail through Hato and follow every recipient's fate.",
        # FastAPI's own OpenTelemetry: each request a server span (`POST /v1/messages`) that
        # continues the caller's `traceparent`. Without its spans per dependency and
        # endpoint: the accept span under the request says what the work was, and each span
        # costs every mail.
        telemetry={"operation_spans": False},
    )
    sender = None
    if acceptor is not None and policy is not None and limits is not None:
        sender = Sender(acceptor, policy, limits, door=FrontDoor.HTTP)
    door = Door(
        store=store,
        keys=KeyCache(store),
        operator_digest=hashlib.sha256(operator_token.encode()).digest()
        if operator_token
        else None,
        egress=egress or Egress(),
        sender=sender,
        box=box,
        changed=changed,
        health=health,
        unsubscribe=unsubscribe,
        timeline=getattr(acceptor, "timeline", None),
    )
    app.state.door = door
    app.state.api_keys = door.keys  # cleared when a key or tenant changes
    app.state.admin = admin

    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(DropEmptyQueryParameters)
    largest = (limits or DoorLimits(25 * MIB, 100)).max_message_size
    app.add_middleware(
        Gate,
        known=door.knows,
        limit=body_limits(largest),
        guards=providers.GUARDS if sender is not None else (),
    )
    install(app)

    app.include_router(messages.router)
    app.include_router(suppressions.router)
    app.include_router(webhooks.router)
    app.include_router(domains.router)
    app.include_router(unsubscribe_routes.router)
    if sender is not None:
        app.include_router(sending.router)
        for router in providers.ROUTERS:
            app.include_router(router)
    if admin is not None:
        app.include_router(admin_routes.router)
        if console:
            web_console.mount(
                app, store, secure_cookies=console_secure_cookies, grafana_url=console_grafana_url
            )
    app.openapi = lambda: app.openapi_schema or _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    app.openapi_schema = document_problems(FastAPI.openapi(app))
    return app.openapi_schema

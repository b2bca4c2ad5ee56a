"""The HTTP door (FastAPI): send JSON or raw messages, read their state; the admin API is
mounted from ``admin.py``.

Tenants authenticate with an API key (``Authorization: Bearer hato_...``) and see only their
own messages (another tenant's id is 404). The operator token reads any message. Errors are
RFC 9457 problem documents (``application/problem+json``).

(No ``from __future__ import annotations`` here: FastAPI reads the route signatures, whose
dependencies are local to ``create_app``.)
"""

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from services.ingest.accept import Acceptor
from services.ingest.api_models import (
    AcceptedOut,
    BatchIn,
    MessageIn,
    Moment,
    RawMessageIn,
    ReplayIn,
    SuppressionIn,
    WebhookIn,
    address_of,
)
from services.ingest.gate import Gate
from services.ingest.policy import RelayPolicy
from services.ingest.send import DoorLimits, Refused, Sender
from shared import logging as hlog
from shared import metrics
from shared.directory import IdempotencyConflict, Identity
from shared.egress import Egress, Forbidden
from shared.schemas import ChangeKind, RecipientStatus
from shared.secrets import SecretBox
from shared.store import Store
from shared.views import message_view, with_status

log = hlog.get_logger(__name__)

PROBLEM = "application/problem+json"
_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(status: int, title: str = "", detail: str = "", **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in (429, 503):
        headers["Retry-After"] = "60" if status == 429 else "5"
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Problem(HTTPException):
    """Raised by a route to answer with a problem document."""

    def __init__(self, status: int, detail: str = "", **extra: Any) -> None:
        super().__init__(status, detail)
        self.extra = extra

    def document(self) -> dict[str, Any]:
        return {
            "type": "about:blank",
            "title": _TITLES.get(self.status_code, "Error"),
            "status": self.status_code,
            "detail": self.detail,
            **self.extra,
        }


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a tenant (by API key) or the operator."""

    identity: Identity | None = None
    operator: bool = False


class KeyCache:
    """API key → identity, remembered for ``ttl`` seconds (a revoked key stops working
    within that time)."""

    def __init__(self, store: Store, ttl: float = 30.0) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Identity | None]] = {}

    async def identity(self, token: str) -> Identity | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        identity = await self.store.directory.api_key_identity(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + self.ttl, identity)
        return identity

    def clear(self) -> None:
        """Forget every key (one was revoked or its tenant changed)."""
        self._cache.clear()


def body_limits(max_message_size: int) -> Callable[[str, str], int]:
    """The largest body each route takes: a message's (in base64, in JSON) for the sending
    routes, 1 MiB for the rest."""
    sending = max_message_size * 4 // 3 + 1024 * 1024

    def limit(method: str, path: str) -> int:
        if method == "POST" and path.rstrip("/") in SENDING_ROUTES:
            return sending
        return 1024 * 1024

    return limit


BATCH_ITEM_FAILED = "this message could not be handled (the others were); send it again"
MAX_REPLAY = 100_000  # events one replay call queues; the caller goes on from next_since
SENDING_ROUTES = frozenset({"/v1/messages", "/v1/messages/raw", "/v1/messages/batch"})


class DropEmptyQueryParameters:
    """``?recipient=&status=`` means "not given", as HTML forms and copied examples send it:
    empty query parameters are dropped before routing, so they never fail validation."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
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
    admin: Any = None,
    box: SecretBox | None = None,
    changed: Callable[[ChangeKind, str], Awaitable[None]] | None = None,
    egress: Egress | None = None,
) -> FastAPI:
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
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(DropEmptyQueryParameters)
    operator_digest = hashlib.sha256(operator_token.encode()).digest() if operator_token else None
    keys = KeyCache(store)
    app.state.api_keys = keys

    def is_operator(token: str) -> bool:
        return operator_digest is not None and hmac.compare_digest(
            hashlib.sha256(token.encode()).digest(), operator_digest
        )

    async def known(token: str) -> bool:
        return is_operator(token) or await keys.identity(token) is not None

    largest = (limits or DoorLimits(25 * 1024 * 1024, 100)).max_message_size
    app.add_middleware(Gate, known=known, limit=body_limits(largest))
    bearer = HTTPBearer(auto_error=False)

    @app.exception_handler(HTTPException)
    async def http_problem(_: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc, Problem):
            doc = exc.document()
            return problem(exc.status_code, doc["title"], exc.detail, **exc.extra)
        detail = exc.detail if isinstance(exc.detail, str) else ""
        return problem(
            exc.status_code, detail=detail if detail != _TITLES.get(exc.status_code) else ""
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()[:20]
        ]
        return problem(400, detail="the request does not match the schema", errors=errors)

    async def caller(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        token = credentials.credentials if credentials else ""
        if not token:
            raise Problem(401, "an API key (or the operator token) is required")
        if is_operator(token):
            return Caller(operator=True)
        identity = await keys.identity(token)
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

    app.state.operator_dependency = operator

    @app.get("/v1/messages/{message_id}", tags=["messages"])
    async def get_message(message_id: str, c: Annotated[Caller, Depends(caller)]) -> dict:
        """A message with its status (which follows its recipients': ``delivered`` once all
        are, see the README), every recipient's status with the remote reply, its events,
        and what it waits for when it waits."""
        view = await message_view(store, message_id)
        if view is None or (not c.operator and view["tenant"] != c.identity.tenant):
            raise Problem(404, f"no message {message_id}")
        return view

    @app.get("/v1/messages", tags=["messages"])
    async def list_messages(
        identity: Annotated[Identity, Depends(tenant)],
        recipient: str | None = None,
        status: Annotated[
            RecipientStatus | None, Query(description="Messages with a recipient in this status.")
        ] = None,
        tag: str | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        before: str | None = Query(None, description="Page: the `next` of the previous page."),
        limit: int = Query(50, ge=1, le=500),
    ) -> dict:
        """The tenant's messages, newest first, filtered by recipient, recipient status, tag
        and time; ``next`` continues the list."""
        docs = await store.list_messages(
            identity.tenant,
            recipient=recipient,
            status=status.value if status else None,
            tag=tag,
            since=since,
            until=until,
            before=before,
            limit=limit,
        )
        return {
            "messages": await with_status(store, docs),
            "next": docs[-1]["_id"] if len(docs) == limit else None,
        }

    @app.get("/v1/suppressions", tags=["suppressions"])
    async def list_suppressions(
        identity: Annotated[Identity, Depends(tenant)],
        after: str = "",
        limit: int = Query(100, ge=1, le=1000),
    ) -> dict:
        """The tenant's suppressed addresses, by address; ``next`` continues the list."""
        docs = await store.directory.suppressions(identity.tenant, after=after, limit=limit)
        items = [
            {
                "address": d["address"],
                "reason": d.get("reason"),
                "source": d.get("source"),
                "created_at": d.get("created_at"),
                "expires_at": d.get("expires_at"),
            }
            for d in docs
        ]
        return {
            "suppressions": items,
            "next": items[-1]["address"] if len(items) == limit else None,
        }

    @app.post("/v1/suppressions", status_code=201, tags=["suppressions"])
    async def add_suppression(
        body: SuppressionIn, identity: Annotated[Identity, Depends(tenant)]
    ) -> dict:
        await store.directory.suppress(
            identity.tenant, address_of(body.address), reason=body.reason, source="api"
        )
        return {"address": address_of(body.address).lower(), "reason": body.reason}

    @app.delete("/v1/suppressions/{address}", status_code=204, tags=["suppressions"])
    async def remove_suppression(
        address: str, identity: Annotated[Identity, Depends(tenant)]
    ) -> None:
        if not await store.directory.unsuppress(identity.tenant, address):
            raise Problem(404, f"{address} is not suppressed")

    @app.get("/v1/reports/destinations", tags=["messages"])
    async def destinations(
        identity: Annotated[Identity, Depends(tenant)],
        since: Moment | None = None,
        until: Moment | None = None,
    ) -> dict:
        """Bounces, deferrals and expiries by destination domain and reason (default: the last
        24 hours): blocks and rate limits show here even though they suppress nobody."""
        until = until or datetime.now(UTC)
        since = since or until - timedelta(days=1)
        rows = await store.destination_report(identity.tenant, since, until)
        return {"since": since, "until": until, "destinations": rows}

    @app.post("/v1/webhooks", status_code=201, tags=["webhooks"])
    async def add_webhook(body: WebhookIn, identity: Annotated[Identity, Depends(tenant)]) -> dict:
        """An endpoint for the tenant's events; the signing secret is in this answer only."""
        if box is None:
            raise Problem(503, "webhooks need the master key (HATO_MASTER_KEY_FILE)")
        try:  # checked again before every POST: a name may resolve elsewhere later
            await (egress or Egress()).check_url(body.url)
        except Forbidden as exc:
            raise Problem(422, f"webhook URL refused: {exc}") from None
        doc, secret = await store.webhooks.add(identity.tenant, body.url, body.events, box)
        if changed is not None:  # the bounce service binds what the webhook subscribed to
            await changed(ChangeKind.WEBHOOKS, identity.tenant)
        return {"id": doc["_id"], "url": doc["url"], "events": doc["events"], "secret": secret}

    @app.get("/v1/webhooks", tags=["webhooks"])
    async def list_webhooks(identity: Annotated[Identity, Depends(tenant)]) -> dict:
        return {
            "webhooks": [
                {
                    "id": w["_id"],
                    "url": w["url"],
                    "events": w["events"],
                    "created_at": w["created_at"],
                }
                for w in await store.webhooks.of(identity.tenant)
            ]
        }

    async def own_webhook(webhook_id: str, identity: Identity) -> dict:
        hook = await store.webhooks.get(webhook_id)
        if hook is None or hook["tenant"] != identity.tenant:
            raise Problem(404, f"no webhook {webhook_id}")
        return hook

    @app.delete("/v1/webhooks/{webhook_id}", status_code=204, tags=["webhooks"])
    async def remove_webhook(
        webhook_id: str, identity: Annotated[Identity, Depends(tenant)]
    ) -> None:
        await own_webhook(webhook_id, identity)
        await store.webhooks.remove(identity.tenant, webhook_id)
        if changed is not None:
            await changed(ChangeKind.WEBHOOKS, identity.tenant)

    @app.get("/v1/webhooks/{webhook_id}/deliveries", tags=["webhooks"])
    async def webhook_log(webhook_id: str, identity: Annotated[Identity, Depends(tenant)]) -> dict:
        """The delivery log: each event's state, attempts and the last answer."""
        await own_webhook(webhook_id, identity)
        return {
            "deliveries": [
                {
                    "event_id": d["event"]["id"],
                    "type": d["event"]["type"],
                    "state": d["state"],
                    "attempts": d.get("attempts", 0),
                    "last_status": d.get("last_status"),
                    "last_error": d.get("last_error"),
                    "last_attempt_at": d.get("last_attempt_at"),
                }
                for d in await store.webhooks.log(webhook_id)
            ]
        }

    @app.post("/v1/webhooks/{webhook_id}/replay", tags=["webhooks"])
    async def replay(
        webhook_id: str, body: ReplayIn, identity: Annotated[Identity, Depends(tenant)]
    ) -> dict:
        """Send the tenant's events of a time range to this endpoint again: at most
        100,000 in one call; ``complete`` is false and ``next_since`` says where to go on
        when the range holds more."""
        hook = await own_webhook(webhook_id, identity)
        queued = 0
        pages = store.tenant_events(identity.tenant, body.since, body.until, types=hook["events"])
        async for events in pages:
            if queued + len(events) > MAX_REPLAY:
                return {"queued": queued, "complete": False, "next_since": events[0]["at"]}
            queued += await store.webhooks.requeue(webhook_id, events)
        return {"queued": queued, "complete": True, "next_since": None}

    if acceptor is not None and policy is not None and limits is not None:
        sender = Sender(acceptor, policy, limits, door="http")
        IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)]

        async def idempotent(
            request: Request,
            identity: Identity,
            key: str | None,
            work: Callable[[], Awaitable[tuple[int, Any]]],
        ) -> JSONResponse:
            if not key:
                status, body = await work()
                return JSONResponse(body, status_code=status)
            request_hash = hashlib.sha256(await request.body()).hexdigest()
            try:
                stored = await store.idempotency.begin(identity.tenant, key, request_hash)
            except IdempotencyConflict as conflict:
                if conflict.kind == "mismatch":
                    raise Problem(
                        422, "this Idempotency-Key was used for another request"
                    ) from None
                raise Problem(409, "a request with this Idempotency-Key is in progress") from None
            if stored is not None:
                return JSONResponse(
                    stored["body"],
                    status_code=stored["status"],
                    headers={"Idempotent-Replayed": "true"},
                )
            try:
                status, body = await work()
            except Problem as exc:
                if exc.status_code in (429, 503):
                    await store.idempotency.abandon(identity.tenant, key)
                else:
                    await store.idempotency.finish(
                        identity.tenant, key, exc.status_code, exc.document()
                    )
                raise
            except BaseException:
                await store.idempotency.abandon(identity.tenant, key)
                raise
            await store.idempotency.finish(identity.tenant, key, status, body)
            return JSONResponse(body, status_code=status)

        @app.post("/v1/messages", status_code=202, response_model=AcceptedOut, tags=["send"])
        async def send(
            message: MessageIn,
            request: Request,
            identity: Annotated[Identity, Depends(tenant)],
            idempotency_key: IdemKey = None,
        ) -> JSONResponse:
            """Compose and send a message. 202 once it is durable; each recipient has an id."""

            async def work() -> tuple[int, Any]:
                return 202, await refusals_as_problems(sender.send(identity, message))

            return await idempotent(request, identity, idempotency_key, work)

        @app.post("/v1/messages/raw", status_code=202, response_model=AcceptedOut, tags=["send"])
        async def send_raw(
            message: RawMessageIn,
            request: Request,
            identity: Annotated[Identity, Depends(tenant)],
            idempotency_key: IdemKey = None,
        ) -> JSONResponse:
            """Send an RFC 5322 message as it is, to the envelope recipients given."""

            async def work() -> tuple[int, Any]:
                return 202, await refusals_as_problems(sender.send_raw(identity, message))

            return await idempotent(request, identity, idempotency_key, work)

        @app.post("/v1/messages/batch", tags=["send"])
        async def send_batch(
            batch: BatchIn,
            request: Request,
            identity: Annotated[Identity, Depends(tenant)],
            idempotency_key: IdemKey = None,
        ) -> JSONResponse:
            """Many messages in one request; ``results[i]`` is message i's 202 or problem."""

            async def work() -> tuple[int, Any]:
                results = []
                for i, message in enumerate(batch.messages):
                    try:
                        accepted = await refusals_as_problems(sender.send(identity, message))
                        results.append({"index": i, "status": 202, **accepted})
                    except Problem as exc:
                        results.append({"index": i, **exc.document()})
                    except Exception:
                        # Its own result, not a 500 for the whole batch: the messages
                        # accepted before it must not be sent again by a retry.
                        log.exception("a batch message failed", index=i)
                        results.append({"index": i, **Problem(500, BATCH_ITEM_FAILED).document()})
                return 200, {"results": results}

            return await idempotent(request, identity, idempotency_key, work)

    if admin is not None:
        app.include_router(admin.router(operator))
    app.openapi = lambda: app.openapi_schema or _with_problems(app, FastAPI.openapi(app))
    return app


PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "What did not match the schema (400 only).",
            "items": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
# What any operation may answer besides its success (the Gate's 401 and 413 come before the
# route is known), and what only the sending routes answer.
_PROBLEMS = {
    400: "The request does not match the schema, or the message is refused; ``errors`` says where.",
    401: "No API key (or operator token), or not a valid one.",
    403: "The key may not do this.",
    404: "No such resource (another tenant's is not found either).",
    409: "A conflict: the resource exists, or a request with this Idempotency-Key runs.",
    413: "The body is over this route's limit.",
    422: "Well-formed but refused: a webhook URL to a private address, an Idempotency-Key "
    "used for another request, a pool that does not exist, ...",
    503: "The store or the broker is unavailable; try again (Retry-After).",
}
_SENDING_PROBLEMS = {429: "The tenant's hourly limit is reached; try again (Retry-After)."}


def _with_problems(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the problem documents every operation may answer, FastAPI's
    422 among them (a validation error is a 400 problem here; 422 is a refusal)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # FastAPI's: a validation error body, never sent
            problems = dict(_PROBLEMS)
            if path.rstrip("/") in SENDING_ROUTES:
                problems |= _SENDING_PROBLEMS
            for status, description in sorted(problems.items()):
                responses.setdefault(
                    str(status),
                    {
                        "description": description,
                        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                    },
                )
    app.openapi_schema = schema
    return schema


async def refusals_as_problems(sending: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    try:
        return await sending
    except Refused as exc:
        raise Problem(exc.status, exc.detail) from None

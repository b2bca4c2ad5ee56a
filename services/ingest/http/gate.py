"""The HTTP door's gate: who is calling, and how much they may send, before a body is read.

FastAPI reads and parses a request's body before its dependencies run, so a caller without a
key could make ingest hold a body as large as the server accepts before being told 401. This
ASGI middleware answers first: a request to ``/v1`` or ``/admin`` without a known bearer token
gets 401 with its body unread, and a body larger than its route allows gets 413 — from the
declared ``Content-Length`` at once, or as soon as a chunked body passes the limit.

The provider compatible routes (SendGrid, Postmark, Mailgun) are guarded alike, each by its
``Guard``: the key is read where that provider's clients send it, and the 401 or 413 is that
provider's error body.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.ingest.http import problems
from services.ingest.http.providers.base import Guard

PROTECTED = ("/v1/", "/admin/")


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        *,
        known: Callable[[str], Awaitable[bool]],
        limit: Callable[[str, str], int],
        guards: tuple[Guard, ...] = (),
    ) -> None:
        self.app = app
        self.known = known  # bearer token -> a tenant's key or the operator token?
        self.limit = limit  # (method, path) -> largest body in bytes
        self.guards = guards  # the provider compatible routes' own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        guard = next((g for g in self.guards if g.matches(path)), None)
        if guard is None and not path.startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope["headers"]}

        async def refuse(status: int, detail: str) -> None:
            if guard is None:
                await _problem(send, status, detail)
            else:
                await _provider(send, guard.refusal(status, detail))

        if guard is None:
            token = _bearer(headers.get(b"authorization", b""))
        else:
            token = guard.token(
                {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
            )
        if not token:
            await refuse(401, "an API key (or the operator token) is required")
            return
        if not await self.known(token):
            await refuse(401, "the API key is not valid")
            return
        limit = self.limit(scope["method"], path)
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await refuse(413, f"the request body is over {limit} bytes for this route")
            return

        received = 0
        started = refused = False
        too_large = f"the request body is over {limit} bytes for this route"

        async def counted() -> Message:
            # Past the limit: answer 413 here, and tell the app the client is gone (an
            # exception would become the app's own 400); what it answers then is dropped.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await refuse(413, too_large)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, tracked)


def _bearer(value: bytes) -> str:
    scheme, _, token = value.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _provider(send: Send, response: Response) -> None:
    headers = [
        *response.raw_headers,
        (b"connection", b"close"),  # the unread body is not ours to wait for
    ]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


async def _problem(send: Send, status: int, detail: str) -> None:
    body = json.dumps(problems.document(status, detail)).encode()
    headers = [
        (b"content-type", problems.PROBLEM.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the unread body is not ours to wait for
        *((k.lower().encode(), v.encode()) for k, v in problems.headers(status).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

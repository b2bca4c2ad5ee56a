"""The HTTP door (FastAPI): message state for operators now; the send API grows here.

Errors are RFC 9457 problem documents (``application/problem+json``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from shared.store import Store

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str = "", **headers: str) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers or None)


class Problem(HTTPException):
    """Raised by a route to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(status, detail)
        self.title = title


class OperatorAuth:
    """Bearer-token check against the operator token; only its SHA-256 is kept in memory."""

    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest() if token else None

    def __call__(
        self,
        credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
        ],
    ) -> None:
        if self._digest is None:
            raise Problem(403, "Forbidden", "no operator token is configured")
        given = hashlib.sha256((credentials.credentials if credentials else "").encode()).digest()
        if credentials is None or not hmac.compare_digest(given, self._digest):
            raise Problem(401, "Unauthorized", "a valid operator bearer token is required")


def create_app(store: Store, *, operator_token: str) -> FastAPI:
    app = FastAPI(title="Hato", version="0.1.0", docs_url="/docs", redoc_url=None)
    operator = OperatorAuth(operator_token)

    @app.exception_handler(HTTPException)
    async def http_problem(_: Request, exc: HTTPException) -> JSONResponse:
        title = getattr(exc, "title", None) or {404: "Not Found", 405: "Method Not Allowed"}.get(
            exc.status_code, "Error"
        )
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else {}
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else ""
        return problem(exc.status_code, title, detail, **headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, "Unprocessable Content", str(exc.errors()[:3]))

    @app.get("/v1/messages/{message_id}", dependencies=[Depends(operator)])
    async def get_message(message_id: str) -> dict[str, Any]:
        """A message, every recipient's status with the remote reply, and its events."""
        message = await store.message(message_id)
        if message is None:
            raise Problem(404, "Not Found", f"no message {message_id}")
        recipients = await store.recipients(message_id)
        events = await store.events(message_id)
        message["id"] = message.pop("_id")
        message["recipients"] = [_public(r) for r in recipients]
        message["events"] = [_public(e) for e in events]
        return message

    return app


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    doc = dict(doc)
    doc["id"] = doc.pop("_id")
    return doc

"""RFC 9457 problem documents: how the HTTP door says no.

``Problem`` is what a route raises; the handlers ``install`` sets answer it (and FastAPI's own
errors: a request that does not match the schema is a 400 with ``errors``, never FastAPI's
422) as ``application/problem+json``. ``problems(...)`` is what a route declares it may
answer, so that the OpenAPI document names each route's real error statuses and nothing else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from shared.provisioning import Conflict, Invalid, NotFound, ProvisioningError

PROBLEM = "application/problem+json"
TITLES = {
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
RETRY_AFTER = {429: "60", 503: "5"}  # seconds, sent with every 429 and 503
MAX_ERRORS = 20  # schema mismatches listed in one 400


class Problem(HTTPException):
    """Raised by a route to answer with a problem document; ``extra`` members are added to
    it."""

    def __init__(self, status: int, detail: str = "", **extra: Any) -> None:
        super().__init__(status, detail)
        self.extra = extra

    def document(self) -> dict[str, Any]:
        return document(self.status_code, self.detail, **self.extra)


def document(status: int, detail: str = "", *, title: str = "", **extra: Any) -> dict[str, Any]:
    """The problem document of ``status`` (``detail`` left out when empty)."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    return body | extra


def headers(status: int) -> dict[str, str]:
    """What a problem of ``status`` says in its headers: how to authenticate, when to retry."""
    if status == 401:
        return {"WWW-Authenticate": "Bearer"}
    if status in RETRY_AFTER:
        return {"Retry-After": RETRY_AFTER[status]}
    return {}


def problem(status: int, detail: str = "", **extra: Any) -> JSONResponse:
    """A problem document as a response."""
    return JSONResponse(
        document(status, detail, **extra),
        status_code=status,
        media_type=PROBLEM,
        headers=headers(status),
    )


async def _http_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, Problem):
        return problem(exc.status_code, exc.detail, **exc.extra)
    # Starlette's own (404 of an unknown path, 405): its detail is the title again.
    detail = exc.detail if isinstance(exc.detail, str) else ""
    return problem(exc.status_code, "" if detail == TITLES.get(exc.status_code) else detail)


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"location": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
        for e in exc.errors()[:MAX_ERRORS]
    ]
    return problem(400, "the request does not match the schema", errors=errors)


def install(app: FastAPI) -> None:
    """Answer HTTP errors and schema mismatches with problem documents."""
    app.add_exception_handler(HTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _invalid)


# -- what the OpenAPI document says ------------------------------------------------------------


class SchemaError(BaseModel):
    location: str = Field(description="Where: ``body.to.0``, ``query.limit``, ...")
    message: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(title="Problem", extra="allow")

    type: str = Field(description="``about:blank``: the status says what kind of problem.")
    title: str
    status: int
    detail: str = Field("", description="What happened, for this request.")
    errors: list[SchemaError] = Field([], description="What did not match the schema (400 only).")


MEANINGS = {
    400: "The request does not match the schema (``errors`` says where), or what it asks "
    "for is refused as malformed.",
    401: "No API key (or operator token), or not a valid one.",
    403: "The key may not do this.",
    404: "No such resource (another tenant's is not found either).",
    409: "A conflict with what exists.",
    413: "The body is over this route's limit.",
    422: "Well-formed but refused.",
    429: "The tenant's hourly limit is reached; try again after Retry-After.",
    503: "Unavailable for now; try again after Retry-After.",
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    **{
        status: {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "string"},
            }
        }
        for status in RETRY_AFTER
    },
}
_REF = {"$ref": "#/components/schemas/Problem"}


Answer = int | tuple[int, str]
"""A problem status a route answers, or the status with what it means for that route."""


def problems(*answers: Answer) -> dict[int | str, dict[str, Any]]:
    """The problem responses of a route, for its ``responses=``: each status with what it
    means (``(404, "No such webhook.")`` for this route's own words, else ``MEANINGS``), the
    problem schema as ``application/problem+json``, and the headers it carries."""
    said = dict(a for a in answers if isinstance(a, tuple))
    statuses = {a[0] if isinstance(a, tuple) else a for a in answers}
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted(statuses):
        response: dict[str, Any] = {
            "description": said.get(status, MEANINGS[status]),
            "content": {PROBLEM: {"schema": _REF}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[status] = response
    return out


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the problem schema the routes refer to, and without the
    422 FastAPI adds to every route with parameters: its validation error body is never sent
    (a schema mismatch is a 400 problem here); a route that does answer 422 declares it."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = ProblemDocument.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas.update(schemas["Problem"].pop("$defs", {}))
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            fastapi_422 = responses.get("422", {}).get("content", {}).get("application/json")
            if fastapi_422 is not None and "HTTPValidationError" in str(fastapi_422):
                del responses["422"]  # a provider route's own 422 (Postmark's) stays
    return schema


def command_problem(exc: ProvisioningError) -> Problem:
    """A refused ``shared.admin`` command as the problem it answers."""
    status = {NotFound: 404, Conflict: 409, Invalid: 422}.get(type(exc), 400)
    return Problem(status, str(exc))


class CommandRoute(APIRoute):
    """A route over ``shared.admin`` commands: a refused command answers as a problem
    document, and the answer has the fields its command gave (a field a stored document
    lacks is left out, not null)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs | {"response_model_exclude_unset": True})

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ProvisioningError as exc:
                raise command_problem(exc) from None

        return run

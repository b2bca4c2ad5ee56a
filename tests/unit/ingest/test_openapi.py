"""The HTTP door's OpenAPI document says what the door answers: a schema for every success
body, each route's own problem statuses as application/problem+json, and no validation
error body FastAPI would describe but the door never sends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from services.ingest.http import create_app
from services.ingest.http.admin import Admin
from services.ingest.http.problems import PROBLEM
from services.ingest.policy import RelayPolicy
from services.ingest.send import DoorLimits

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# The SendGrid, Postmark and Mailgun compatible routes answer as those providers do.
PROVIDER_ROUTES = {
    "POST /v3/mail/send": "SendGridErrors",
    "POST /email": "PostmarkError",
    "POST /email/batch": "PostmarkError",
    "POST /v3/{domain}/messages": "MailgunError",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    store: Any = SimpleNamespace()  # building the document reads nothing
    admin = Admin(SimpleNamespace(), SimpleNamespace(), SimpleNamespace(), SimpleNamespace())  # type: ignore[arg-type]
    app = create_app(
        store,
        operator_token="op",
        acceptor=SimpleNamespace(),  # type: ignore[arg-type]
        policy=RelayPolicy(),
        limits=DoorLimits(1024 * 1024, 10),
        admin=admin,
    )
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    ]


def test_every_success_body_has_a_schema(document: dict[str, Any]) -> None:
    """Each 2xx but 204 names its model (or a list of one), not a free-form object."""
    untyped = []
    for label, op in _operations(document):
        for status, response in op["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            if label == "POST /v3/mail/send":  # SendGrid's 202 has no body, X-Message-Id
                assert "content" not in response and "X-Message-Id" in response["headers"]
                continue
            schema = response["content"]["application/json"]["schema"]
            if "$ref" not in schema.get("items", schema):
                untyped.append(f"{label} {status}")
    assert len(_operations(document)) == 58
    assert not untyped


def test_errors_are_problem_documents_and_no_fastapi_422(document: dict[str, Any]) -> None:
    """Every 4xx/5xx is the Problem schema as application/problem+json; FastAPI's validation
    error body (a 422 the door never sends: its validation errors are 400 problems) is gone."""
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for label, op in _operations(document):
        for status, response in op["responses"].items():
            if status[0] in "45" and label not in PROVIDER_ROUTES:
                assert response["content"] == {PROBLEM: {"schema": PROBLEM_REF}}, (label, status)


def test_provider_routes_declare_their_providers_error_bodies(document: dict[str, Any]) -> None:
    """The SendGrid, Postmark and Mailgun routes say truthfully that their errors are those
    providers' bodies (Mailgun's 401 the text ``Forbidden``), not problem documents."""
    for label, op in _operations(document):
        if label not in PROVIDER_ROUTES:
            continue
        for status, response in op["responses"].items():
            if status[0] not in "45":
                continue
            if label == "POST /v3/{domain}/messages" and status == "401":
                assert list(response["content"]) == ["text/plain"]
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{PROVIDER_ROUTES[label]}"}, (
                label,
                status,
            )


def test_each_route_declares_its_own_problems(document: dict[str, Any]) -> None:
    """A route names the statuses it answers, not a list shared by all: 422 only where a
    request is refused as unprocessable, 429 only where mail is sent, 401 everywhere."""
    declared = {label: set(op["responses"]) for label, op in _operations(document)}
    # The one-click unsubscribe link takes no key: its token is the authority (RFC 8058).
    public = {"GET /u/{token}", "POST /u/{token}"}
    assert all("401" in s for label, s in declared.items() if label not in public)
    assert not any("401" in declared[label] for label in public)
    assert {label for label, s in declared.items() if "429" in s} == {
        "POST /v1/messages",
        "POST /v1/messages/raw",
        *PROVIDER_ROUTES,
    }
    assert {label for label, s in declared.items() if "422" in s} == {
        *PROVIDER_ROUTES,
        "POST /v1/messages",
        "POST /v1/messages/raw",
        "POST /v1/messages/batch",
        "POST /v1/webhooks",
        "POST /admin/v1/tenants",
        "PATCH /admin/v1/tenants/{tenant}",
        "DELETE /admin/v1/tenants/{tenant}/networks",
        "POST /admin/v1/pools/{pool}/members",
        "GET /admin/v1/domains/{domain}/check",
        "GET /admin/v1/queue",
        "POST /admin/v1/queue/suspensions",
        "DELETE /admin/v1/queue/suspensions",
        "POST /admin/v1/queue/retry",
        "POST /admin/v1/queue/purge",
        "POST /admin/v1/queue/moves",
        "DELETE /admin/v1/queue/moves",
    }
    assert declared["GET /v1/domains/{domain}/check"] == {"200", "400", "401", "403", "404", "503"}
    assert declared["GET /v1/webhooks"] == {"200", "401", "403"}
    assert declared["POST /u/{token}"] == {"200", "400", "404", "413", "503"}
    assert declared["GET /v1/messages/{message_id}"] == {"200", "401", "404"}

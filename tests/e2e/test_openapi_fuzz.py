"""The running HTTP door against its own OpenAPI document (schemathesis): every operation, with
requests generated from the document, valid and invalid, authenticated with the key it is for
(a tenant's for ``/v1``, the operator token for ``/admin``), answers without a 5xx, with a
documented status code, content type, headers and body schema, and refuses a request without
its key. The SendGrid, Postmark and Mailgun compatible routes get the key the way those
providers' clients send it, and answer those providers' error bodies, as documented.

Bounded for CI (a few examples per operation and mode); ``make fuzz`` runs many more."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import OPERATOR, Api

pytestmark = pytest.mark.integration

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
# Under make fuzz: a sixteenth of a property's examples for each operation and mode (each is an
# HTTP request to a running stack).
EXAMPLES = max(8, int(os.environ.get("HATO_FUZZ_EXAMPLES", "5000")) // 16) if FUZZ else 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


def _fuzz(
    operation, mode: GenerationMode, base_url: str, headers: dict[str, str], seen: set[int]
) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=not FUZZ,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        seen.add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()


async def test_every_operation_answers_as_documented(api: Api) -> None:
    """No operation answers 5xx, or a status, content type, header or body its document does
    not describe, to generated requests (valid and invalid) with its key, and none takes a
    request without one."""
    document = (await api.http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    base_url = str(api.http.base_url).rstrip("/")
    failures: list[str] = []
    answered: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 10
    for operation in operations:
        seen = answered.setdefault(operation.label, set())
        headers = _key_for(operation.path, api)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                await asyncio.to_thread(_fuzz, operation, mode, base_url, headers, seen)
            except (Exception, BaseExceptionGroup) as exc:  # all findings, not only the first
                failures.append(f"{operation.label} ({mode.value}): {_describe(exc)}")
    assert not failures, "\n\n".join(failures)
    # The keys were used: operations answered 2xx, not only 401/403.
    assert any(200 <= s < 300 for s in answered["GET /v1/messages"]), answered
    assert any(200 <= s < 300 for s in answered["GET /v1/suppressions"]), answered
    assert any(200 <= s < 300 for s in answered["GET /admin/v1/tenants"]), answered
    assert any(200 <= s < 300 for s in answered["POST /admin/v1/tenants"]), answered


def _key_for(path: str, api: Api) -> dict[str, str]:
    """The key the way the route's clients send it: the operator token for ``/admin``,
    Postmark's and Mailgun's own headers for their routes, else the tenant's bearer key."""
    if path.startswith("/admin/"):
        return {"Authorization": f"Bearer {OPERATOR}"}
    if path.startswith("/email"):
        return {"X-Postmark-Server-Token": api.key}
    if path == "/v3/{domain}/messages":
        basic = base64.b64encode(f"api:{api.key}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    return api.as_tenant()


def _describe(exc: BaseException) -> str:
    """What failed and schemathesis's curl line to reproduce it."""
    text = str(exc)
    if "Reproduce with" not in text and isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return text[:3000]

"""A tenant's sending domains: their health (SPF, DKIM, DMARC, the return path's MX, the pool
IPs' reverse DNS, MTA-STS and TLS-RPT), with the exact record to publish for what is wrong."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.ingest.http.deps import CommandsDep, DoorDep, Tenant
from services.ingest.http.problems import Problem, problems
from shared.domain_health import Check, Verdict
from shared.provisioning import Invalid, NotFound

router = APIRouter(tags=["domains"])


class PublishRecord(BaseModel):
    name: str
    type: str = Field(description="TXT, CNAME, PTR, A or AAAA.")
    value: str
    purpose: str
    zone_line: str = Field(description="The record as a zone file line.")


class Finding(BaseModel):
    check: Check
    subject: str = Field(description="The name or IP address checked.")
    verdict: Verdict = Field(description="warning: works but weak (does not fail the check).")
    says: str = Field(description="What was found.")
    publish: PublishRecord | None = Field(description="The record that makes it right.")


class DomainCheck(BaseModel):
    domain: str
    ok: bool = Field(description="False when a finding is wrong or its lookup failed.")
    failing: list[Check] = Field(description="The checks that are wrong.")
    checked_at: datetime
    findings: list[Finding]


@router.get(
    "/v1/domains/{domain}/check",
    response_model=DomainCheck,
    responses=problems(
        (400, "Not a domain name."),
        401,
        403,
        (404, "No such domain (another tenant's is not found either)."),
        (503, "Domain checks are not configured on this instance."),
    ),
)
async def check_domain(
    domain: str, identity: Tenant, door: DoorDep, c: CommandsDep
) -> dict[str, Any]:
    """The health of one of the tenant's sending domains, checked now through DNS: what is
    right, what is wrong, and the record to publish (``hato domain check``'s command, on the
    tenant's own domains only)."""
    if door.health is None:
        raise Problem(503, "domain checks are not configured on this instance")
    try:
        report = await c.check_domain(domain, tenant=identity.tenant)
    except Invalid as exc:
        raise Problem(400, str(exc)) from None
    except NotFound:
        raise Problem(404, f"no domain {domain}") from None
    return report.as_dict()

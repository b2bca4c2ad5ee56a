"""A tenant's sending domains: their health (SPF, DKIM, DMARC, the return path's MX, the pool
IPs' reverse DNS, MTA-STS and TLS-RPT), with the exact record to publish for what is wrong."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.ingest.http.deps import DoorDep, Tenant
from services.ingest.http.problems import Problem, problems
from shared.admin import DOMAIN
from shared.domain_health import Check, Verdict, check_stored

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
async def check_domain(domain: str, identity: Tenant, door: DoorDep) -> dict[str, Any]:
    """The health of one of the tenant's sending domains, checked now through DNS: what is
    right, what is wrong, and the record to publish."""
    if door.health is None:
        raise Problem(503, "domain checks are not configured on this instance")
    if not re.match(DOMAIN, domain.rstrip(".")) or len(domain) > 253:
        raise Problem(400, f"not a domain name: {domain!r}")
    doc = await door.store.directory.domain(domain)
    if doc is None or doc["tenant"] != identity.tenant:
        raise Problem(404, f"no domain {domain}")
    report = await check_stored(door.health, door.store.directory, door.store.pools, doc)
    return report.as_dict()

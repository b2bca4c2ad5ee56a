"""A tenant's suppression list: who it never mails (hard bounces, complaints, its own
additions) and who left one of its lists (unsubscribes, scoped ``list:<name>``), to read, add
to and lift — through the same ``shared.admin`` commands as the operator's ``hato
suppression`` and admin API, on the tenant's own list only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.ingest.api_models import SuppressionIn, address_of
from services.ingest.http.deps import CommandsDep, Tenant
from services.ingest.http.problems import CommandRoute, problems

router = APIRouter(tags=["suppressions"], route_class=CommandRoute)


class Suppression(BaseModel):
    address: str
    reason: str | None
    source: str | None = Field(description="bounce, complaint, api, admin, one-click, mailto ...")
    scope: str | None = Field(
        None,
        description="null: no mail at all; `list:<name>`: no mail to that list, `tag:<tag>`: "
        "none with that tag (unsubscribed)",
    )
    created_at: datetime | None
    expires_at: datetime | None


class SuppressionPage(BaseModel):
    suppressions: list[Suppression]
    next: str | None = Field(description="The `after` of the next page; null at the end.")


class Suppressed(BaseModel):
    address: str = Field(description="The address, lower-cased.")
    reason: str


@router.get("/v1/suppressions", response_model=SuppressionPage, responses=problems(400, 401, 403))
async def list_suppressions(
    identity: Tenant,
    c: CommandsDep,
    after: str = "",
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The tenant's suppressed addresses, by address; ``next`` continues the list (a page
    never ends inside one address: its other scopes come with it)."""
    items = await c.suppressions(identity.tenant, after=after, limit=limit)
    return {
        "suppressions": items,
        "next": items[-1]["address"] if len(items) >= limit else None,
    }


@router.post(
    "/v1/suppressions",
    status_code=201,
    response_model=Suppressed,
    responses=problems(400, 401, 403, 413),
)
async def add_suppression(body: SuppressionIn, identity: Tenant, c: CommandsDep) -> dict[str, Any]:
    """Never mail this address again (until the suppression is lifted)."""
    address = await c.suppress(
        identity.tenant, address_of(body.address), reason=body.reason, source="api"
    )
    return {"address": address, "reason": body.reason}


@router.delete(
    "/v1/suppressions/{address}",
    status_code=204,
    responses=problems(401, 403, (404, "The address is not suppressed.")),
)
async def remove_suppression(
    address: str,
    identity: Tenant,
    c: CommandsDep,
    scope: str | None = Query(
        None, description="`list:<name>` or `tag:<tag>` to lift an unsubscribe; none: the rest"
    ),
) -> None:
    """Lift a suppression: the address may be mailed again (to the list, with ``scope``)."""
    await c.unsuppress(identity.tenant, address, scope=scope)

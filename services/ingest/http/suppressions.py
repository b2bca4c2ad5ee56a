"""A tenant's suppression list: who it never mails (hard bounces, complaints, its own
additions) and who left one of its lists (unsubscribes, scoped ``list:<name>``), to read, add
to and lift."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.ingest.api_models import SuppressionIn, address_of
from services.ingest.http.deps import DoorDep, Tenant
from services.ingest.http.problems import Problem, problems

router = APIRouter(tags=["suppressions"])


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
    door: DoorDep,
    after: str = "",
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The tenant's suppressed addresses, by address; ``next`` continues the list."""
    docs = await door.store.directory.suppressions(identity.tenant, after=after, limit=limit)
    items = [
        {
            "address": d["address"],
            "reason": d.get("reason"),
            "source": d.get("source"),
            "scope": d.get("scope"),
            "created_at": d.get("created_at"),
            "expires_at": d.get("expires_at"),
        }
        for d in docs
    ]
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
async def add_suppression(body: SuppressionIn, identity: Tenant, door: DoorDep) -> dict[str, Any]:
    """Never mail this address again (until the suppression is lifted)."""
    await door.store.directory.suppress(
        identity.tenant, address_of(body.address), reason=body.reason, source="api"
    )
    return {"address": address_of(body.address).lower(), "reason": body.reason}


@router.delete(
    "/v1/suppressions/{address}",
    status_code=204,
    responses=problems(401, 403, (404, "The address is not suppressed.")),
)
async def remove_suppression(
    address: str,
    identity: Tenant,
    door: DoorDep,
    scope: str | None = Query(
        None, description="`list:<name>` or `tag:<tag>` to lift an unsubscribe; none: the rest"
    ),
) -> None:
    """Lift a suppression: the address may be mailed again (to the list, with ``scope``)."""
    if not await door.store.directory.unsuppress(identity.tenant, address, scope=scope):
        raise Problem(404, f"{address} is not suppressed" + (f" for {scope}" if scope else ""))

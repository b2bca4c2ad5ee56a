"""The admin HTTP API (operator token): what ``hato`` does, for platforms' own tooling —
tenants, networks, limits, IP pools, domains and their DNS records, SMTP credentials and
API keys. The routes are a door onto the commands of ``shared.admin``: they take the JSON
bodies (validated by the models here) and answer the commands' results; a refused command
answers its problem (404 not found, 409 conflict, 422 invalid, 400 otherwise).

Secrets (passwords, API keys) are in the creating response only; they are stored hashed.
Every change is announced on the broker, so the other ingest instances, the signers and the
dispatchers apply it at once.
"""

import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.ingest.http import Problem
from shared.admin import DOMAIN, NAME, SELECTOR, Commands
from shared.broker import Broker
from shared.directory import Directory, Limits, relay_network
from shared.provisioning import Conflict, Invalid, NotFound, Provisioner, ProvisioningError
from shared.store import Store

_NAME = NAME


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsIn(_In):
    max_message_size: int | None = Field(None, ge=1024)
    max_recipients: int | None = Field(None, ge=1)
    messages_per_hour: int | None = Field(None, ge=1)
    max_age: float | None = Field(None, gt=0, description="Seconds deferred mail is retried.")
    retention_days: float | None = Field(
        None, gt=0, description="Days a message is kept once all its recipients are final."
    )


def _relay_networks(networks: list[str], wide: bool) -> list[str]:
    try:
        return [relay_network(n, wide=wide) for n in networks]
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class TenantIn(_In):
    name: str = Field(pattern=_NAME)
    pool: str = Field("default", pattern=_NAME)
    networks: list[str] = []
    limits: LimitsIn = LimitsIn()
    signing_domain: str | None = Field(
        None, description="Fallback DKIM domain for From domains without a key."
    )
    other_pools: list[str] = Field([], description="Pools a message may name instead.")
    allow_wide_networks: bool = Field(
        False, description="Take networks wider than /8 (IPv4) or /32 (IPv6): they relay freely."
    )

    @model_validator(mode="after")
    def _networks(self) -> "TenantIn":
        self.networks = _relay_networks(self.networks, self.allow_wide_networks)
        return self


class TenantChangeIn(_In):
    """What changes of a tenant; what is left out stays as it is."""

    pool: str | None = Field(None, pattern=_NAME)
    limits: LimitsIn | None = None
    signing_domain: str | None = None
    other_pools: list[str] | None = None


class PoolMemberIn(_In):
    ip: str
    helo: str | None = Field(None, max_length=253, description="EHLO name of this source IP.")
    warmup: list[int] = Field([], description="Daily caps for day 1, 2, ... (the last holds).")


class NetworkIn(_In):
    cidr: str
    allow_wide: bool = Field(
        False, description="Take a network wider than /8 (IPv4) or /32 (IPv6): it relays freely."
    )

    @model_validator(mode="after")
    def _cidr(self) -> "NetworkIn":
        self.cidr = _relay_networks([self.cidr], self.allow_wide)[0]
        return self


class DomainIn(_In):
    domain: str = Field(max_length=253, pattern=DOMAIN)
    verified: bool = Field(False, description="Operator's word that the domain is theirs.")
    selector: str = Field("hato", pattern=SELECTOR)


class CredentialIn(_In):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")
    allowed_from: list[str] = Field([], description="Addresses or domains it may send from.")


class ApiKeyIn(_In):
    name: str = Field("", max_length=100)
    allowed_from: list[str] = []


def _problem(exc: ProvisioningError) -> Problem:
    status = {NotFound: 404, Conflict: 409, Invalid: 422}.get(type(exc), 400)
    return Problem(status, str(exc))


class _CommandRoute(APIRoute):
    """A route whose refused command answers as a problem document."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except ProvisioningError as exc:
                raise _problem(exc) from None

        return run


def _pick(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: doc[k] for k in keys}


def _limits(body: LimitsIn | None) -> Limits | None:
    return None if body is None else Limits(**body.model_dump())


class Admin:
    """The admin routes over the shared admin commands; ``changed`` is run after each
    change."""

    def __init__(
        self,
        directory: Directory,
        provisioner: Provisioner,
        changed: Callable[..., Awaitable[None]],
        *,
        broker: Broker | None = None,
        store: Store | None = None,
    ) -> None:
        self.commands = Commands(directory, provisioner, changed)
        self.broker = broker  # the dead-letter routes need both
        self.store = store

    def router(self, operator: Callable[..., Any]) -> APIRouter:
        r = APIRouter(
            prefix="/admin/v1",
            tags=["admin"],
            dependencies=[Depends(operator)],
            route_class=_CommandRoute,
        )
        c = self.commands

        async def dead_letters(job_id: str | None, decision: str | None) -> list[dict]:
            if self.broker is None or self.store is None:
                raise Problem(503, "dead letters need the broker")

            async def act(message: Any) -> str | None:
                hit = job_id is None or hashlib.sha256(message.body).hexdigest()[:16] == job_id
                return decision if hit else None

            entries = await self.broker.dead_letters(limit=1000, act=act)
            if decision is None:
                return entries
            done = [e for e in entries if e["done"]]
            if not done:
                raise Problem(404, f"no dead-lettered job {job_id}")
            if decision == "retry":
                for e in done:
                    if e.get("message_id") and e.get("recipients"):
                        await self.store.revive_dead_lettered(e["message_id"], e["recipients"])
            return done

        @r.get("/dead")
        async def list_dead() -> dict:
            """Jobs that failed for good (the dead-letter queue), oldest first; their
            recipients are `failed` with the reason."""
            return {"jobs": await dead_letters(None, None)}

        @r.post("/dead/{job_id}/retry")
        async def retry_dead(job_id: str) -> dict:
            """Put a job back into the queue it died in; its recipients wait again."""
            return {"retried": await dead_letters(job_id, "retry")}

        @r.delete("/dead/{job_id}")
        async def drop_dead(job_id: str) -> dict:
            """Remove a job for good; its recipients stay `failed`."""
            return {"dropped": await dead_letters(job_id, "drop")}

        @r.post("/tenants", status_code=201)
        async def create_tenant(body: TenantIn) -> dict:
            return await c.create_tenant(
                body.name,
                pool=body.pool,
                networks=body.networks,
                limits=_limits(body.limits),
                signing_domain=body.signing_domain,
                other_pools=body.other_pools,
            )

        @r.patch("/tenants/{tenant}")
        async def change_tenant(tenant: str, body: TenantChangeIn) -> dict:
            return await c.update_tenant(
                tenant,
                pool=body.pool,
                limits=_limits(body.limits),
                signing_domain=body.signing_domain,
                other_pools=body.other_pools,
            )

        @r.get("/pools")
        async def list_pools() -> list[dict]:
            return await c.pools()

        @r.post("/pools/{pool}/members", status_code=201)
        async def add_pool_member(pool: str, body: PoolMemberIn) -> dict:
            if not re.match(NAME, pool):
                raise Problem(400, f"not a pool name: {pool!r}")
            member = await c.add_pool_member(pool, body.ip, helo=body.helo, warmup=body.warmup)
            return {"pool": pool, **member}

        @r.delete("/pools/{pool}/members/{ip}", status_code=204)
        async def remove_pool_member(pool: str, ip: str) -> None:
            await c.remove_pool_member(pool, ip)

        @r.get("/tenants")
        async def list_tenants() -> list[dict]:
            return await c.tenants()

        @r.get("/tenants/{tenant}")
        async def get_tenant(tenant: str) -> dict:
            return await c.tenant(tenant)

        @r.patch("/tenants/{tenant}/limits")
        async def set_limits(tenant: str, body: LimitsIn) -> dict:
            return await c.set_limits(tenant, Limits(**body.model_dump()))

        @r.post("/tenants/{tenant}/networks", status_code=201)
        async def add_network(tenant: str, body: NetworkIn) -> dict:
            return await c.add_network(tenant, body.cidr, wide=body.allow_wide)

        @r.delete("/tenants/{tenant}/networks")
        async def remove_network(tenant: str, cidr: Annotated[str, Query()]) -> dict:
            return await c.remove_network(tenant, cidr)

        @r.post("/tenants/{tenant}/domains", status_code=201)
        async def add_domain(tenant: str, body: DomainIn) -> dict:
            view = await c.add_domain(
                body.domain, tenant=tenant, verified=body.verified, selector=body.selector
            )
            return _pick(view, "domain", "tenant", "verified", "dns_records")

        @r.get("/tenants/{tenant}/domains")
        async def list_domains(tenant: str) -> list[dict]:
            return [_pick(d, "domain", "verified", "dns_records") for d in await c.domains(tenant)]

        @r.post("/domains/{domain}/verify")
        async def verify_domain(domain: str) -> dict:
            verified, checks = await c.verify_domain(domain)
            return {
                "domain": domain,
                "verified": verified,
                "dkim": [
                    {"selector": k.selector, "name": k.name, "status": k.status} for k in checks
                ],
            }

        @r.post("/tenants/{tenant}/credentials", status_code=201)
        async def add_credential(tenant: str, body: CredentialIn) -> dict:
            password = await c.add_credential(tenant, body.username, allowed_from=body.allowed_from)
            return {
                "username": body.username,
                "password": password,
                "allowed_from": body.allowed_from,
            }

        @r.get("/tenants/{tenant}/credentials")
        async def list_credentials(tenant: str) -> list[dict]:
            return [
                _pick(v, "username", "allowed_from", "created_at")
                for v in await c.credentials(tenant)
            ]

        @r.delete("/tenants/{tenant}/credentials/{username}", status_code=204)
        async def delete_credential(tenant: str, username: str) -> None:
            await c.remove_credential(username, tenant)

        @r.post("/tenants/{tenant}/api-keys", status_code=201)
        async def add_api_key(tenant: str, body: ApiKeyIn) -> dict:
            prefix, token = await c.add_api_key(
                tenant, name=body.name, allowed_from=body.allowed_from
            )
            return {
                "prefix": prefix,
                "key": token,
                "name": body.name,
                "allowed_from": body.allowed_from,
            }

        @r.get("/tenants/{tenant}/api-keys")
        async def list_api_keys(tenant: str) -> list[dict]:
            return [
                _pick(v, "prefix", "name", "allowed_from", "created_at")
                for v in await c.api_keys(tenant)
            ]

        @r.delete("/tenants/{tenant}/api-keys/{prefix}", status_code=204)
        async def revoke_api_key(tenant: str, prefix: str) -> None:
            await c.revoke_api_key(prefix, tenant)

        return r

"""The admin HTTP API (operator token): what ``hato`` does, for platforms' own tooling —
tenants, networks, limits, domains and their DNS records, SMTP credentials and API keys.

Secrets (passwords, API keys) are in the creating response only; they are stored hashed.
"""

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.ingest.http import Problem
from shared.directory import Directory, DuplicateError, Limits
from shared.provisioning import Provisioner, ProvisioningError

_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsIn(_In):
    max_message_size: int | None = Field(None, ge=1024)
    max_recipients: int | None = Field(None, ge=1)
    messages_per_hour: int | None = Field(None, ge=1)
    max_age: float | None = Field(None, gt=0, description="Seconds deferred mail is retried.")


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"not a network: {value!r}") from None


class TenantIn(_In):
    name: str = Field(pattern=_NAME)
    pool: str = Field("default", pattern=_NAME)
    networks: list[str] = []
    limits: LimitsIn = LimitsIn()
    signing_domain: str | None = Field(
        None, description="Fallback DKIM domain for From domains without a key."
    )
    other_pools: list[str] = Field([], description="Pools a message may name instead.")

    _networks = field_validator("networks")(classmethod(lambda cls, v: [_cidr(n) for n in v]))


class NetworkIn(_In):
    cidr: str

    _cidr = field_validator("cidr")(classmethod(lambda cls, v: _cidr(v)))


class DomainIn(_In):
    domain: str = Field(max_length=253, pattern=r"^([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$")
    verified: bool = Field(False, description="Operator's word that the domain is theirs.")
    selector: str = Field("hato", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")


class CredentialIn(_In):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")
    allowed_from: list[str] = Field([], description="Addresses or domains it may send from.")


class ApiKeyIn(_In):
    name: str = Field("", max_length=100)
    allowed_from: list[str] = []


def _tenant_out(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": doc["_id"],
        "pool": doc.get("pool"),
        "networks": doc.get("networks", []),
        "limits": doc.get("limits", {}),
        "signing_domain": doc.get("signing_domain"),
        "created_at": doc.get("created_at"),
    }


class Admin:
    """The admin routes, bound to the directory and a hook run after each change."""

    def __init__(
        self,
        directory: Directory,
        provisioner: Provisioner,
        changed: Callable[[], Awaitable[None]],
    ) -> None:
        self.directory = directory
        self.provisioner = provisioner
        self.changed = changed

    async def _tenant(self, name: str) -> dict[str, Any]:
        doc = await self.directory.tenant(name)
        if doc is None:
            raise Problem(404, f"no tenant {name}")
        return doc

    def router(self, operator: Callable[..., Any]) -> APIRouter:
        r = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(operator)])
        d = self.directory

        @r.post("/tenants", status_code=201)
        async def create_tenant(body: TenantIn) -> dict:
            if await d.tenant(body.name) is not None:
                raise Problem(409, f"tenant {body.name} exists")
            doc = await d.upsert_tenant(
                body.name,
                pool=body.pool,
                networks=body.networks,
                limits=Limits(**body.limits.model_dump()),
                signing_domain=body.signing_domain,
                other_pools=body.other_pools,
            )
            await self.changed()
            return _tenant_out(doc)

        @r.get("/tenants")
        async def list_tenants() -> list[dict]:
            return [_tenant_out(t) for t in await d.tenants()]

        @r.get("/tenants/{tenant}")
        async def get_tenant(tenant: str) -> dict:
            return _tenant_out(await self._tenant(tenant))

        @r.patch("/tenants/{tenant}/limits")
        async def set_limits(tenant: str, body: LimitsIn) -> dict:
            await self._tenant(tenant)
            doc = await d.upsert_tenant(tenant, limits=Limits(**body.model_dump()))
            await self.changed()
            return _tenant_out(doc)

        @r.post("/tenants/{tenant}/networks", status_code=201)
        async def add_network(tenant: str, body: NetworkIn) -> dict:
            await self._tenant(tenant)
            await d.add_network(tenant, body.cidr)
            await self.changed()
            return _tenant_out(await self._tenant(tenant))

        @r.delete("/tenants/{tenant}/networks")
        async def remove_network(tenant: str, cidr: Annotated[str, Query()]) -> dict:
            await self._tenant(tenant)
            await d.remove_network(tenant, _cidr(cidr))
            await self.changed()
            return _tenant_out(await self._tenant(tenant))

        @r.post("/tenants/{tenant}/domains", status_code=201)
        async def add_domain(tenant: str, body: DomainIn) -> dict:
            try:
                doc = await self.provisioner.add_domain(
                    body.domain, tenant=tenant, verified=body.verified, selector=body.selector
                )
            except ProvisioningError as exc:
                raise Problem(409 if "belongs" in str(exc) else 404, str(exc)) from None
            await self.changed()
            return {
                "domain": doc["_id"],
                "tenant": tenant,
                "verified": doc["verified"],
                "dns_records": self.provisioner.records(doc),
            }

        @r.get("/tenants/{tenant}/domains")
        async def list_domains(tenant: str) -> list[dict]:
            await self._tenant(tenant)
            return [
                {
                    "domain": doc["_id"],
                    "verified": doc.get("verified", False),
                    "dns_records": self.provisioner.records(doc),
                }
                for doc in await d.domains(tenant)
            ]

        @r.post("/domains/{domain}/verify")
        async def verify_domain(domain: str) -> dict:
            try:
                verified, checks = await self.provisioner.verify(domain)
            except ProvisioningError as exc:
                raise Problem(404, str(exc)) from None
            await self.changed()
            return {
                "domain": domain,
                "verified": verified,
                "dkim": [
                    {"selector": c.selector, "name": c.name, "status": c.status} for c in checks
                ],
            }

        @r.post("/tenants/{tenant}/credentials", status_code=201)
        async def add_credential(tenant: str, body: CredentialIn) -> dict:
            await self._tenant(tenant)
            try:
                password = await d.add_credential(
                    tenant, body.username, allowed_from=body.allowed_from
                )
            except DuplicateError as exc:
                raise Problem(409, str(exc)) from None
            return {
                "username": body.username,
                "password": password,
                "allowed_from": body.allowed_from,
            }

        @r.get("/tenants/{tenant}/credentials")
        async def list_credentials(tenant: str) -> list[dict]:
            await self._tenant(tenant)
            return [
                {
                    "username": c["_id"],
                    "allowed_from": c.get("allowed_from", []),
                    "created_at": c.get("created_at"),
                }
                for c in await d.credentials(tenant)
            ]

        @r.delete("/tenants/{tenant}/credentials/{username}", status_code=204)
        async def delete_credential(tenant: str, username: str) -> None:
            if not await d.delete_credential(username, tenant):
                raise Problem(404, f"no SMTP user {username} for {tenant}")

        @r.post("/tenants/{tenant}/api-keys", status_code=201)
        async def add_api_key(tenant: str, body: ApiKeyIn) -> dict:
            await self._tenant(tenant)
            prefix, token = await d.add_api_key(
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
            await self._tenant(tenant)
            return [
                {
                    "prefix": k["_id"],
                    "name": k.get("name", ""),
                    "allowed_from": k.get("allowed_from", []),
                    "created_at": k.get("created_at"),
                }
                for k in await d.api_keys(tenant)
            ]

        @r.delete("/tenants/{tenant}/api-keys/{prefix}", status_code=204)
        async def revoke_api_key(tenant: str, prefix: str) -> None:
            if not await d.revoke_api_key(prefix, tenant):
                raise Problem(404, f"no API key {prefix} for {tenant}")

        return r

"""The admin HTTP API (operator token): what ``hato`` does, for platforms' own tooling —
tenants, networks, limits, IP pools, domains and their DNS records, SMTP credentials and
API keys. The routes are a door onto the commands of ``shared.admin``: they take the JSON
bodies (validated by the models of ``admin_models``) and answer the commands' results; a
refused command answers its problem (404 not found, 409 conflict, 422 invalid, 400
otherwise).

Secrets (passwords, API keys) are in the creating response only; they are stored hashed.
Every change is announced on the broker, so the other ingest instances, the signers and the
dispatchers apply it at once.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

from aio_pika.abc import AbstractIncomingMessage
from fastapi import APIRouter, Depends, Query, Request

from services.ingest.http.admin_models import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    ConsoleUserCreated,
    ConsoleUserIn,
    ConsoleUserOut,
    CredentialCreated,
    CredentialIn,
    CredentialOut,
    DeadJobs,
    DomainAdded,
    DomainIn,
    DomainOut,
    DomainVerified,
    Dropped,
    LimitsIn,
    MoveIn,
    NetworkIn,
    PoolMemberAdded,
    PoolMemberIn,
    PoolOut,
    PurgeIn,
    QueueControlOut,
    QueueFilterIn,
    QueuePurgedOut,
    QueueRetriedOut,
    QueueStatusOut,
    Retried,
    SuspendIn,
    TenantChangeIn,
    TenantIn,
    TenantOut,
)
from services.ingest.http.deps import CommandsDep, operator
from services.ingest.http.domains import DomainCheck
from services.ingest.http.problems import Answer, CommandRoute, Problem, problems
from shared.admin import NAME, Announce, Commands
from shared.broker import Broker, Revival
from shared.directory import Directory, TenantLimits
from shared.domain_health import DomainHealth
from shared.provisioning import Provisioner
from shared.store import Store
from shared.suppressions import Suppressions


def _pick(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: doc[k] for k in keys}


def _limits(body: LimitsIn | None) -> TenantLimits | None:
    return None if body is None else TenantLimits(**body.model_dump())


class Admin:
    """What the admin routes work with: the shared admin commands (``changed`` is run after
    each change), and the broker and store of the dead-letter routes (without them, those
    answer 503)."""

    def __init__(
        self,
        directory: Directory,
        suppressions: Suppressions,
        provisioner: Provisioner,
        changed: Announce,
        *,
        broker: Broker | None = None,
        store: Store | None = None,
        health: DomainHealth | None = None,
    ) -> None:
        self.commands = Commands(directory, suppressions, provisioner, changed, health=health)
        self.broker = broker
        self.store = store

    async def dead_letters(self, job_id: str | None, decision: str | None) -> list[dict]:
        """The dead-lettered jobs; with ``decision`` (retry, drop), done to ``job_id``'s (or
        all when None), and only those returned (404 when none is)."""
        if self.broker is None or self.store is None:
            raise Problem(503, "dead letters need the broker")

        async def act(message: AbstractIncomingMessage) -> str | None:
            hit = job_id is None or hashlib.sha256(message.body).hexdigest()[:16] == job_id
            return decision if hit else None

        revival = Revival(self.store.messages) if decision == "retry" else None
        entries = await self.broker.dead_letters(limit=1000, act=act, revival=revival)
        if decision is None:
            return entries
        done = [e for e in entries if e["done"]]
        if not done:
            raise Problem(404, f"no dead-lettered job {job_id}")
        return done


def admin(request: Request) -> Admin:
    found: Admin = request.app.state.admin
    return found


AdminDep = Annotated[Admin, Depends(admin)]

router = APIRouter(
    prefix="/admin/v1",
    tags=["admin"],
    dependencies=[Depends(operator)],
    route_class=CommandRoute,
)


# Every admin route may answer 401 (no valid token) and 403 (a tenant's key, not the
# operator's); the statuses after those are each route's own.
def _answers(*answers: Answer) -> dict[int | str, dict[str, Any]]:
    return problems(401, 403, *answers)


_TENANT = (404, "No such tenant.")
_BODY = (400, 413)  # a body that does not match the schema; one over 1 MiB

# -- dead letters -----------------------------------------------------------------------------

_NO_BROKER = (503, "This instance has no broker connection for dead letters.")


@router.get("/dead", response_model=DeadJobs, responses=_answers(_NO_BROKER))
async def list_dead(a: AdminDep) -> dict[str, Any]:
    """Jobs that failed for good (the dead-letter queue), oldest first; their
    recipients are `failed` with the reason."""
    return {"jobs": await a.dead_letters(None, None)}


@router.post(
    "/dead/{job_id}/retry",
    response_model=Retried,
    responses=_answers((404, "No dead-lettered job with this id."), _NO_BROKER),
)
async def retry_dead(job_id: str, a: AdminDep) -> dict[str, Any]:
    """Put a job back into the queue it died in; its recipients wait again."""
    return {"retried": await a.dead_letters(job_id, "retry")}


@router.delete(
    "/dead/{job_id}",
    response_model=Dropped,
    responses=_answers((404, "No dead-lettered job with this id."), _NO_BROKER),
)
async def drop_dead(job_id: str, a: AdminDep) -> dict[str, Any]:
    """Remove a job for good; its recipients stay `failed`."""
    return {"dropped": await a.dead_letters(job_id, "drop")}


# -- tenants and networks -----------------------------------------------------------------------


@router.get("/tenants", response_model=list[TenantOut], responses=_answers())
async def list_tenants(c: CommandsDep) -> list[dict[str, Any]]:
    return await c.tenants()


@router.post(
    "/tenants",
    status_code=201,
    response_model=TenantOut,
    responses=_answers(
        *_BODY, (409, "A tenant of this name exists."), (422, "A pool it names does not exist.")
    ),
)
async def create_tenant(body: TenantIn, c: CommandsDep) -> dict[str, Any]:
    return await c.create_tenant(
        body.name,
        pool=body.pool,
        networks=body.networks,
        limits=_limits(body.limits),
        signing_domain=body.signing_domain,
        other_pools=body.other_pools,
    )


@router.get("/tenants/{tenant}", response_model=TenantOut, responses=_answers(_TENANT))
async def get_tenant(tenant: str, c: CommandsDep) -> dict[str, Any]:
    return await c.tenant(tenant)


@router.patch(
    "/tenants/{tenant}",
    response_model=TenantOut,
    responses=_answers(
        *_BODY, (422, "A pool it names does not exist, or not a pool name."), _TENANT
    ),
)
async def change_tenant(tenant: str, body: TenantChangeIn, c: CommandsDep) -> dict[str, Any]:
    return await c.update_tenant(
        tenant,
        pool=body.pool,
        limits=_limits(body.limits),
        signing_domain=body.signing_domain,
        other_pools=body.other_pools,
    )


@router.delete(
    "/tenants/{tenant}",
    status_code=204,
    responses=_answers(
        (409, "The tenant still has domains, SMTP users or API keys: remove those first."),
        _TENANT,
    ),
)
async def remove_tenant(tenant: str, c: CommandsDep) -> None:
    await c.remove_tenant(tenant)


@router.patch(
    "/tenants/{tenant}/limits",
    response_model=TenantOut,
    responses=_answers(*_BODY, _TENANT),
)
async def set_limits(tenant: str, body: LimitsIn, c: CommandsDep) -> dict[str, Any]:
    return await c.set_limits(tenant, TenantLimits(**body.model_dump()))


@router.post(
    "/tenants/{tenant}/networks",
    status_code=201,
    response_model=TenantOut,
    responses=_answers(*_BODY, _TENANT),
)
async def add_network(tenant: str, body: NetworkIn, c: CommandsDep) -> dict[str, Any]:
    return await c.add_network(tenant, body.cidr, wide=body.allow_wide)


@router.delete(
    "/tenants/{tenant}/networks",
    response_model=TenantOut,
    responses=_answers(400, (422, "Not a network."), _TENANT),
)
async def remove_network(
    tenant: str, cidr: Annotated[str, Query()], c: CommandsDep
) -> dict[str, Any]:
    return await c.remove_network(tenant, cidr)


# -- IP pools ---------------------------------------------------------------------------------


@router.get("/pools", response_model=list[PoolOut], responses=_answers())
async def list_pools(c: CommandsDep) -> list[dict[str, Any]]:
    return await c.pools()


@router.post(
    "/pools/{pool}/members",
    status_code=201,
    response_model=PoolMemberAdded,
    responses=_answers(*_BODY, (422, "Not an IP address, or warm-up caps that are not positive.")),
)
async def add_pool_member(pool: str, body: PoolMemberIn, c: CommandsDep) -> dict[str, Any]:
    if not re.match(NAME, pool):
        raise Problem(400, f"not a pool name: {pool!r}")
    member = await c.add_pool_member(pool, body.ip, helo=body.helo, warmup=body.warmup)
    return {"pool": pool, **member}


@router.delete(
    "/pools/{pool}/members/{ip}",
    status_code=204,
    responses=_answers((404, "The pool has no such member.")),
)
async def remove_pool_member(pool: str, ip: str, c: CommandsDep) -> None:
    await c.remove_pool_member(pool, ip)


# -- domains ----------------------------------------------------------------------------------


@router.post(
    "/tenants/{tenant}/domains",
    status_code=201,
    response_model=DomainAdded,
    responses=_answers(
        *_BODY,
        (
            400,
            "The body does not match the schema, or no master key is configured to seal "
            "the domain's DKIM key.",
        ),
        (409, "The domain belongs to another tenant."),
        _TENANT,
    ),
)
async def add_domain(tenant: str, body: DomainIn, c: CommandsDep) -> dict[str, Any]:
    view = await c.add_domain(
        body.domain, tenant=tenant, verified=body.verified, selector=body.selector
    )
    return _pick(view, "domain", "tenant", "verified", "dns_records")


@router.get(
    "/tenants/{tenant}/domains",
    response_model=list[DomainOut],
    responses=_answers(_TENANT),
)
async def list_domains(tenant: str, c: CommandsDep) -> list[dict[str, Any]]:
    return [_pick(d, "domain", "verified", "dns_records") for d in await c.domains(tenant)]


@router.delete(
    "/domains/{domain}",
    status_code=204,
    responses=_answers((404, "No such domain.")),
)
async def remove_domain(domain: str, c: CommandsDep) -> None:
    await c.remove_domain(domain)


@router.post(
    "/domains/{domain}/verify",
    response_model=DomainVerified,
    responses=_answers((404, "No such domain.")),
)
async def verify_domain(domain: str, c: CommandsDep) -> dict[str, Any]:
    verified, checks = await c.verify_domain(domain)
    return {
        "domain": domain,
        "verified": verified,
        "dkim": [{"selector": k.selector, "name": k.name, "status": k.status} for k in checks],
    }


@router.get(
    "/domains/{domain}/check",
    response_model=DomainCheck,
    responses=_answers((404, "No such domain."), (422, "Not a domain name.")),
)
async def check_domain(domain: str, c: CommandsDep) -> dict[str, Any]:
    """Domain health (as `hato domain check`): SPF, DKIM, DMARC, the return path's MX, the
    pool IPs' PTR, MTA-STS and TLS-RPT; each wrong finding names the record to publish."""
    return (await c.check_domain(domain)).as_dict()


# -- SMTP credentials and API keys --------------------------------------------------------------


@router.post(
    "/tenants/{tenant}/credentials",
    status_code=201,
    response_model=CredentialCreated,
    responses=_answers(*_BODY, (409, "The SMTP user exists."), _TENANT),
)
async def add_credential(tenant: str, body: CredentialIn, c: CommandsDep) -> dict[str, Any]:
    password = await c.add_credential(tenant, body.username, allowed_from=body.allowed_from)
    return {
        "username": body.username,
        "password": password,
        "allowed_from": body.allowed_from,
    }


@router.get(
    "/tenants/{tenant}/credentials",
    response_model=list[CredentialOut],
    responses=_answers(_TENANT),
)
async def list_credentials(tenant: str, c: CommandsDep) -> list[dict[str, Any]]:
    return [_pick(v, "username", "allowed_from", "created_at") for v in await c.credentials(tenant)]


@router.delete(
    "/tenants/{tenant}/credentials/{username}",
    status_code=204,
    responses=_answers((404, "The tenant has no such SMTP user.")),
)
async def delete_credential(tenant: str, username: str, c: CommandsDep) -> None:
    await c.remove_credential(username, tenant)


@router.post(
    "/tenants/{tenant}/users",
    status_code=201,
    response_model=ConsoleUserCreated,
    responses=_answers(*_BODY, (409, "The console user exists."), _TENANT),
)
async def add_console_user(tenant: str, body: ConsoleUserIn, c: CommandsDep) -> dict[str, Any]:
    """A console user who sees this tenant's mail; its password is answered once."""
    password = await c.add_console_user(body.email, tenant=tenant, password=body.password)
    return {"email": body.email.lower(), "tenant": tenant, "password": password}


@router.get(
    "/tenants/{tenant}/users",
    response_model=list[ConsoleUserOut],
    responses=_answers(_TENANT),
)
async def list_console_users(tenant: str, c: CommandsDep) -> list[dict[str, Any]]:
    return [
        _pick(u, "email", "tenant", "locked_until", "created_at")
        for u in await c.console_users(tenant)
    ]


@router.delete(
    "/tenants/{tenant}/users/{email}",
    status_code=204,
    responses=_answers((404, "The tenant has no such console user.")),
)
async def delete_console_user(tenant: str, email: str, c: CommandsDep) -> None:
    """Delete a console user and end its sessions."""
    await c.remove_console_user(email, tenant)


@router.post(
    "/tenants/{tenant}/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=_answers(*_BODY, _TENANT),
)
async def add_api_key(tenant: str, body: ApiKeyIn, c: CommandsDep) -> dict[str, Any]:
    prefix, token = await c.add_api_key(tenant, name=body.name, allowed_from=body.allowed_from)
    return {
        "prefix": prefix,
        "key": token,
        "name": body.name,
        "allowed_from": body.allowed_from,
    }


@router.get(
    "/tenants/{tenant}/api-keys",
    response_model=list[ApiKeyOut],
    responses=_answers(_TENANT),
)
async def list_api_keys(tenant: str, c: CommandsDep) -> list[dict[str, Any]]:
    return [
        _pick(v, "prefix", "name", "allowed_from", "created_at") for v in await c.api_keys(tenant)
    ]


@router.delete(
    "/tenants/{tenant}/api-keys/{prefix}",
    status_code=204,
    responses=_answers((404, "The tenant has no such API key.")),
)
async def revoke_api_key(tenant: str, prefix: str, c: CommandsDep) -> None:
    await c.revoke_api_key(prefix, tenant)


# -- the delivery queue -------------------------------------------------------------------------

_FILTER = (422, "A filter that names no tenant, domain or IP, or a malformed one.")
_FILTER_TENANT = (404, "The tenant named does not exist.")


@router.get(
    "/queue",
    response_model=QueueStatusOut,
    responses=_answers((422, "A malformed filter."), _FILTER_TENANT),
)
async def queue_status(
    c: CommandsDep,
    tenant: Annotated[str, Query()] = "",
    domain: Annotated[str, Query()] = "",
    source_ip: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """What waits for delivery: counts by tenant, destination domain, source IP and reason,
    the oldest, and the suspensions, moves and reply rules' actions in force."""
    return await c.queue_status(await c.scope(tenant=tenant, domain=domain, source_ip=source_ip))


@router.post(
    "/queue/suspensions",
    status_code=201,
    response_model=QueueControlOut,
    responses=_answers(*_BODY, _FILTER, _FILTER_TENANT),
)
async def suspend(body: SuspendIn, c: CommandsDep) -> dict[str, Any]:
    """Hold delivery for a tenant, destination domain or source IP (optionally towards one
    provider): matching mail waits, its attempts not counted, until resumed or expired."""
    scope = await c.scope(
        tenant=body.tenant, domain=body.domain, source_ip=body.source_ip, provider=body.provider
    )
    return await c.suspend(scope, reason=body.reason, expires_in=body.expires_in)


@router.delete(
    "/queue/suspensions",
    response_model=QueueControlOut,
    responses=_answers(
        (404, "No suspension with exactly this filter, or no such tenant."),
        (422, "A malformed filter."),
    ),
)
async def resume(
    c: CommandsDep,
    tenant: Annotated[str, Query()] = "",
    domain: Annotated[str, Query()] = "",
    source_ip: Annotated[str, Query()] = "",
    provider: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """Lift the suspension given with the same filter; what it held is sent at once."""
    scope = await c.scope(tenant=tenant, domain=domain, source_ip=source_ip, provider=provider)
    return await c.resume(scope)


@router.post(
    "/queue/retry",
    response_model=QueueRetriedOut,
    responses=_answers(*_BODY, (422, "A malformed filter."), _FILTER_TENANT),
)
async def retry_queue(body: QueueFilterIn, c: CommandsDep) -> dict[str, Any]:
    """Send the matching mail that waits for a retry now (suspended mail stays suspended)."""
    scope = await c.scope(tenant=body.tenant, domain=body.domain, source_ip=body.source_ip)
    return await c.retry(scope)


@router.post(
    "/queue/purge",
    response_model=QueuePurgedOut,
    responses=_answers(*_BODY, _FILTER, _FILTER_TENANT),
)
async def purge(body: PurgeIn, c: CommandsDep) -> dict[str, Any]:
    """Bounce every waiting recipient that matches, with the reason the senders see (a
    `bounced` event each)."""
    scope = await c.scope(tenant=body.tenant, domain=body.domain, source_ip=body.source_ip)
    return await c.purge(scope, reason=body.reason)


@router.post(
    "/queue/moves",
    status_code=201,
    response_model=QueueControlOut,
    responses=_answers(
        *_BODY,
        (422, "No tenant or domain named, a malformed one, or a pool that does not exist."),
        _FILTER_TENANT,
    ),
)
async def move(body: MoveIn, c: CommandsDep) -> dict[str, Any]:
    """Send a tenant's or destination domain's mail, waiting and new, from another pool."""
    scope = await c.scope(tenant=body.tenant, domain=body.domain)
    return await c.move(scope, body.pool, expires_in=body.expires_in)


@router.delete(
    "/queue/moves",
    response_model=QueueControlOut,
    responses=_answers(
        (404, "No move with exactly this filter, or no such tenant."),
        (422, "No tenant or domain named, or a malformed one."),
    ),
)
async def lift_move(
    c: CommandsDep,
    tenant: Annotated[str, Query()] = "",
    domain: Annotated[str, Query()] = "",
) -> dict[str, Any]:
    """Lift a move: the mail goes from its own pool again."""
    return await c.move(await c.scope(tenant=tenant, domain=domain), None)


@router.delete(
    "/queue/controls/{control_id}",
    status_code=204,
    responses=_answers((404, "No queue control with this id.")),
)
async def lift_control(control_id: str, c: CommandsDep) -> None:
    """Lift any queue control by its id (a reply rule's action too)."""
    await c.lift_control(control_id)

"""The admin commands: tenants, networks, domains (and their health), DKIM keys, SMTP
credentials, API keys, console users, suppressions and IP pools, each checked and carried
out in one place.

``hato`` (``hato/cli.py``) and the admin HTTP API (``services/ingest/http/admin.py``) are two
doors onto these commands: they parse their input, call a command and show its result.
It lives in ``shared/`` because both doors use it and neither may import the other's
package (services never import each other; the CLI never imports a service).

A command checks what it is given before it writes (``Invalid``: the request names something
unusable, ``NotFound``, ``Conflict``, from ``shared.provisioning``), and announces every
change through the ``announce`` hook its door gives, so running services apply it at once.
Read commands only read: they create no index and announce nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared import dkim
from shared.directory import Directory, DuplicateError, TenantLimits, relay_network
from shared.dns import KeyCheck
from shared.domain_health import DomainHealth, HealthReport, check_stored
from shared.provisioning import DEFAULT_POOL, Conflict, Invalid, KeyChange, NotFound, Provisioner
from shared.queue_control import (
    Action,
    Controls,
    Scope,
    Waiting,
    control_view,
    retry_request,
    summarize,
)
from shared.schemas import ChangeKind, Event, EventType, utcnow
from shared.suppressions import Suppressions

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"  # tenant and pool names
DOMAIN = r"^([a-zA-Z0-9-]{1,63}\.)+[a-zA-Z]{2,63}$"
SELECTOR = r"^[a-z0-9][a-z0-9-]{0,62}$"
EMAIL = r"^[A-Za-z0-9._%+-]+@([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$"  # console user names
MIN_PASSWORD = 12  # characters of a console password given by hand
RETRY_DOMAINS = 50  # retry requests one source IP's retry sends at most, by domain

Announce = Callable[[ChangeKind, str, Sequence[Event]], Awaitable[None]]
"""What a door does after a change: tell running services (and write, publish ``events``)."""


# -- validation -------------------------------------------------------------------------------


def check_name(value: str, what: str) -> str:
    """A tenant or pool name, or Invalid."""
    if not re.match(NAME, value):
        raise Invalid(f"not a {what} name: {value!r}")
    return value


def network(value: str, *, wide: bool = False) -> str:
    """A source network a tenant may relay from, normalised; Invalid when it is no network
    or wider than /8 (IPv4) or /32 (IPv6) without ``wide``."""
    try:
        return relay_network(value, wide=wide)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def cidr(value: str) -> str:
    """A network as the store keeps it (to withdraw one, whatever its width)."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise Invalid(f"not a network: {value!r}") from None


def warmup(value: str) -> list[int]:
    """Daily caps written ``500,1000,2000``."""
    try:
        return [int(n) for n in value.split(",")] if value else []
    except ValueError:
        raise Invalid(f"warm-up takes daily caps like 500,1000,2000, not {value!r}") from None


# -- what the commands answer ---------------------------------------------------------------


def tenant_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": doc["_id"],
        "pool": doc.get("pool"),
        "other_pools": doc.get("other_pools", []),
        "networks": doc.get("networks", []),
        "limits": doc.get("limits", {}),
        "signing_domain": doc.get("signing_domain"),
        "created_at": doc.get("created_at"),
    }


def credential_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "username": doc["_id"],
        "tenant": doc["tenant"],
        "allowed_from": doc.get("allowed_from", []),
        "created_at": doc.get("created_at"),
    }


def api_key_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "prefix": doc["_id"],
        "tenant": doc["tenant"],
        "name": doc.get("name", ""),
        "allowed_from": doc.get("allowed_from", []),
        "created_at": doc.get("created_at"),
    }


def console_user_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "email": doc["_id"],
        "tenant": doc.get("tenant"),
        "operator": doc.get("tenant") is None,
        "locked_until": doc.get("locked_until"),
        "created_at": doc.get("created_at"),
    }


def suppression_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": doc["address"],
        "reason": doc.get("reason"),
        "source": doc.get("source"),
        "created_at": doc.get("created_at"),
        "scope": doc.get("scope"),
        "expires_at": doc.get("expires_at"),
    }


@dataclass(frozen=True, slots=True)
class KeyReport:
    """What ``check_keys`` found: each live key's DNS state, its life state by selector, the
    steps taken (only when asked to activate), keys the signer cannot open, and why keys
    were not opened at all (no master key)."""

    domain: str
    checks: list[KeyCheck]
    states: dict[str, str]
    changes: list[KeyChange] = field(default_factory=list)
    unusable: list[str] = field(default_factory=list)
    unchecked: str = ""

    @property
    def ok(self) -> bool:
        return all(c.status == "found" for c in self.checks) and not self.unusable

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "keys": [
                {
                    "selector": c.selector,
                    "name": c.name,
                    "state": self.states.get(c.selector),
                    "dns": c.status,
                }
                for c in self.checks
            ],
            "changes": [{"selector": c.selector, "now": c.kind} for c in self.changes],
            "unusable": self.unusable,
            "unchecked": self.unchecked,
            "ok": self.ok,
        }


# -- the commands -----------------------------------------------------------------------------


class Commands:
    """The admin commands over one directory and its tenants' suppression list; ``announce``
    is the door's change hook and ``box_problem`` says why there is no master key when the
    provisioner has none."""

    def __init__(
        self,
        directory: Directory,
        suppressions: Suppressions,
        provisioner: Provisioner,
        announce: Announce,
        *,
        box_problem: str = "",
        health: DomainHealth | None = None,
    ) -> None:
        self.directory = directory
        self.suppression_list = suppressions  # ``suppressions`` is the command listing them
        self.provisioner = provisioner
        self.announce = announce
        self.box_problem = box_problem
        self._health = health

    @property
    def health(self) -> DomainHealth:
        """The domain checks: as given, else through the provisioner's DNS settings."""
        if self._health is None:
            self._health = DomainHealth(self.provisioner.dns)
        return self._health

    @property
    def controls(self) -> Controls:
        return Controls(self.directory.db)

    @property
    def waiting(self) -> Waiting:
        return Waiting(self.directory.db)

    async def _changed(self, what: ChangeKind, name: str, events: Sequence[Event] = ()) -> None:
        await self.announce(what, name, events)

    async def _tenant(self, name: str) -> dict[str, Any]:
        doc = await self.directory.tenant(name)
        if doc is None:
            raise NotFound(f"unknown tenant {name}")
        return doc

    async def _domain(self, domain: str) -> dict[str, Any]:
        doc = await self.directory.domain(domain)
        if doc is None:
            raise NotFound(f"unknown domain {domain}")
        return doc

    # -- tenants and networks -------------------------------------------------------------

    async def tenants(self) -> list[dict[str, Any]]:
        return [tenant_view(t) for t in await self.directory.tenants()]

    async def tenant(self, name: str) -> dict[str, Any]:
        return tenant_view(await self._tenant(name))

    async def create_tenant(
        self,
        name: str,
        *,
        pool: str = DEFAULT_POOL,
        networks: Sequence[str] = (),
        allow_wide: bool = False,
        limits: TenantLimits | None = None,
        signing_domain: str | None = None,
        other_pools: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A new tenant; an existing name is a Conflict."""
        doc = await self.provisioner.create_tenant(
            check_name(name, "tenant"),
            pool=check_name(pool, "pool"),
            networks=[network(n, wide=allow_wide) for n in networks],
            limits=limits,
            signing_domain=signing_domain,
            other_pools=other_pools,
        )
        await self._changed(ChangeKind.TENANTS, name)
        return tenant_view(doc)

    async def update_tenant(
        self,
        name: str,
        *,
        pool: str | None = None,
        limits: TenantLimits | None = None,
        signing_domain: str | None = None,
        other_pools: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Change what is given of a tenant and keep the rest."""
        doc = await self.provisioner.update_tenant(
            name,
            pool=check_name(pool, "pool") if pool else None,
            limits=limits,
            signing_domain=signing_domain,
            other_pools=other_pools,
        )
        await self._changed(ChangeKind.TENANTS, name)
        return tenant_view(doc)

    async def set_limits(self, name: str, limits: TenantLimits) -> dict[str, Any]:
        await self._tenant(name)
        doc = await self.directory.upsert_tenant(name, limits=limits)
        await self._changed(ChangeKind.TENANTS, name)
        return tenant_view(doc)

    async def remove_tenant(self, name: str) -> None:
        """Delete a tenant that owns nothing any more (Conflict while it has domains, SMTP
        users or API keys: remove those first)."""
        await self._tenant(name)
        owned = [
            f"{len(found)} {what}"
            for what, found in (
                ("domain(s)", await self.directory.domains(name)),
                ("SMTP user(s)", await self.directory.credentials(name)),
                ("API key(s)", await self.directory.api_keys(name)),
            )
            if found
        ]
        if owned:
            raise Conflict(f"tenant {name} still has {', '.join(owned)}: remove them first")
        await self.directory.delete_tenant(name)
        await self._changed(ChangeKind.TENANTS, name)

    async def add_network(self, tenant: str, value: str, *, wide: bool = False) -> dict[str, Any]:
        await self._tenant(tenant)
        await self.directory.add_network(tenant, network(value, wide=wide))
        await self._changed(ChangeKind.TENANTS, tenant)
        return await self.tenant(tenant)

    async def remove_network(self, tenant: str, value: str) -> dict[str, Any]:
        await self._tenant(tenant)
        await self.directory.remove_network(tenant, cidr(value))
        await self._changed(ChangeKind.TENANTS, tenant)
        return await self.tenant(tenant)

    # -- domains and DKIM keys ------------------------------------------------------------

    def domain_view(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {
            "domain": doc["_id"],
            "tenant": doc["tenant"],
            "verified": doc.get("verified", False),
            "dkim": [
                {"selector": k["selector"], "algorithm": k["algorithm"], "state": dkim.status(k)}
                for k in doc.get("dkim", [])
            ],
            "dns_records": self.provisioner.records(doc),
        }

    async def domains(self, tenant: str | None = None) -> list[dict[str, Any]]:
        if tenant:
            await self._tenant(tenant)
        return [self.domain_view(d) for d in await self.directory.domains(tenant)]

    async def add_domain(
        self, domain: str, *, tenant: str, verified: bool = False, selector: str = "hato"
    ) -> dict[str, Any]:
        """Give ``domain`` to ``tenant`` with a first DKIM key; its view names the records."""
        if not re.match(DOMAIN, domain.rstrip(".")) or len(domain) > 253:
            raise Invalid(f"not a domain name: {domain!r}")
        if not re.match(SELECTOR, selector):
            raise Invalid(f"not a DKIM selector: {selector!r}")
        doc = await self.provisioner.add_domain(
            domain, tenant=tenant, verified=verified, selector=selector
        )
        await self._changed(ChangeKind.DOMAINS, doc["_id"])
        return self.domain_view(doc)

    async def remove_domain(self, domain: str) -> None:
        """Take a domain (and its DKIM keys) away: its mail is no longer relayed or signed."""
        doc = await self._domain(domain)
        await self.directory.delete_domain(doc["_id"])
        await self._changed(ChangeKind.DOMAINS, doc["_id"])

    async def verify_domain(self, domain: str) -> tuple[bool, list[KeyCheck]]:
        """Look its DKIM records up; verified once one is found."""
        verified, checks = await self.provisioner.verify(domain)
        await self._changed(ChangeKind.DOMAINS, domain.lower())
        return verified, checks

    async def check_domain(self, domain: str, *, tenant: str | None = None) -> HealthReport:
        """Domain health: SPF, DKIM, DMARC, the return path's MX, the pool IPs' PTR, MTA-STS
        and TLS-RPT, each with the record to publish where it is wrong. With ``tenant``, only
        that tenant's domain (another's is NotFound, like one that does not exist)."""
        if not re.match(DOMAIN, domain.rstrip(".")) or len(domain) > 253:
            raise Invalid(f"not a domain name: {domain!r}")
        doc = await self._domain(domain)
        if tenant is not None and doc["tenant"] != tenant:
            raise NotFound(f"unknown domain {domain}")
        return await check_stored(self.health, self.directory, self.provisioner.pools, doc)

    async def generate_key(
        self, domain: str, selector: str | None = None, algorithm: str = dkim.RSA
    ) -> KeyChange:
        change = await self.provisioner.generate_key(domain, selector, algorithm)
        await self._changed(ChangeKind.DOMAINS, change.domain, [change.event()])
        return change

    async def rotate_key(self, domain: str, algorithm: str = dkim.RSA) -> KeyChange:
        change = await self.provisioner.rotate(domain, algorithm)
        await self._changed(ChangeKind.DOMAINS, change.domain, [change.event()])
        return change

    async def check_keys(self, domain: str, *, activate: bool = False) -> KeyReport:
        """Every live key's record in DNS; with ``activate``, pending keys found there
        become active first (and the keys they replace retire)."""
        await self._domain(domain)
        changes = await self.provisioner.promote(domain) if activate else []
        if changes:
            await self._changed(ChangeKind.DOMAINS, domain.lower(), [c.event() for c in changes])
        checks = await self.provisioner.check(domain)
        doc = await self._domain(domain)
        box = self.provisioner.box
        return KeyReport(
            domain=doc["_id"],
            checks=checks,
            states={k["selector"]: dkim.status(k) for k in doc.get("dkim", [])},
            changes=changes,
            unusable=dkim.unopenable_keys([doc], box) if box else [],
            unchecked="" if box else self.box_problem or "no master key",
        )

    async def dkim_records(self, domain: str) -> list[dict[str, str]]:
        """The DKIM TXT records to publish (NotFound when the domain has no key)."""
        doc = await self._domain(domain)
        if not doc.get("dkim"):
            raise NotFound(f"{domain} has no DKIM key (hato dkim generate)")
        return [
            r
            for r in self.provisioner.records(doc)
            if r["type"] == "TXT" and "._domainkey." in r["name"]
        ]

    # -- SMTP credentials and API keys ----------------------------------------------------

    async def credentials(self, tenant: str | None = None) -> list[dict[str, Any]]:
        if tenant:
            await self._tenant(tenant)
        return [credential_view(c) for c in await self.directory.credentials(tenant)]

    async def add_credential(
        self, tenant: str, username: str, *, allowed_from: Sequence[str] = ()
    ) -> str:
        """A new SMTP user; its password (shown once, stored hashed)."""
        await self._tenant(tenant)
        if not re.match(r"^[!-~]{1,128}$", username):
            raise Invalid(f"not an SMTP user name: {username!r}")
        try:
            password = await self.directory.add_credential(
                tenant, username, allowed_from=allowed_from
            )
        except DuplicateError as exc:
            raise Conflict(str(exc)) from None
        await self._changed(ChangeKind.TENANTS, tenant)
        return password

    async def remove_credential(self, username: str, tenant: str | None = None) -> None:
        if not await self.directory.delete_credential(username, tenant):
            raise NotFound(f"no SMTP user {username}" + (f" for {tenant}" if tenant else ""))
        await self._changed(ChangeKind.TENANTS, tenant or "")

    async def api_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        if tenant:
            await self._tenant(tenant)
        return [api_key_view(k) for k in await self.directory.api_keys(tenant)]

    async def add_api_key(
        self, tenant: str, *, name: str = "", allowed_from: Sequence[str] = ()
    ) -> tuple[str, str]:
        """A new API key: (prefix, key); the key is shown once and stored hashed."""
        await self._tenant(tenant)
        prefix, token = await self.directory.add_api_key(
            tenant, name=name, allowed_from=allowed_from
        )
        await self._changed(ChangeKind.TENANTS, tenant)
        return prefix, token

    async def revoke_api_key(self, prefix: str, tenant: str | None = None) -> None:
        if not await self.directory.revoke_api_key(prefix, tenant):
            raise NotFound(f"no API key {prefix}" + (f" for {tenant}" if tenant else ""))
        await self._changed(ChangeKind.TENANTS, tenant or "")

    # -- console users --------------------------------------------------------------------

    async def console_users(self, tenant: str | None = None) -> list[dict[str, Any]]:
        if tenant:
            await self._tenant(tenant)
        return [console_user_view(u) for u in await self.directory.console_users(tenant)]

    async def add_console_user(
        self, email: str, *, tenant: str | None, password: str | None = None
    ) -> str:
        """A console user of ``tenant`` (None: an operator, who sees every tenant); its
        password, generated unless given (shown once, stored hashed)."""
        if tenant is not None:
            await self._tenant(tenant)
        if not re.match(EMAIL, email) or len(email) > 254:
            raise Invalid(f"not an email address: {email!r}")
        if password is not None and len(password) < MIN_PASSWORD:
            raise Invalid(f"a console password has at least {MIN_PASSWORD} characters")
        try:
            return await self.directory.add_console_user(email, tenant=tenant, password=password)
        except DuplicateError as exc:
            raise Conflict(str(exc)) from None

    async def remove_console_user(self, email: str, tenant: str | None = None) -> None:
        """Delete a console user and end its sessions."""
        if not await self.directory.delete_console_user(email, tenant):
            raise NotFound(f"no console user {email}" + (f" for {tenant}" if tenant else ""))

    # -- suppressions ---------------------------------------------------------------------

    async def suppressions(
        self, tenant: str, *, after: str = "", limit: int = 1000
    ) -> list[dict[str, Any]]:
        """The tenant's suppressed addresses in address order, from after ``after``."""
        await self._tenant(tenant)
        docs = await self.suppression_list.page(tenant, after=after, limit=limit)
        return [suppression_view(d) for d in docs]

    async def suppress(
        self, tenant: str, address: str, *, reason: str = "manual", source: str = "admin"
    ) -> str:
        """The tenant never mails ``address`` (lower-cased, returned) until it is lifted;
        ``source`` says who added it (the operator's ``admin``, the tenant's ``api``)."""
        await self._tenant(tenant)
        await self.suppression_list.suppress(tenant, address, reason=reason, source=source)
        return address.lower()

    async def unsuppress(self, tenant: str, address: str, *, scope: str | None = None) -> str:
        """The tenant may mail ``address`` again (within ``scope``: lifts an unsubscribe)."""
        if not await self.suppression_list.unsuppress(tenant, address, scope=scope):
            where = f" ({scope})" if scope else ""
            raise NotFound(f"{address} is not suppressed for {tenant}{where}")
        return address.lower()

    # -- IP pools -------------------------------------------------------------------------

    async def pools(self) -> list[dict[str, Any]]:
        """The stored pools and their members."""
        return [
            {"name": p["_id"], "members": p.get("members", [])}
            for p in await self.provisioner.pools.all()
        ]

    async def pool_status(
        self,
        within: float,
        waiting: Callable[[str], Awaitable[int | None]],
    ) -> list[dict[str, Any]]:
        """Every pool: its members (with the live dispatcher owning each IP and what it sent
        today), the dispatchers heard from within ``within`` seconds that serve it, and how
        many jobs wait in its queue (``waiting``; None when unknown)."""
        pools = self.provisioner.pools
        docs = {p["_id"]: p for p in await pools.all()}
        live = await pools.live_dispatchers(within)
        sent = await pools.sent_today()
        owners = {ip: d for d in live for ip in d.get("ips", [])}
        now = datetime.now(UTC)
        status = []
        for name in sorted({DEFAULT_POOL, *docs}):
            members = [
                {
                    "ip": m["ip"],
                    "helo": m.get("helo"),
                    "warmup": m.get("warmup") or [],
                    "sent_today": sent.get(m["ip"], 0),
                    "dispatcher": owners[m["ip"]]["_id"] if m["ip"] in owners else None,
                }
                for m in docs.get(name, {}).get("members", [])
            ]
            serving = [
                {
                    "instance": d["_id"],
                    "ips": d.get("ips", []),
                    "seen_seconds_ago": round((now - _aware(d["seen_at"])).total_seconds(), 1),
                }
                for d in live
                if name in d.get("pools", [])
            ]
            status.append(
                {
                    "name": name,
                    "members": members,
                    "stored": name in docs,
                    "dispatchers": serving,
                    "waiting": await waiting(name),
                }
            )
        return status

    async def add_pool_member(
        self, pool: str, ip: str, *, helo: str | None = None, warmup: Sequence[int] = ()
    ) -> dict[str, Any]:
        """Add (or replace) a source IP of a pool, creating the pool."""
        member = await self.provisioner.add_pool_member(
            check_name(pool, "pool"), ip, helo=helo, warmup=warmup
        )
        await self._changed(ChangeKind.POOLS, pool)
        return member

    async def remove_pool_member(self, pool: str, ip: str) -> None:
        await self.provisioner.remove_pool_member(pool, ip)
        await self._changed(ChangeKind.POOLS, pool)

    # -- the delivery queue -----------------------------------------------------------------

    async def scope(
        self, *, tenant: str = "", domain: str = "", source_ip: str = "", provider: str = ""
    ) -> Scope:
        """A queue command's filter, checked: the tenant exists, the domain and IP are ones."""
        if tenant:
            await self._tenant(tenant)
        if domain and (not re.match(DOMAIN, domain.rstrip(".")) or len(domain) > 253):
            raise Invalid(f"not a domain name: {domain!r}")
        if source_ip:
            try:
                source_ip = str(ipaddress.ip_address(source_ip))
            except ValueError:
                raise Invalid(f"not an IP address: {source_ip!r}") from None
        if provider and not re.match(r"^[a-z0-9][a-z0-9.-]{0,252}$", provider.lower()):
            raise Invalid(f"not a provider group or domain: {provider!r}")
        return Scope(tenant, domain, source_ip, provider)

    async def queue_status(self, scope: Scope) -> dict[str, Any]:
        """What waits (counts by tenant, destination domain, source IP and reason, the
        oldest) and the controls in force."""
        docs = await self.waiting.find(scope)
        return {
            "filter": {k: v for k, v in vars_of(scope).items() if v},
            **summarize(docs, utcnow()),
            "controls": [control_view(d) for d in await self.controls.active()],
        }

    async def suspend(
        self, scope: Scope, *, reason: str = "", expires_in: float | None = None
    ) -> dict[str, Any]:
        """Delivery in ``scope`` waits (its attempts not counted) until resumed or expired."""
        if not (scope.tenant or scope.domain or scope.source_ip):
            raise Invalid("name what to suspend: a tenant, a destination domain or a source IP")
        _check_expiry(expires_in)
        doc = await self.controls.put(
            Action.SUSPEND,
            scope,
            reason=reason or "suspended by the operator",
            expires_in=expires_in,
        )
        await self._changed(ChangeKind.QUEUE, "", [_queue_event(EventType.QUEUE_SUSPENDED, doc)])
        return control_view(doc)

    async def resume(self, scope: Scope) -> dict[str, Any]:
        """Lift the suspension of exactly ``scope``; what it held is sent at once."""
        doc = await self.controls.remove(Action.SUSPEND, scope)
        if doc is None:
            raise NotFound(f"no suspension of {scope.describe()} (see hato queue list)")
        # The dispatchers send what it held once they see it gone.
        await self._changed(
            ChangeKind.QUEUE, "", [_queue_event(EventType.QUEUE_RESUMED, doc, at=utcnow())]
        )
        return control_view(doc)

    async def retry(self, scope: Scope) -> dict[str, Any]:
        """Send the mail in ``scope`` that waits for a retry again now (suspended mail stays
        suspended: it is looked at again and waits on)."""
        docs = await self.waiting.find(scope)
        now = utcnow()
        event = Event.of(
            EventType.QUEUE_RETRIED,
            tenant=scope.tenant,
            step=(scope.key(), now.isoformat()),
            detail={**_scope_detail(scope), "waiting": len(docs)},
            at=now,
        )
        # A job names its tenant and destination domain, not the IP its last attempt used:
        # a source IP's mail is asked for by the domains it waits for (a few), else all.
        requests = [Scope(scope.tenant, scope.domain)]
        domains = sorted({str(d.get("domain") or "") for d in docs} - {""})
        if (scope.source_ip or scope.provider) and len(domains) <= RETRY_DOMAINS:
            requests = [Scope(scope.tenant, domain) for domain in domains]
        names = [retry_request(r) for r in requests] or [""]  # nothing waits: the event only
        for i, name in enumerate(names):
            await self._changed(ChangeKind.QUEUE, name, [event] if i == 0 else [])
        return {"filter": _scope_detail(scope), "waiting": len(docs)}

    async def purge(self, scope: Scope, *, reason: str) -> dict[str, Any]:
        """Bounce every waiting recipient in ``scope`` with ``reason``: each ends
        ``bounced`` with a ``bounced`` event (webhooks, the API), nothing is sent to it."""
        if scope.empty:
            raise Invalid("name what to purge: a tenant, a destination domain or a source IP")
        if not reason.strip():
            raise Invalid("give the reason the senders will see")
        events = await self.waiting.purge(scope, reason.strip())
        now = utcnow()
        summary = Event.of(
            EventType.QUEUE_PURGED,
            tenant=scope.tenant,
            step=(scope.key(), now.isoformat()),
            detail={**_scope_detail(scope), "reason": reason.strip(), "purged": len(events)},
            at=now,
        )
        await self._changed(ChangeKind.QUEUE, "", [*events, summary])
        return {"filter": _scope_detail(scope), "purged": len(events), "reason": reason.strip()}

    async def move(
        self, scope: Scope, pool: str | None, *, expires_in: float | None = None
    ) -> dict[str, Any]:
        """Send the mail of a tenant or destination domain (waiting and new) from ``pool``;
        ``pool`` None lifts the move."""
        if scope.source_ip or scope.provider or not (scope.tenant or scope.domain):
            raise Invalid("a move takes a tenant, a destination domain, or both")
        _check_expiry(expires_in)
        if pool is None:
            doc = await self.controls.remove(Action.MOVE, scope)
            if doc is None:
                raise NotFound(f"no move of {scope.describe()}")
            await self._changed(ChangeKind.QUEUE, "")
            return {**control_view(doc), "lifted": True}
        check_name(pool, "pool")
        stored = {p["_id"] for p in await self.provisioner.pools.all()}
        if pool != DEFAULT_POOL and pool not in stored:
            raise Invalid(f"no pool {pool} (hato pool add)")
        doc = await self.controls.put(
            Action.MOVE, scope, pool=pool, reason=f"moved to pool {pool}", expires_in=expires_in
        )
        # What waits for a retry goes now, through the new pool.
        await self._changed(
            ChangeKind.QUEUE, retry_request(scope), [_queue_event(EventType.QUEUE_MOVED, doc)]
        )
        return control_view(doc)

    async def lift_control(self, control: str) -> None:
        """Lift any control by its id (what a rule started, too)."""
        if not await self.controls.remove_id(control):
            raise NotFound(f"no queue control {control}")
        await self._changed(ChangeKind.QUEUE, "")


def vars_of(scope: Scope) -> dict[str, str]:
    return {
        "tenant": scope.tenant,
        "domain": scope.domain,
        "source_ip": scope.source_ip,
        "provider": scope.provider,
    }


def _scope_detail(scope: Scope) -> dict[str, str | int | float | bool | None]:
    return {k: v for k, v in vars_of(scope).items() if v}


def _check_expiry(expires_in: float | None) -> None:
    if expires_in is not None and not 0 < expires_in <= 366 * 86400:
        raise Invalid("an expiry is a number of seconds, more than 0 and at most a year")


def _queue_event(type_: EventType, doc: dict[str, Any], *, at: datetime | None = None) -> Event:
    """The event of an operator's queue control (tenant "" when it is not a tenant's)."""
    expires = doc.get("expires_at")
    return Event.of(
        type_,
        tenant=doc.get("tenant") or "",
        step=(doc["_id"], (at or doc["created_at"]).isoformat()),
        detail={
            "control": doc["_id"],
            "action": doc["action"],
            **{k: doc[k] for k in ("tenant", "domain", "source_ip", "provider") if doc.get(k)},
            **({"pool": doc["pool"]} if doc.get("pool") else {}),
            "reason": doc.get("reason", ""),
            "expires_at": expires.isoformat() if expires else None,
        },
        at=at,
    )


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)

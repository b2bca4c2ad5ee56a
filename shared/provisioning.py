"""Provisioning rules shared by the ``hato`` command and the admin HTTP API: creating and
changing tenants (which may only name pools that exist), pool members, adding a sending
domain (with its first DKIM key), generating keys, verifying domains through DNS.

Every operation checks all it needs before it writes, so a refused one leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import dkim
from shared.directory import Directory, Pools, TenantLimits
from shared.dns import KeyCheck, check_dkim, records_for
from shared.errors import HatoError
from shared.schemas import Event, EventType
from shared.secrets import SecretBox
from shared.settings import DnsSettings


class ProvisioningError(HatoError):
    """Raised when a provisioning request cannot be carried out; the message says why."""


class NotFound(ProvisioningError):
    """Raised when the tenant, domain or pool a request is about does not exist."""


class Conflict(ProvisioningError):
    """Raised when a request would take or replace what exists (a tenant's name, another
    tenant's domain, a selector in use)."""


class Invalid(ProvisioningError):
    """Raised when a request names something unusable (a pool that does not exist, an
    address that is no IP)."""


DEFAULT_POOL = "default"  # every installation has it: a dispatcher serves it with its own IPs


_KEY_EVENTS = {
    dkim.PENDING: EventType.DKIM_KEY_PENDING,
    dkim.ACTIVE: EventType.DKIM_KEY_ACTIVATED,
    dkim.RETIRED: EventType.DKIM_KEY_RETIRED,
}


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A step in a key's life: ``pending`` (publish record_value at record_name),
    ``active`` (it signs now) or ``retired``."""

    kind: str
    tenant: str
    domain: str
    selector: str
    algorithm: str
    record_name: str
    record_value: str

    def event(self) -> Event:
        """The timeline event that tells the domain's owner (with the record to publish)."""
        return Event.of(
            _KEY_EVENTS[self.kind],
            tenant=self.tenant,
            step=(self.domain, self.selector),  # one event per key and step of its life
            detail={
                "domain": self.domain,
                "selector": self.selector,
                "algorithm": self.algorithm,
                "record_name": self.record_name,
                "record_value": self.record_value,
            },
        )

    @classmethod
    def of(
        cls, kind: str, doc: dict[str, Any], selector: str, algorithm: str, public: str
    ) -> KeyChange:
        value = dkim.txt_record_value({"public_key": public, "algorithm": algorithm})
        return cls(
            kind,
            doc["tenant"],
            doc["_id"],
            selector,
            algorithm,
            dkim.txt_record_name(doc["_id"], selector),
            value,
        )


def _new_selector(algorithm: str, taken: set[str]) -> str:
    base = datetime.now(UTC).strftime("h%Y%m%d") + ("e" if algorithm == dkim.ED25519 else "r")
    selector, n = base, 1
    while selector in taken:
        n += 1
        selector = f"{base}{n}"
    return selector


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise Invalid(f"not a network: {value!r}") from None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Provisioner:
    def __init__(
        self, directory: Directory, pools: Pools, box: SecretBox | None, dns: DnsSettings
    ) -> None:
        self.directory = directory
        self.pools = pools
        self.box = box
        self.dns = dns

    # -- tenants and pools ---------------------------------------------------------------

    async def pool_names(self) -> set[str]:
        """The pools that exist: ``default`` and every pool with a document."""
        return {DEFAULT_POOL} | {p["_id"] for p in await self.pools.all()}

    async def _check_pools(self, names: Iterable[str]) -> None:
        missing = sorted(set(names) - await self.pool_names())
        if missing:
            raise Invalid(
                f"no pool {', '.join(missing)}: create it first "
                f"(hato pool add {missing[0]} --member IP[=EHLO_NAME])"
            )

    async def create_tenant(
        self,
        name: str,
        *,
        pool: str = DEFAULT_POOL,
        networks: Sequence[str] = (),
        limits: TenantLimits | None = None,
        signing_domain: str | None = None,
        other_pools: Sequence[str] = (),
    ) -> dict[str, Any]:
        """A new tenant; an existing name is a Conflict (change a tenant with update_tenant)."""
        if await self.directory.tenant(name) is not None:
            raise Conflict(f"tenant {name} exists (change it with: hato tenant set {name} ...)")
        await self._check_pools([pool, *other_pools])
        return await self.directory.upsert_tenant(
            name,
            pool=pool,
            networks=[_cidr(n) for n in networks],
            limits=limits,
            signing_domain=signing_domain,
            other_pools=other_pools,
        )

    async def update_tenant(
        self,
        name: str,
        *,
        pool: str | None = None,
        limits: TenantLimits | None = None,
        signing_domain: str | None = None,
        other_pools: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Change what is given of a tenant and keep the rest (networks change one by one)."""
        if await self.directory.tenant(name) is None:
            raise NotFound(f"unknown tenant {name}")
        await self._check_pools([*([pool] if pool else []), *(other_pools or [])])
        return await self.directory.upsert_tenant(
            name,
            pool=pool,
            limits=limits,
            signing_domain=signing_domain,
            other_pools=other_pools,
        )

    async def add_pool_member(
        self, pool: str, ip: str, *, helo: str | None = None, warmup: Sequence[int] = ()
    ) -> dict[str, Any]:
        """Add a source IP to a pool (creating the pool), or replace that member."""
        try:
            address = str(ipaddress.ip_address(ip))
        except ValueError:
            raise Invalid(f"not an IP address: {ip!r}") from None
        if any(n <= 0 for n in warmup):
            raise Invalid("warm-up caps are messages per day: positive numbers")
        member = {
            "ip": address,
            "helo": helo or None,
            "started_at": datetime.now(UTC),
            "warmup": list(warmup),
        }
        await self.pools.add_member(pool, member)
        return member

    async def remove_pool_member(self, pool: str, ip: str) -> None:
        if not await self.pools.remove_member(pool, ip):
            raise NotFound(f"pool {pool} has no member {ip}")

    # -- domains and keys ---------------------------------------------------------------

    def _box(self) -> SecretBox:
        if self.box is None:
            raise ProvisioningError(
                "no master key is configured (HATO_MASTER_KEY_FILE): DKIM keys cannot be sealed"
            )
        return self.box

    async def add_domain(
        self, domain: str, *, tenant: str, verified: bool = False, selector: str = "hato"
    ) -> dict[str, Any]:
        """Give ``domain`` to ``tenant`` (with a DKIM key unless it has one); the domain doc.
        The key is made before anything is written: a refusal leaves no domain behind."""
        domain = domain.lower().rstrip(".")
        if await self.directory.tenant(tenant) is None:
            raise NotFound(f"unknown tenant {tenant}")
        existing = await self.directory.domain(domain)
        if existing and existing["tenant"] != tenant:
            raise Conflict(f"{domain} belongs to tenant {existing['tenant']}")
        first_key = None
        if not (existing or {}).get("dkim"):
            box = self._box()
            key = await asyncio.to_thread(dkim.generate, domain, selector, dkim.RSA)
            first_key = dkim.to_document(key, box, state=dkim.ACTIVE)
        await self.directory.upsert_domain(
            domain,
            tenant=tenant,
            verified=verified or bool(existing and existing["verified"]),
            dkim=[first_key] if first_key else None,
        )
        doc = await self.directory.domain(domain)
        assert doc is not None
        return doc

    async def generate_key(
        self, domain: str, selector: str | None = None, algorithm: str = dkim.RSA
    ) -> KeyChange:
        """A new key: active at once when the domain has no active key of that algorithm,
        else pending until its record is published (a rotation)."""
        box = self._box()
        doc = await self.directory.domain(domain)
        if doc is None:
            raise NotFound(f"unknown domain {domain}")
        keys = doc.get("dkim", [])
        selector = selector or _new_selector(algorithm, {k["selector"] for k in keys})
        if any(k["selector"] == selector for k in keys):
            raise Conflict(f"{domain} already has a key with selector {selector}")
        has_active = any(
            k["algorithm"] == algorithm and dkim.status(k) == dkim.ACTIVE for k in keys
        )
        state = dkim.PENDING if has_active else dkim.ACTIVE
        key = await asyncio.to_thread(dkim.generate, doc["_id"], selector, algorithm)
        await self.directory.add_dkim_key(domain, dkim.to_document(key, box, state=state))
        return KeyChange.of(state, doc, key.selector, key.algorithm, key.public_b64)

    async def rotate(self, domain: str, algorithm: str = dkim.RSA) -> KeyChange:
        """Start a rotation: a pending key that takes over once DNS shows its record."""
        doc = await self.directory.domain(domain)
        if doc is None:
            raise NotFound(f"unknown domain {domain}")
        if any(
            k["algorithm"] == algorithm and dkim.status(k) == dkim.PENDING
            for k in doc.get("dkim", [])
        ):
            raise Conflict(f"{domain} already has a pending {algorithm} key")
        return await self.generate_key(domain, None, algorithm)

    async def promote(self, domain: str) -> list[KeyChange]:
        """Activate each pending key whose record is published; the active key of the same
        algorithm it replaces retires."""
        doc = await self.directory.domain(domain)
        if doc is None:
            raise NotFound(f"unknown domain {domain}")
        keys = [dict(k) for k in doc.get("dkim", [])]
        pending = [k for k in keys if dkim.status(k) == dkim.PENDING]
        if not pending:
            return []
        checks = await check_dkim({"_id": doc["_id"], "dkim": pending}, self.dns)
        found = {c.selector for c in checks if c.status == "found"}
        changes, now = [], datetime.now(UTC)
        for new in (k for k in pending if k["selector"] in found):
            for old in keys:
                if old["algorithm"] == new["algorithm"] and dkim.status(old) == dkim.ACTIVE:
                    old.update(status=dkim.RETIRED, active=False, retired_at=now)
                    changes.append(
                        KeyChange.of(
                            dkim.RETIRED, doc, old["selector"], old["algorithm"], old["public_key"]
                        )
                    )
            new.update(status=dkim.ACTIVE, activated_at=now)
            changes.append(
                KeyChange.of(dkim.ACTIVE, doc, new["selector"], new["algorithm"], new["public_key"])
            )
        if changes:
            await self.directory.set_dkim_keys(domain, keys)
        return changes

    async def rotation_pass(self, rotate_after_days: int) -> list[KeyChange]:
        """For every domain: promote published keys; start rotations of keys too old."""
        changes: list[KeyChange] = []
        cutoff = datetime.now(UTC) - timedelta(days=rotate_after_days)
        for doc in await self.directory.domains():
            changes += await self.promote(doc["_id"])
            if not rotate_after_days:
                continue
            fresh = await self.directory.domain(doc["_id"]) or doc
            keys = fresh.get("dkim", [])
            for algorithm in {k["algorithm"] for k in keys}:
                mine = [k for k in keys if k["algorithm"] == algorithm]
                active = [k for k in mine if dkim.status(k) == dkim.ACTIVE]
                if any(dkim.status(k) == dkim.PENDING for k in mine) or not active:
                    continue
                since = active[0].get("activated_at") or active[0].get("created_at")
                if since is not None and _aware(since) < cutoff:
                    changes.append(await self.rotate(doc["_id"], algorithm))
        return changes

    async def check(self, domain: str) -> list[KeyCheck]:
        """The DNS state of every key that is not retired."""
        doc = await self.directory.domain(domain)
        if doc is None:
            raise NotFound(f"unknown domain {domain}")
        live = [k for k in doc.get("dkim", []) if dkim.status(k) != dkim.RETIRED]
        return await check_dkim({"_id": doc["_id"], "dkim": live}, self.dns)

    def records(self, domain: dict[str, Any]) -> list[dict[str, str]]:
        return [r.as_dict() for r in records_for(domain, self.dns)]

    async def verify(self, domain: str) -> tuple[bool, list[KeyCheck]]:
        """Look the DKIM records up; a domain with one found becomes verified."""
        doc = await self.directory.domain(domain)
        if doc is None:
            raise NotFound(f"unknown domain {domain}")
        checks = await check_dkim(doc, self.dns)
        verified = any(c.status == "found" for c in checks)
        if verified and not doc.get("verified"):
            await self.directory.mark_verified(domain)
        return verified or bool(doc.get("verified")), checks

"""Who may send what: tenants, their networks, limits, domains (with DKIM keys), SMTP
credentials and API keys — the collections the admin command and API own. The suppression
list has its own repository, ``store.suppressions`` (shared/suppressions.py).

==============  ================================================================
collection      what
==============  ================================================================
tenants         name, IP pool, authorised source networks (CIDR), limits
domains         sending domains: owner, verified, DKIM keys (private keys sealed)
credentials     SMTP users: tenant, Argon2id password hash, allowed From
api_keys        by visible prefix: tenant, SHA-256 of the key, allowed From
console_users   people who sign in to the web console: tenant (none: an operator),
                Argon2id password hash, failed sign-ins and lock-out
console_sessions  console sign-ins: SHA-256 of the session cookie, user, CSRF token, expiry
idempotency     (tenant, Idempotency-Key): the first response to a request
rates           counts per period (shared/rates.py): a tenant's messages this hour,
                a source IP's today
==============  ================================================================
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo.errors
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from shared import credentials
from shared.batching import Batcher
from shared.rates import increment
from shared.schemas import utcnow

# The widest networks a tenant may relay from without a password, unless the operator says so:
# a /0 would make Hato an open relay for the whole internet.
WIDEST_PREFIX = {4: 8, 6: 32}


def relay_network(value: str, *, wide: bool = False) -> str:
    """``value`` as a CIDR network a tenant may relay from; ValueError if it is not one, or
    if it is wider than /8 (IPv4) or /32 (IPv6) and ``wide`` is not given."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not a network: {value!r}") from None
    if network.prefixlen < WIDEST_PREFIX[network.version] and not wide:
        raise ValueError(
            f"{network} is wider than /{WIDEST_PREFIX[network.version]}: every address in it "
            "could relay without a password (allow it explicitly if you mean it)"
        )
    return str(network)


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's limits and content options; None means the service default."""

    max_message_size: int | None = None
    max_recipients: int | None = None
    messages_per_hour: int | None = None
    max_age: float | None = None  # seconds a deferred recipient is retried
    retention_days: float | None = None  # days a message is kept after its final state
    # A JSON message in ISO-2022-JP with characters beyond JIS X 0208 (①, 髙, 﨑): written as
    # "cp50220" (Microsoft's extension, the default), sent in "utf-8" instead, or "refuse"d.
    jis_extensions: str | None = None
    # A message without Message-ID or Date: "add" them (the default) or "refuse" it.
    missing_headers: str | None = None
    # The list a message without a word of its own is sent to with one-click unsubscribe
    # (shared/unsubscribe.py); None: no unsubscribe unless the message asks.
    unsubscribe_list: str | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client authenticated as: the tenant, and the From addresses or domains the
    credential is restricted to (empty: any of the tenant's domains)."""

    tenant: str
    pool: str
    limits: TenantLimits = field(default_factory=TenantLimits)
    allowed_from: tuple[str, ...] = ()
    credential: str = ""  # "smtp:<user>", "key:<prefix>", "network:<cidr>"
    other_pools: tuple[str, ...] = ()  # pools a message may name instead of ``pool``

    def may_use_pool(self, pool: str) -> bool:
        return pool == self.pool or pool in self.other_pools

    def allows_from(self, address: str) -> bool:
        if not self.allowed_from:
            return True
        address = address.lower()
        domain = address.rpartition("@")[2]
        return any(a == address or a == domain or a == f"@{domain}" for a in self.allowed_from)


class DuplicateError(Exception):
    """Raised when creating something whose name is taken."""


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def identity_of(doc: dict[str, Any], **kw: Any) -> Identity:
    """The identity of a tenant document (``kw``: the credential's own restrictions)."""
    return Identity(
        doc["_id"],
        doc.get("pool", "default"),
        tenant_limits(doc),
        other_pools=tuple(doc.get("other_pools", ())),
        **kw,
    )


def tenant_limits(doc: dict[str, Any]) -> TenantLimits:
    return TenantLimits(**{k: v for k, v in (doc.get("limits") or {}).items() if v is not None})


class Directory:
    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db

    async def ensure_indexes(self) -> None:
        await self.db.domains.create_index([("tenant", ASCENDING)])
        await self.db.credentials.create_index([("tenant", ASCENDING)])
        await self.db.api_keys.create_index([("tenant", ASCENDING)])
        await self.db.idempotency.create_index([("created_at", ASCENDING)])
        try:  # answers are kept a day (Idempotency.ttl); FerretDB: Idempotency.purge()
            await self.db.idempotency.create_index(
                [("expires_at", ASCENDING)], name="idempotency_ttl", expireAfterSeconds=0
            )
        except pymongo.errors.OperationFailure:
            await self.db.idempotency.create_index([("expires_at", ASCENDING)])

    # -- tenants -------------------------------------------------------------------------

    async def upsert_tenant(
        self,
        name: str,
        *,
        pool: str | None = None,
        networks: Sequence[str] | None = None,
        limits: TenantLimits | None = None,
        signing_domain: str | None = None,
        other_pools: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Create or update a tenant; ``signing_domain`` is the domain whose key signs mail
        whose From domain has none (not DMARC-aligned)."""
        fields: dict[str, Any] = {"updated_at": utcnow()}
        if other_pools is not None:
            fields["other_pools"] = list(other_pools)
        if signing_domain is not None:
            fields["signing_domain"] = signing_domain.lower() or None
        if pool is not None:
            fields["pool"] = pool
        if networks is not None:
            fields["networks"] = list(networks)
        if limits is not None:
            for k in (
                "max_message_size",
                "max_recipients",
                "messages_per_hour",
                "max_age",
                "retention_days",
                "jis_extensions",
                "missing_headers",
                "unsubscribe_list",
            ):
                if getattr(limits, k) is not None:
                    fields[f"limits.{k}"] = getattr(limits, k)
        defaults: dict[str, Any] = {"created_at": utcnow()}
        if pool is None:
            defaults["pool"] = "default"
        if networks is None:
            defaults["networks"] = []
        return await self.db.tenants.find_one_and_update(
            {"_id": name},
            {"$set": fields, "$setOnInsert": defaults},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )

    async def tenant(self, name: str) -> dict[str, Any] | None:
        return await self.db.tenants.find_one({"_id": name})

    async def tenants(self) -> list[dict[str, Any]]:
        return await self.db.tenants.find({}).sort("_id", ASCENDING).to_list()

    async def delete_tenant(self, name: str) -> bool:
        return (await self.db.tenants.delete_one({"_id": name})).deleted_count > 0

    async def add_network(self, tenant: str, cidr: str) -> None:
        await self.db.tenants.update_one({"_id": tenant}, {"$addToSet": {"networks": cidr}})

    async def remove_network(self, tenant: str, cidr: str) -> None:
        await self.db.tenants.update_one({"_id": tenant}, {"$pull": {"networks": cidr}})

    async def identity(self, tenant: str, **kw: Any) -> Identity | None:
        doc = await self.tenant(tenant)
        return None if doc is None else identity_of(doc, **kw)

    # -- domains -------------------------------------------------------------------------

    async def upsert_domain(
        self,
        domain: str,
        *,
        tenant: str,
        verified: bool,
        dkim: list[dict[str, Any]] | None = None,
    ) -> None:
        """Create or update a domain; ``dkim`` (when given) replaces its key list."""
        fields: dict[str, Any] = {"tenant": tenant, "verified": verified, "updated_at": utcnow()}
        on_insert: dict[str, Any] = {"created_at": utcnow()}
        if dkim is not None:
            fields["dkim"] = dkim
        else:
            on_insert["dkim"] = []
        await self.db.domains.update_one(
            {"_id": domain.lower()}, {"$set": fields, "$setOnInsert": on_insert}, upsert=True
        )

    async def mark_verified(self, domain: str, verified: bool = True) -> None:
        await self.db.domains.update_one(
            {"_id": domain.lower()}, {"$set": {"verified": verified, "verified_at": utcnow()}}
        )

    async def domain(self, domain: str) -> dict[str, Any] | None:
        return await self.db.domains.find_one({"_id": domain.lower()})

    async def domains(self, tenant: str | None = None) -> list[dict[str, Any]]:
        query = {"tenant": tenant} if tenant else {}
        return await self.db.domains.find(query).sort("_id", ASCENDING).to_list()

    async def delete_domain(self, domain: str) -> bool:
        return (await self.db.domains.delete_one({"_id": domain.lower()})).deleted_count > 0

    async def set_dkim_keys(self, domain: str, keys: list[dict[str, Any]]) -> None:
        """Replace a domain's key list (after a rotation step changed statuses)."""
        await self.db.domains.update_one({"_id": domain.lower()}, {"$set": {"dkim": keys}})

    async def add_dkim_key(self, domain: str, key: dict[str, Any]) -> None:
        """Add (or replace, by selector) one DKIM key of a domain."""
        await self.db.domains.update_one(
            {"_id": domain.lower()}, {"$pull": {"dkim": {"selector": key["selector"]}}}
        )
        await self.db.domains.update_one({"_id": domain.lower()}, {"$push": {"dkim": key}})

    # -- SMTP credentials ----------------------------------------------------------------

    async def add_credential(
        self,
        tenant: str,
        username: str,
        *,
        allowed_from: Iterable[str] = (),
        password: str | None = None,
    ) -> str:
        """Create an SMTP user; returns its password (shown once, stored hashed)."""
        password = password or credentials.new_password()
        try:
            await self.db.credentials.insert_one(
                {
                    "_id": username,
                    "tenant": tenant,
                    "password_hash": credentials.hash_password(password),
                    "allowed_from": [a.lower() for a in allowed_from],
                    "created_at": utcnow(),
                }
            )
        except pymongo.errors.DuplicateKeyError:
            raise DuplicateError(f"SMTP user {username} exists") from None
        return password

    async def credential(self, username: str) -> dict[str, Any] | None:
        return await self.db.credentials.find_one({"_id": username})

    async def credentials(self, tenant: str | None = None) -> list[dict[str, Any]]:
        query = {"tenant": tenant} if tenant else {}
        return (
            await self.db.credentials.find(query, {"password_hash": 0})
            .sort("_id", ASCENDING)
            .to_list()
        )

    async def delete_credential(self, username: str, tenant: str | None = None) -> bool:
        query: dict[str, Any] = {"_id": username}
        if tenant:
            query["tenant"] = tenant
        return (await self.db.credentials.delete_one(query)).deleted_count > 0

    # -- console users ---------------------------------------------------------------------

    async def add_console_user(
        self, email: str, *, tenant: str | None, password: str | None = None
    ) -> str:
        """Create a console user (``tenant`` None: an operator, who sees every tenant);
        returns its password (shown once, stored hashed as SMTP passwords are)."""
        password = password or credentials.new_password()
        try:
            await self.db.console_users.insert_one(
                {
                    "_id": email.lower(),
                    "tenant": tenant,
                    "password_hash": credentials.hash_password(password),
                    "failures": 0,
                    "locked_until": None,
                    "created_at": utcnow(),
                }
            )
        except pymongo.errors.DuplicateKeyError:
            raise DuplicateError(f"console user {email} exists") from None
        return password

    async def console_user(self, email: str) -> dict[str, Any] | None:
        return await self.db.console_users.find_one({"_id": email.lower()})

    async def console_users(self, tenant: str | None = None) -> list[dict[str, Any]]:
        query = {"tenant": tenant} if tenant else {}
        cursor = self.db.console_users.find(query, {"password_hash": 0}).sort("_id", ASCENDING)
        return await cursor.to_list()

    async def delete_console_user(self, email: str, tenant: str | None = None) -> bool:
        query: dict[str, Any] = {"_id": email.lower()}
        if tenant:
            query["tenant"] = tenant
        deleted = (await self.db.console_users.delete_one(query)).deleted_count > 0
        if deleted:
            await self.db.console_sessions.delete_many({"user": email.lower()})
        return deleted

    async def console_sign_in_failed(
        self, email: str, *, max_failures: int, lock_for: timedelta
    ) -> None:
        """Count a failed sign-in; the ``max_failures``-th in a row locks the user out for
        ``lock_for``."""
        doc = await self.db.console_users.find_one_and_update(
            {"_id": email.lower()},
            {"$inc": {"failures": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None and doc.get("failures", 0) >= max_failures:
            await self.db.console_users.update_one(
                {"_id": email.lower()},
                {"$set": {"failures": 0, "locked_until": utcnow() + lock_for}},
            )

    async def console_signed_in(self, email: str) -> None:
        await self.db.console_users.update_one(
            {"_id": email.lower()}, {"$set": {"failures": 0, "locked_until": None}}
        )

    # -- API keys --------------------------------------------------------------------------

    async def add_api_key(
        self, tenant: str, *, name: str = "", allowed_from: Iterable[str] = ()
    ) -> tuple[str, str]:
        """Create an API key; returns (prefix, token). Only the token's hash is stored."""
        key = credentials.new_api_key()
        await self.db.api_keys.insert_one(
            {
                "_id": key.prefix,
                "tenant": tenant,
                "digest": key.digest,
                "name": name,
                "allowed_from": [a.lower() for a in allowed_from],
                "created_at": utcnow(),
            }
        )
        return key.prefix, key.token

    async def api_key_identity(self, token: str) -> Identity | None:
        """The identity an API key stands for, or None when it is not a valid key."""
        prefix = credentials.api_key_prefix(token)
        if prefix is None:
            return None
        doc = await self.db.api_keys.find_one({"_id": prefix})
        if doc is None or not credentials.digest_matches(token, doc["digest"]):
            return None
        return await self.identity(
            doc["tenant"],
            allowed_from=tuple(doc.get("allowed_from", ())),
            credential=f"key:{prefix}",
        )

    async def api_keys(self, tenant: str | None = None) -> list[dict[str, Any]]:
        query = {"tenant": tenant} if tenant else {}
        return await self.db.api_keys.find(query, {"digest": 0}).sort("_id", ASCENDING).to_list()

    async def revoke_api_key(self, prefix: str, tenant: str | None = None) -> bool:
        query: dict[str, Any] = {"_id": prefix}
        if tenant:
            query["tenant"] = tenant
        return (await self.db.api_keys.delete_one(query)).deleted_count > 0


class IdempotencyConflict(Exception):
    """Raised when an Idempotency-Key is in use by a request still running (``pending``) or
    was used with a different request (``mismatch``)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Idempotency:
    """The first response to each (tenant, Idempotency-Key), so a retried request gets it
    again instead of sending twice.

    A key is claimed for ``lease`` seconds: a request that dies holding it (a crash between
    claim and answer) does not block the key for ever — once the lease ran out, a retry takes
    it over (at least once: that retry may send what the dead request had accepted). Answers
    are kept ``ttl`` seconds (a day), then the key is free again."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, lease: float = 120, ttl: float = 86_400
    ) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease)
        self.ttl = timedelta(seconds=ttl)

    async def begin(
        self, tenant: str, key: str, request_hash: str, *, _tries: int = 3
    ) -> dict[str, Any] | None:
        """Claim the key: None when this request is the first (go ahead), else the stored
        response. Raises IdempotencyConflict."""
        _id = f"{tenant}:{key}"
        at = utcnow()
        claim = {
            "request_hash": request_hash,
            "state": "pending",
            "created_at": at,
            "expires_at": at + self.lease,  # the lease; then the answer's retention
        }
        try:
            await self.db.idempotency.insert_one({"_id": _id, **claim})
            return None
        except pymongo.errors.DuplicateKeyError:
            doc = await self.db.idempotency.find_one({"_id": _id})
        if doc is None:  # abandoned between the two calls
            return await self._again(tenant, key, request_hash, _tries)
        expires = doc.get("expires_at")
        if expires is not None and _aware(expires) <= at:
            # A lease that ran out, or an answer past its day: the key is free; the update
            # is conditional so that two retries do not both take it.
            taken = await self.db.idempotency.update_one(
                {"_id": _id, "expires_at": expires}, {"$set": claim, "$unset": {"body": ""}}
            )
            if taken.modified_count == 1:
                return None
            return await self._again(tenant, key, request_hash, _tries)
        if doc["request_hash"] != request_hash:
            raise IdempotencyConflict("mismatch")
        if doc["state"] != "done":
            raise IdempotencyConflict("pending")
        return doc

    async def _again(
        self, tenant: str, key: str, request_hash: str, tries: int
    ) -> dict[str, Any] | None:
        if tries <= 0:
            raise IdempotencyConflict("pending")
        return await self.begin(tenant, key, request_hash, _tries=tries - 1)

    async def finish(self, tenant: str, key: str, status: int, body: Any) -> None:
        at = utcnow()
        await self.db.idempotency.update_one(
            {"_id": f"{tenant}:{key}"},
            {
                "$set": {
                    "state": "done",
                    "status": status,
                    "body": body,
                    "finished_at": at,
                    "expires_at": at + self.ttl,
                }
            },
        )

    async def purge(self) -> int:
        """Delete what has expired (the TTL index's work on a server without one)."""
        result = await self.db.idempotency.delete_many({"expires_at": {"$lt": utcnow()}})
        return result.deleted_count

    async def abandon(self, tenant: str, key: str) -> None:
        """Release a key whose request failed before anything was accepted."""
        await self.db.idempotency.delete_one({"_id": f"{tenant}:{key}", "state": "pending"})


class Pools:
    """IP pools (members: source IP, EHLO name, warm-up plan) and the heartbeats of the
    dispatcher instances that own the IPs."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db
        self._sent: Batcher[tuple[str, int], None] = Batcher(self._sent_batch, max_batch=500)

    async def upsert(self, name: str, members: Sequence[dict[str, Any]]) -> None:
        await self.db.pools.update_one(
            {"_id": name},
            {
                "$set": {"members": list(members), "updated_at": utcnow()},
                "$setOnInsert": {"created_at": utcnow()},
            },
            upsert=True,
        )

    async def add_member(self, name: str, member: dict[str, Any]) -> None:
        doc = await self.db.pools.find_one({"_id": name}) or {"members": []}
        members = [m for m in doc["members"] if m["ip"] != member["ip"]] + [member]
        await self.upsert(name, members)

    async def remove_member(self, name: str, ip: str) -> bool:
        """Take a source IP out of a pool; False when it was not a member."""
        doc = await self.db.pools.find_one({"_id": name})
        if doc is None or not any(m["ip"] == ip for m in doc["members"]):
            return False
        await self.upsert(name, [m for m in doc["members"] if m["ip"] != ip])
        return True

    async def all(self) -> list[dict[str, Any]]:
        return await self.db.pools.find({}).sort("_id", ASCENDING).to_list()

    async def dispatchers(self) -> list[dict[str, Any]]:
        """Every dispatcher instance's last heartbeat: its name, IPs and ``seen_at``."""
        return await self.db.dispatchers.find({}).sort("_id", ASCENDING).to_list()

    async def beat(self, instance: str, ips: Sequence[str], pools: Sequence[str] = ()) -> None:
        """A dispatcher instance is alive, owns ``ips`` and serves ``pools``."""
        await self.db.dispatchers.update_one(
            {"_id": instance},
            {"$set": {"ips": list(ips), "pools": list(pools), "seen_at": utcnow()}},
            upsert=True,
        )

    async def live_dispatchers(self, within: float) -> list[dict[str, Any]]:
        """The instances heard from in the last ``within`` seconds."""
        since = utcnow() - timedelta(seconds=within)
        return await self.db.dispatchers.find({"seen_at": {"$gte": since}}).to_list()

    async def leave(self, instance: str) -> None:
        await self.db.dispatchers.delete_one({"_id": instance})

    async def live_ips(self, within: float) -> set[str]:
        """Source IPs owned by dispatcher instances heard from in the last ``within`` seconds."""
        since = utcnow() - timedelta(seconds=within)
        docs = self.db.dispatchers.find({"seen_at": {"$gte": since}}, {"ips": 1})
        return {ip async for d in docs for ip in d.get("ips", [])}

    async def add_sent(self, ip: str, n: int) -> None:
        """Count messages sent from ``ip`` today (warm-up caps); concurrent deliveries share
        one increment per IP."""
        await self._sent.submit((ip, n))

    async def _sent_batch(self, items: list[tuple[str, int]]) -> None:
        day = utcnow().strftime("%Y%m%d")
        totals: dict[str, int] = {}
        for ip, n in items:
            totals[ip] = totals.get(ip, 0) + n
        for ip, n in totals.items():
            await increment(self.db.rates, f"ip:{ip}:{day}", n, {"$set": {"ip": ip, "day": day}})

    async def sent_today(self) -> dict[str, int]:
        day = utcnow().strftime("%Y%m%d")
        docs = self.db.rates.find({"day": day, "ip": {"$exists": True}})
        return {d["ip"]: int(d["count"]) async for d in docs}

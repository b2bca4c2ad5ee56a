"""``hato``: the admin command. Tenants, networks, limits, IP pools, domains and their DNS
records, DKIM keys, SMTP credentials, API keys, suppressions, message state, and dev mode.

Reads the same ``HATO_*`` settings as the services (``HATO_MONGODB_URL``,
``HATO_MASTER_KEY_FILE``, ``HATO_DNS_NAMESERVERS`` ...), taking what the environment does
not set from the settings file of the dev stack (``var/dev.env``, which ``make up`` writes;
``HATO_ENV_FILE`` names another, or none when empty). Changes are announced on the broker, so
running services apply them at once. The admin HTTP API (``/admin/v1``) offers the same
operations.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hato.amqp_users import Management, ManagementError, endpoint, team_url
from shared import dkim
from shared.broker import Broker, deliver_queue
from shared.directory import DuplicateError, Limits, relay_network
from shared.dns import records_for
from shared.errors import Unavailable
from shared.provisioning import DEFAULT_POOL, KeyChange, Provisioner, ProvisioningError
from shared.schemas import Changed, ChangeKind, Event
from shared.secrets import SecretBox, SecretsError, generate_master_key
from shared.settings import BrokerSettings, DnsSettings, SecretsSettings, StoreSettings
from shared.store import Store
from shared.views import HEARTBEAT_WITHIN, message_view

DEV_TENANT = "dev"
DEV_DOMAIN = "hato.test"
DEV_SELECTOR = "dev"
DEV_NETWORK = "127.0.0.1/32"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = (
    "The admin command of Hato, a self-hosted mail relay: tenants, networks, IP pools, "
    "domains, DKIM keys, SMTP credentials, API keys, suppressions, message state, dev mode."
)


def env_file() -> Path | None:
    """The settings file to read: ``HATO_ENV_FILE`` when set (empty: none), else the dev
    stack's ``var/dev.env`` in the current folder or in the checkout this command runs from."""
    given = os.environ.get("HATO_ENV_FILE")
    if given is not None:
        return Path(given) if given else None
    for folder in (Path.cwd(), PROJECT_ROOT):
        candidate = folder / "var" / "dev.env"
        if candidate.is_file():
            return candidate
    return None


def load_env_file(path: Path | None) -> None:
    """Take the ``HATO_*`` settings the environment does not set from ``path``."""
    if path is None:
        return
    from dotenv import dotenv_values

    for key, value in dotenv_values(path).items():
        if key.startswith("HATO_") and value is not None:
            os.environ.setdefault(key, value)


class DevSettings(BaseSettings):
    """Dev mode: the local DNS server's zone that ``hato dev dns`` publishes to."""

    model_config = SettingsConfigDict(env_prefix="HATO_DEV_", extra="ignore")

    dns_zone: str = Field(
        "", description="Zone file (JSON) of the dev DNS server; empty: none (make up sets it)."
    )
    dns_port: int = Field(5300, ge=1, description="Port of the dev DNS server on 127.0.0.1.")


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    store: StoreSettings = Field(default_factory=StoreSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    dev: DevSettings = Field(default_factory=DevSettings)


class Context:
    """What a command works with: the store, the provisioning rules, and the broker it
    announces changes on."""

    def __init__(self, store: Store, settings: CliSettings) -> None:
        self.store = store
        self.directory = store.directory
        self.settings = settings
        self.box_problem = ""
        try:
            box: SecretBox | None = SecretBox.from_settings(settings.secrets)
        except SecretsError as exc:
            box, self.box_problem = None, str(exc)  # only commands that need it say so
        self.box = box
        self.provisioner = Provisioner(store.directory, store.pools, box, settings.dns)
        self._broker: Broker | None = None
        self._broker_failed = False

    async def broker(self, without: str) -> Broker | None:
        """The broker, connected on first use; None when it cannot be reached, said once with
        ``without``: what that means for the command."""
        if self._broker is None and not self._broker_failed:
            broker = Broker(
                self.settings.broker.model_copy(update={"connect_timeout": 3.0}), name="cli"
            )
            try:
                await broker.connect(topology=False)
                self._broker = broker
            except Unavailable as exc:
                self._broker_failed = True
                _note(f"RabbitMQ cannot be reached ({exc}): {without}")
        return self._broker

    async def announce(self, what: ChangeKind, name: str, events: Sequence[Event] = ()) -> None:
        """Tell running services that ``name`` changed (and write and publish ``events``)."""
        await self.store.insert_events(events)
        broker = await self.broker(
            "running services pick the change up at their next refresh "
            "(ingest 10 s, signer 30 s, dispatcher 5 s)"
        )
        if broker is None:
            return
        try:
            await broker.emit(events)
            await broker.publish(Changed(what=what, name=name))
        except Unavailable as exc:
            _note(f"the change was made but not announced: {exc}")

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.close()


def _out(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def _note(message: str) -> None:
    print(f"hato: {message}", file=sys.stderr)


def _fail(message: str) -> int:
    _note(message)
    return 1


def _limits(args: argparse.Namespace) -> Limits | None:
    limits = Limits(
        args.max_message_size,
        args.max_recipients,
        args.messages_per_hour,
        args.max_age,
        args.retention_days,
    )
    return None if limits == Limits() else limits


def _tenant_line(doc: dict[str, Any]) -> str:
    return (
        f"tenant {doc['_id']}: pool {doc.get('pool')}"
        + (f" (may name {', '.join(doc['other_pools'])})" if doc.get("other_pools") else "")
        + f", networks {', '.join(doc.get('networks', [])) or '-'}"
        + f", limits {json.dumps(doc.get('limits') or {}) if doc.get('limits') else '-'}"
        + (f", signs unaligned with {doc['signing_domain']}" if doc.get("signing_domain") else "")
    )


# -- tenants and networks ---------------------------------------------------------------------


async def tenant_add(ctx: Context, args: argparse.Namespace) -> int:
    doc = await ctx.provisioner.create_tenant(
        args.name,
        pool=args.pool or DEFAULT_POOL,
        networks=[relay_network(n, wide=args.allow_wide_network) for n in args.network or []],
        limits=_limits(args),
        signing_domain=args.signing_domain,
        other_pools=args.other_pool or [],
    )
    await ctx.announce(ChangeKind.TENANTS, args.name)
    print(_tenant_line(doc))
    return 0


async def tenant_set(ctx: Context, args: argparse.Namespace) -> int:
    doc = await ctx.provisioner.update_tenant(
        args.name,
        pool=args.pool,
        limits=_limits(args),
        signing_domain=args.signing_domain,
        other_pools=args.other_pool,
    )
    await ctx.announce(ChangeKind.TENANTS, args.name)
    print(_tenant_line(doc))
    return 0


async def tenant_list(ctx: Context, args: argparse.Namespace) -> int:
    for t in await ctx.directory.tenants():
        print(
            f"{t['_id']}\tpool={t.get('pool')}\tnetworks={','.join(t.get('networks', []))}"
            f"\tlimits={json.dumps(t.get('limits', {}))}"
        )
    return 0


async def network_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        return _fail(f"unknown tenant {args.tenant}")
    network = relay_network(args.cidr, wide=args.allow_wide_network)
    await ctx.directory.add_network(args.tenant, network)
    await ctx.announce(ChangeKind.TENANTS, args.tenant)
    print(f"{args.tenant} relays for {network}")
    return 0


async def network_remove(ctx: Context, args: argparse.Namespace) -> int:
    await ctx.directory.remove_network(args.tenant, _cidr(args.cidr))
    await ctx.announce(ChangeKind.TENANTS, args.tenant)
    print(f"{args.tenant} no longer relays for {_cidr(args.cidr)}")
    return 0


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise ValueError(f"not a network: {value!r}") from None


# -- domains and DKIM -------------------------------------------------------------------------


async def domain_add(ctx: Context, args: argparse.Namespace) -> int:
    doc = await ctx.provisioner.add_domain(
        args.domain, tenant=args.tenant, verified=args.verified, selector=args.selector
    )
    await ctx.announce(ChangeKind.DOMAINS, doc["_id"])
    state = "verified" if doc["verified"] else "not verified yet (publish, then hato domain verify)"
    print(f"domain {doc['_id']}: tenant {args.tenant}, {state}")
    print("Publish these DNS records:")
    for record in records_for(doc, ctx.settings.dns):
        print(f"  {record.zone_line()}    ; {record.purpose}")
    if ctx.settings.dev.dns_zone:
        print(f"(dev mode: hato dev dns publish {doc['_id']} publishes them in the local DNS)")
    return 0


async def domain_verify(ctx: Context, args: argparse.Namespace) -> int:
    verified, checks = await ctx.provisioner.verify(args.domain)
    await ctx.announce(ChangeKind.DOMAINS, args.domain.lower())
    for c in checks:
        print(f"{c.name}: {c.status}")
    print(f"{args.domain}: {'verified' if verified else 'NOT verified'}")
    return 0 if verified else 1


async def domain_list(ctx: Context, args: argparse.Namespace) -> int:
    for d in await ctx.directory.domains(args.tenant):
        selectors = ",".join(k["selector"] for k in d.get("dkim", []))
        print(f"{d['_id']}\ttenant={d['tenant']}\tverified={d.get('verified')}\tdkim={selectors}")
    return 0


async def dkim_generate(ctx: Context, args: argparse.Namespace) -> int:
    change = await ctx.provisioner.generate_key(
        args.domain, args.selector, dkim.ALGORITHMS[args.algorithm]
    )
    await ctx.announce(ChangeKind.DOMAINS, change.domain, [change.event()])
    _print_change(change)
    return 0


async def dkim_rotate(ctx: Context, args: argparse.Namespace) -> int:
    change = await ctx.provisioner.rotate(args.domain, dkim.ALGORITHMS[args.algorithm])
    await ctx.announce(ChangeKind.DOMAINS, change.domain, [change.event()])
    _print_change(change)
    return 0


def _print_change(change: KeyChange) -> None:
    if change.kind == dkim.PENDING:
        print(
            f"new key {change.selector} ({change.algorithm}) is pending: the current key keeps "
            f"signing until this record is published, then this one takes over:"
        )
    else:
        print(f"key {change.selector} ({change.algorithm}) is {change.kind}; publish:")
    print(f'  {change.record_name}. IN TXT "{change.record_value}"')


async def dkim_check(ctx: Context, args: argparse.Namespace) -> int:
    """Look every live key's record up; activate pending keys whose record is published."""
    changes = await ctx.provisioner.promote(args.domain)
    if changes:
        await ctx.announce(ChangeKind.DOMAINS, args.domain.lower(), [c.event() for c in changes])
    checks = await ctx.provisioner.check(args.domain)
    doc = await ctx.directory.domain(args.domain)
    states = {k["selector"]: dkim.status(k) for k in (doc or {}).get("dkim", [])}
    explain = {
        "found": "published, matches",
        "missing": "NOT published: publish the record (hato dkim show)",
        "different": "WRONG: the published record holds another key",
        "dns-error": "DNS lookup failed",
    }
    for c in checks:
        print(f"{c.name} [{states.get(c.selector)}]: {explain[c.status]}")
    for change in changes:
        print(f"key {change.selector}: now {change.kind}")
    unopenable = dkim.unopenable_keys([doc], ctx.box) if doc and ctx.box else []
    for problem in unopenable:  # published or not, the signer cannot use it
        print(f"NOT USABLE: {problem}")
    if doc and ctx.box is None:
        print(f"keys not checked: {ctx.box_problem}")
    return 0 if all(c.status == "found" for c in checks) and not unopenable else 1


async def dkim_show(ctx: Context, args: argparse.Namespace) -> int:
    doc = await ctx.directory.domain(args.domain)
    if doc is None:
        return _fail(f"unknown domain {args.domain}")
    if not doc.get("dkim"):
        return _fail(f"{args.domain} has no DKIM key (hato dkim generate)")
    for record in records_for(doc, ctx.settings.dns):
        if record.type == "TXT" and "._domainkey." in record.name:
            print(record.zone_line())
    return 0


# -- credentials, API keys, suppressions -----------------------------------------------------


async def credential_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        return _fail(f"unknown tenant {args.tenant}")
    password = await ctx.directory.add_credential(
        args.tenant, args.username, allowed_from=args.allow_from or []
    )
    await ctx.announce(ChangeKind.TENANTS, args.tenant)
    _note(f"SMTP user {args.username} for {args.tenant}; its password (shown once) follows")
    print(password)
    return 0


async def credential_list(ctx: Context, args: argparse.Namespace) -> int:
    for c in await ctx.directory.credentials(args.tenant):
        print(
            f"{c['_id']}\ttenant={c['tenant']}\tallowed_from={','.join(c['allowed_from']) or '*'}"
        )
    return 0


async def credential_remove(ctx: Context, args: argparse.Namespace) -> int:
    if not await ctx.directory.delete_credential(args.username):
        return _fail(f"no SMTP user {args.username}")
    await ctx.announce(ChangeKind.TENANTS, "")
    print(f"removed SMTP user {args.username}")
    return 0


async def apikey_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        return _fail(f"unknown tenant {args.tenant}")
    prefix, token = await ctx.directory.add_api_key(
        args.tenant, name=args.name, allowed_from=args.allow_from or []
    )
    await ctx.announce(ChangeKind.TENANTS, args.tenant)
    _note(f"API key {prefix} for {args.tenant}; the key (shown once) follows")
    print(token)
    return 0


async def apikey_list(ctx: Context, args: argparse.Namespace) -> int:
    for k in await ctx.directory.api_keys(args.tenant):
        print(
            f"{k['_id']}\ttenant={k['tenant']}\tname={k.get('name', '')}"
            f"\tallowed_from={','.join(k.get('allowed_from', [])) or '*'}"
        )
    return 0


async def apikey_revoke(ctx: Context, args: argparse.Namespace) -> int:
    if not await ctx.directory.revoke_api_key(args.prefix):
        return _fail(f"no API key {args.prefix}")
    await ctx.announce(ChangeKind.TENANTS, "")
    print(f"revoked API key {args.prefix}")
    return 0


async def suppression_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        return _fail(f"unknown tenant {args.tenant}")
    await ctx.directory.suppress(args.tenant, args.address, reason=args.reason, source="admin")
    print(f"{args.tenant} will not mail {args.address.lower()}")
    return 0


async def suppression_list(ctx: Context, args: argparse.Namespace) -> int:
    for d in await ctx.directory.suppressions(args.tenant, limit=args.limit):
        until = d.get("expires_at")
        print(
            f"{d['address']}\treason={d.get('reason')}\tsource={d.get('source')}"
            f"\tuntil={until.isoformat() if until else 'forever'}"
        )
    return 0


async def suppression_remove(ctx: Context, args: argparse.Namespace) -> int:
    if not await ctx.directory.unsuppress(args.tenant, args.address):
        return _fail(f"{args.address} is not suppressed for {args.tenant}")
    print(f"{args.tenant} may mail {args.address.lower()} again")
    return 0


# -- IP pools ----------------------------------------------------------------------------------


async def pool_add(ctx: Context, args: argparse.Namespace) -> int:
    ip, _, helo = args.member.partition("=")
    try:
        warmup = [int(n) for n in args.warmup.split(",")] if args.warmup else []
    except ValueError:
        return _fail(f"--warmup takes daily caps like 500,1000,2000, not {args.warmup!r}")
    member = await ctx.provisioner.add_pool_member(args.name, ip, helo=helo, warmup=warmup)
    broker = await ctx.broker("the pool's queue is declared when its first mail is signed")
    if broker is not None:  # its mail waits durably from now on, served or not
        try:
            await broker.declare_pool(args.name)
        except Exception as exc:
            _note(f"the queue of pool {args.name} is declared when its first mail is: {exc!r}")
    await ctx.announce(ChangeKind.POOLS, args.name)
    print(
        f"pool {args.name}: member {member['ip']} (EHLO {helo or 'the dispatcher default'})"
        + (f", warm-up {args.warmup} per day" if args.warmup else "")
    )
    print(
        f"its mail is sent by the dispatcher that owns {member['ip']} "
        f"(HATO_DISPATCHER_SOURCE_IPS={member['ip']}); until one runs, it waits in the queue "
        f"{ctx.settings.broker.prefix}.{deliver_queue(args.name)}"
    )
    return 0


async def pool_remove(ctx: Context, args: argparse.Namespace) -> int:
    await ctx.provisioner.remove_pool_member(args.name, args.member)
    await ctx.announce(ChangeKind.POOLS, args.name)
    print(f"pool {args.name}: {args.member} is no longer a member")
    return 0


async def pool_list(ctx: Context, args: argparse.Namespace) -> int:
    """Every pool: its members, the running dispatcher that owns each member IP, the
    dispatchers serving it, and how many jobs wait in its queue."""
    docs = {p["_id"]: p for p in await ctx.store.pools.all()}
    live = await ctx.store.pools.live_dispatchers(HEARTBEAT_WITHIN)
    sent = await ctx.store.pools.sent_today()
    broker = await ctx.broker("how much mail waits is not known")
    now = datetime.now(UTC)
    pools = []
    for name in sorted({DEFAULT_POOL, *docs}):
        owners = {ip: d for d in live for ip in d.get("ips", [])}
        members = []
        for m in docs.get(name, {}).get("members", []):
            owner = owners.get(m["ip"])
            members.append(
                {
                    "ip": m["ip"],
                    "helo": m.get("helo"),
                    "warmup": m.get("warmup") or [],
                    "sent_today": sent.get(m["ip"], 0),
                    "dispatcher": owner["_id"] if owner else None,
                }
            )
        serving = [
            {
                "instance": d["_id"],
                "ips": d.get("ips", []),
                "seen_seconds_ago": round((now - _aware(d["seen_at"])).total_seconds(), 1),
            }
            for d in live
            if name in d.get("pools", [])
        ]
        waiting = None
        if broker is not None:
            try:
                waiting = await broker.depth(deliver_queue(name))
            except Exception:
                waiting = None
        pools.append(
            {
                "name": name,
                "members": members,
                "stored": name in docs,
                "dispatchers": serving,
                "waiting": waiting,
            }
        )
    if args.json:
        _out(pools)
        return 0
    for p in pools:
        print(p["name"])
        if not p["stored"]:
            print("  no stored members: each dispatcher serving it sends from its own IPs")
        for m in p["members"]:
            caps = f"  warm-up {','.join(map(str, m['warmup']))}" if m["warmup"] else ""
            owner = f"dispatcher {m['dispatcher']}" if m["dispatcher"] else "NO dispatcher runs"
            print(
                f"  member {m['ip']}  EHLO {m['helo'] or '-'}{caps}"
                f"  sent today {m['sent_today']}  {owner}"
            )
        for d in p["dispatchers"]:
            print(
                f"  served by {d['instance']} ({', '.join(d['ips'])}; "
                f"heard from {d['seen_seconds_ago']} s ago)"
            )
        if not p["dispatchers"]:
            print("  served by NO running dispatcher: its mail waits")
        shown = "?" if p["waiting"] is None else p["waiting"]
        queue = f"{ctx.settings.broker.prefix}.{deliver_queue(p['name'])}"
        print(f"  waiting in {queue}: {shown}")
    return 0


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- messages and dev mode ---------------------------------------------------------------------


# -- secrets -----------------------------------------------------------------------------------


async def secrets_reseal(ctx: Context, args: argparse.Namespace) -> int:
    """Master-key rotation: every stored secret (DKIM private keys, webhook secrets) that does
    not open with the configured master key is opened with the old one and sealed anew."""
    if ctx.box is None:
        return _fail(ctx.box_problem)
    try:
        old = SecretBox(await asyncio.to_thread(Path(args.old_key_file).read_text))
    except OSError as exc:
        return _fail(f"cannot read {args.old_key_file}: {exc.strerror}")
    counts = {"resealed": 0, "current": 0, "unopenable": 0}

    def reseal(token: str) -> str | None:
        try:
            ctx.box.open(token)
            counts["current"] += 1
            return None
        except SecretsError:
            pass
        try:
            plain = old.open(token)
        except SecretsError:
            counts["unopenable"] += 1
            return None
        counts["resealed"] += 1
        return ctx.box.seal(plain)

    for domain in await ctx.directory.domains():
        keys, changed = [], False
        for key in domain.get("dkim", []):
            if (token := reseal(key["private_key_sealed"])) is not None:
                key = {**key, "private_key_sealed": token, "sealed_with": ctx.box.fingerprint}
                changed = True
            keys.append(key)
        if changed:
            await ctx.directory.set_dkim_keys(domain["_id"], keys)
            await ctx.announce(ChangeKind.DOMAINS, domain["_id"])
    for hook in await ctx.store.webhooks.of():
        if (token := reseal(hook["secret_sealed"])) is not None:
            await ctx.store.db.webhooks.update_one(
                {"_id": hook["_id"]}, {"$set": {"secret_sealed": token}}
            )
    print(
        f"{counts['resealed']} resealed with the master key {ctx.box.fingerprint}, "
        f"{counts['current']} already were, {counts['unopenable']} open with neither key"
    )
    return 1 if counts["unopenable"] else 0


# -- dead letters ------------------------------------------------------------------------------


async def _dead(ctx: Context, args: argparse.Namespace, decision: str | None) -> int:
    """List the dead-letter queue, or retry / drop the jobs named by id (or all of them)."""
    broker = await ctx.broker("the dead-letter queue is in RabbitMQ: nothing to show")
    if broker is None:
        return 1
    wanted = set(getattr(args, "id", None) or ())
    every = getattr(args, "all", False)
    if decision is not None and not wanted and not every:
        return _fail("name the jobs by id (see `hato dead list`), or give --all")

    async def act(message: Any) -> str | None:
        if decision is None:
            return None
        return (
            decision if every or hashlib.sha256(message.body).hexdigest()[:16] in wanted else None
        )

    entries = await broker.dead_letters(limit=args.limit, act=act)
    done = [e for e in entries if e["done"]]
    if decision == "retry":
        for e in done:  # their recipients wait again (they were failed with the job)
            if e.get("message_id") and e.get("recipients"):
                await ctx.store.revive_dead_lettered(e["message_id"], e["recipients"])
    shown = done if decision is not None else entries
    if getattr(args, "json", False):
        print(json.dumps(shown, indent=2, default=str))
    else:
        for e in shown:
            print(
                f"{e['id']}\t{e.get('kind', '?')}\t{e.get('tenant') or '-'}\t"
                f"{e.get('message_id') or '-'}\t{e['queue']}\t{e['reason']}"
            )
    if decision is not None:
        missing = wanted - {e["id"] for e in done}
        print(f"{len(done)} {'retried' if decision == 'retry' else 'dropped'}")
        if missing:
            return _fail(f"not in the dead-letter queue: {', '.join(sorted(missing))}")
    elif not entries and not getattr(args, "json", False):
        print("the dead-letter queue is empty")
    return 0


async def dead_list(ctx: Context, args: argparse.Namespace) -> int:
    return await _dead(ctx, args, None)


async def dead_retry(ctx: Context, args: argparse.Namespace) -> int:
    return await _dead(ctx, args, "retry")


async def dead_drop(ctx: Context, args: argparse.Namespace) -> int:
    return await _dead(ctx, args, "drop")


async def amqp_user_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        return _fail(f"no tenant {args.tenant!r}")
    prefix = ctx.settings.broker.prefix
    try:
        async with Management(endpoint(ctx.settings.broker)) as api:
            user, password = await api.add_team(prefix, args.tenant)
    except ManagementError as exc:
        return _fail(str(exc))
    url = team_url(ctx.settings.broker, user, password)
    if args.url:
        print(url)
    else:
        print(f"user: {user}\npassword: {password}\nurl: {url}")
    _note(
        f"shown once. It may publish to {prefix}.submit (with an API key of {args.tenant}), "
        f"declare and consume queues named {prefix}.team.{args.tenant}.*, and bind them to "
        f"{prefix}.events with {args.tenant}.* or {args.tenant}.<event type>"
    )
    return 0


async def amqp_user_remove(ctx: Context, args: argparse.Namespace) -> int:
    try:
        async with Management(endpoint(ctx.settings.broker)) as api:
            removed = await api.remove_team(ctx.settings.broker.prefix, args.tenant)
    except ManagementError as exc:
        return _fail(str(exc))
    if not removed:
        return _fail(f"no AMQP team user for {args.tenant!r}")
    print(f"removed the AMQP team user of {args.tenant}")
    return 0


async def amqp_user_list(ctx: Context, args: argparse.Namespace) -> int:
    try:
        async with Management(endpoint(ctx.settings.broker)) as api:
            teams = await api.teams(ctx.settings.broker.prefix)
    except ManagementError as exc:
        return _fail(str(exc))
    if args.json:
        _out(teams)
    for t in [] if args.json else teams:
        keys = ", ".join(p["read"] for p in t["topic"]) or "none"
        print(f"{t['tenant']}  user {t['user']}  read {t['read']}  event keys {keys}")
    return 0


async def message_show(ctx: Context, args: argparse.Namespace) -> int:
    view = await message_view(ctx.store, args.id)
    if view is None:
        return _fail(f"no message {args.id}")
    _out(view)
    return 0


async def dev_init(ctx: Context, args: argparse.Namespace) -> int:
    """The dev tenant, owning hato.test (verified, DKIM selector 'dev'), relaying from
    127.0.0.1 (or the networks given); its records published in the dev DNS."""
    networks = [_cidr(n) for n in args.network or [DEV_NETWORK]]
    if await ctx.directory.tenant(DEV_TENANT) is None:
        await ctx.provisioner.create_tenant(DEV_TENANT, networks=networks)
    for network in networks:
        await ctx.directory.add_network(DEV_TENANT, network)
    doc = await ctx.provisioner.add_domain(
        DEV_DOMAIN, tenant=DEV_TENANT, verified=True, selector=DEV_SELECTOR
    )
    if ctx.box is None:
        return _fail(ctx.box_problem)
    for key in doc.get("dkim", []):
        if dkim.status(key) != dkim.RETIRED:
            try:
                ctx.box.open(key["private_key_sealed"])
            except SecretsError:
                return _fail(
                    dkim.unopenable(DEV_DOMAIN, key, ctx.box)
                    + f". The database is {ctx.settings.store.url} ({ctx.settings.store.database})"
                    ": if another checkout's stack uses it, stop that one (make down there) or "
                    "give this one its own (HATO_FERRETDB_ADDR=127.0.0.1:27018 make up)"
                )
    await ctx.announce(ChangeKind.TENANTS, DEV_TENANT)
    await ctx.announce(ChangeKind.DOMAINS, DEV_DOMAIN)
    print(f"dev tenant '{DEV_TENANT}' owns {DEV_DOMAIN} and relays from {', '.join(networks)}")
    if ctx.settings.dev.dns_zone:
        _publish(ctx, doc)
    return 0


def _zone(ctx: Context):
    from hato.devdns import Zone

    if not ctx.settings.dev.dns_zone:
        raise ProvisioningError(
            "no dev DNS (HATO_DEV_DNS_ZONE is not set): `make up` starts one and sets it"
        )
    return Zone(Path(ctx.settings.dev.dns_zone))


def _publish(ctx: Context, doc: dict[str, Any]) -> None:
    zone = _zone(ctx)
    sets: dict[tuple[str, str], list[str]] = {}
    for record in records_for(doc, ctx.settings.dns):
        sets.setdefault((record.name, record.type), []).append(record.value)
    for (name, rdtype), values in sets.items():
        zone.set(name, rdtype, values)
    print(f"published in the dev DNS ({zone.path}):")
    for record in records_for(doc, ctx.settings.dns):
        print(f"  {record.zone_line()}")


async def dns_publish(ctx: Context, args: argparse.Namespace) -> int:
    doc = await ctx.directory.domain(args.domain)
    if doc is None:
        return _fail(f"unknown domain {args.domain}")
    _publish(ctx, doc)
    return 0


async def dns_list(ctx: Context, args: argparse.Namespace) -> int:
    for line in _zone(ctx).lines():
        print(line)
    return 0


async def dns_set(ctx: Context, args: argparse.Namespace) -> int:
    _zone(ctx).set(args.name, args.type, args.values)
    print(f"{args.name} {args.type.upper()}: {', '.join(args.values)}")
    return 0


async def dns_remove(ctx: Context, args: argparse.Namespace) -> int:
    if not _zone(ctx).remove(args.name, args.type):
        return _fail(f"the dev DNS has no {args.type or 'record'} at {args.name}")
    print(f"removed {args.type or 'every record'} at {args.name}")
    return 0


def cmd_dns_serve(args: argparse.Namespace) -> int:
    from hato.devdns import serve

    settings = DevSettings()
    zone = args.zone or settings.dns_zone
    if not zone:
        return _fail("no zone file: give --zone or set HATO_DEV_DNS_ZONE")
    asyncio.run(serve(Path(zone), args.host, args.port or settings.dns_port))
    return 0


def cmd_master_key(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists():
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(generate_master_key() + "\n")
    print(f"wrote a new master key to {path}")
    return 0


def cmd_cert(args: argparse.Namespace) -> int:
    from hato.devcert import write_self_signed

    if Path(args.cert).exists() and Path(args.key).exists():
        return 0
    write_self_signed(Path(args.cert), Path(args.key), args.name)
    print(f"wrote a self-signed certificate for {args.name} to {args.cert}")
    return 0


def cmd_bounce_classify(args: argparse.Namespace) -> int:
    """One JSON object per recipient found in each message (or one saying it is no bounce)."""
    from services.bounce.classify import rules
    from services.bounce.parse import Kind, NotMail, parse

    status = 0
    for name in args.files:
        try:
            raw = Path(name).read_bytes()
            if not raw.strip():
                raise NotMail("empty file: not an email message")
            try:
                report = parse(raw)
            except NotMail:
                raise
            except Exception as exc:  # a parser bug must not hide the other files' results
                raise NotMail(f"unreadable as mail ({type(exc).__name__})") from exc
        except (OSError, NotMail) as exc:
            error = f"{exc.strerror}: {name}" if isinstance(exc, OSError) else f"{exc}: {name}"
            print(json.dumps({"file": name, "error": error}, ensure_ascii=False))
            print(f"hato bounce classify: {error}", file=sys.stderr)
            status = 1
            continue
        if report.kind is Kind.NOT_A_BOUNCE or not report.findings:
            print(
                json.dumps(
                    {
                        "file": name,
                        "kind": Kind.NOT_A_BOUNCE.value,
                        "note": "not a bounce, complaint or auto-reply",
                    }
                )
            )
            continue
        for verdict in rules().classify(report):
            print(
                json.dumps(
                    {"file": name, "kind": report.kind.value, **verdict.as_dict()},
                    ensure_ascii=False,
                )
            )
    return status


def cmd_sink(args: argparse.Namespace) -> int:
    from hato.sink import serve

    asyncio.run(serve(Path(args.dir), args.host, args.port))
    return 0


# -- the parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hato", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"hato {_version()}")
    sub = p.add_subparsers(dest="group", required=True)

    def group(name: str, help: str, parent=sub) -> argparse._SubParsersAction:
        return parent.add_parser(name, help=help).add_subparsers(dest="cmd", required=True)

    def command(g, name: str, run, help: str, *arguments: tuple) -> argparse.ArgumentParser:
        c = g.add_parser(name, help=help, description=help)
        for names, options in arguments:
            c.add_argument(*names, **options)
        c.set_defaults(run=run)
        return c

    allow = (
        ("--allow-from",),
        {
            "action": "append",
            "metavar": "ADDRESS_OR_DOMAIN",
            "help": "restrict to this From address or domain; repeat",
        },
    )
    tenant_filter = (("--tenant",), {"help": "only this tenant's"})
    limits = (
        (("--max-message-size",), {"type": int, "help": "bytes"}),
        (("--max-recipients",), {"type": int}),
        (("--messages-per-hour",), {"type": int}),
        (("--max-age",), {"type": float, "help": "seconds deferred mail is retried"}),
        (
            ("--retention-days",),
            {"type": float, "help": "days a message is kept once final (default 30)"},
        ),
        (("--signing-domain",), {"help": "fallback DKIM domain for From domains without a key"}),
    )

    wide = (
        ("--allow-wide-network",),
        {
            "action": "store_true",
            "help": "take networks wider than /8 (IPv4) or /32 (IPv6): every address relays",
        },
    )
    g = group("tenant", "tenants")
    command(
        g,
        "add",
        tenant_add,
        "create a tenant (an existing one is refused: change it with `tenant set`)",
        (("name",), {}),
        (("--pool",), {"help": "IP pool (default: default); it must exist"}),
        (("--network",), {"action": "append", "help": "authorised network (CIDR); repeat"}),
        wide,
        (("--other-pool",), {"action": "append", "help": "a pool messages may name; repeat"}),
        *limits,
    )
    command(
        g,
        "set",
        tenant_set,
        "change a tenant: what is given changes, the rest stays (networks: `hato network`)",
        (("name",), {}),
        (("--pool",), {"help": "IP pool; it must exist"}),
        (
            ("--other-pool",),
            {"action": "append", "help": "a pool messages may name; repeat (replaces the list)"},
        ),
        *limits,
    )
    command(g, "list", tenant_list, "list tenants")

    g = group("network", "a tenant's authorised source networks (relay without AUTH)")
    command(g, "add", network_add, "authorise a network", (("tenant",), {}), (("cidr",), {}), wide)
    command(g, "remove", network_remove, "withdraw a network", (("tenant",), {}), (("cidr",), {}))

    g = group("domain", "sending domains")
    command(
        g,
        "add",
        domain_add,
        "give a domain to a tenant; prints the DNS records to publish",
        (("domain",), {}),
        (("--tenant",), {"required": True}),
        (("--verified",), {"action": "store_true", "help": "operator marks it verified"}),
        (("--selector",), {"default": "hato", "help": "DKIM selector of the first key"}),
    )
    command(
        g,
        "verify",
        domain_verify,
        "look its DKIM records up; verified when found",
        (("domain",), {}),
    )
    command(g, "list", domain_list, "list domains", tenant_filter)

    g = group("dkim", "DKIM keys")
    algorithm = (("--algorithm",), {"choices": sorted(dkim.ALGORITHMS), "default": "rsa-2048"})
    command(
        g,
        "generate",
        dkim_generate,
        "generate a key (active at once unless one of its algorithm is: then pending)",
        (("domain",), {}),
        (("--selector",), {}),
        algorithm,
    )
    command(
        g,
        "rotate",
        dkim_rotate,
        "a new pending key: it takes over once its record is in DNS",
        (("domain",), {}),
        algorithm,
    )
    command(
        g,
        "check",
        dkim_check,
        "look the published records up; activate pending keys that are published",
        (("domain",), {}),
    )
    command(g, "show", dkim_show, "print the DKIM TXT records to publish", (("domain",), {}))

    g = group("credential", "SMTP credentials (AUTH PLAIN/LOGIN)")
    command(
        g,
        "add",
        credential_add,
        "create an SMTP user; prints its password once (alone on stdout)",
        (("tenant",), {}),
        (("username",), {}),
        allow,
    )
    command(g, "list", credential_list, "list SMTP users", tenant_filter)
    command(g, "remove", credential_remove, "delete an SMTP user", (("username",), {}))

    g = group("apikey", "HTTP API keys")
    command(
        g,
        "add",
        apikey_add,
        "create an API key; prints it once (alone on stdout: KEY=$(hato apikey add ...))",
        (("tenant",), {}),
        (("--name",), {"default": ""}),
        allow,
    )
    command(g, "list", apikey_list, "list API keys (prefixes only)", tenant_filter)
    command(g, "revoke", apikey_revoke, "revoke an API key", (("prefix",), {}))

    g = group("suppression", "addresses a tenant must not mail")
    command(
        g,
        "add",
        suppression_add,
        "suppress an address",
        (("tenant",), {}),
        (("address",), {}),
        (("--reason",), {"default": "manual"}),
    )
    command(
        g, "remove", suppression_remove, "lift a suppression", (("tenant",), {}), (("address",), {})
    )
    command(
        g,
        "list",
        suppression_list,
        "list a tenant's suppressed addresses",
        (("tenant",), {}),
        (("--limit",), {"type": int, "default": 1000}),
    )

    g = group("pool", "IP pools (source IPs and their EHLO names)")
    command(
        g,
        "add",
        pool_add,
        "add (or update) a member of a pool, creating the pool",
        (("name",), {}),
        (("--member",), {"required": True, "metavar": "IP[=EHLO_NAME]"}),
        (("--warmup",), {"metavar": "N,N,...", "help": "daily caps for day 1, 2, ..."}),
    )
    command(
        g,
        "remove",
        pool_remove,
        "take a member out of a pool",
        (("name",), {}),
        (("--member",), {"required": True, "metavar": "IP"}),
    )
    command(
        g,
        "list",
        pool_list,
        "pools with their members, the dispatchers serving them and what waits",
        (("--json",), {"action": "store_true"}),
    )

    g = group("bounce", "bounces")
    bc = g.add_parser("classify", help="classify bounce messages (.eml files); JSON per recipient")
    bc.add_argument("files", nargs="+", metavar="FILE")
    bc.set_defaults(plain=cmd_bounce_classify)

    g = group("amqp", "the AMQP door: RabbitMQ users of the tenants' platform teams")
    users = group("user", "a platform team's RabbitMQ user (management API)", g)
    command(
        users,
        "add",
        amqp_user_add,
        "create (or reset) the tenant's team user; prints its new password once",
        (("tenant",), {}),
        (("--url",), {"action": "store_true", "help": "print only the team's AMQP URL"}),
    )
    command(users, "remove", amqp_user_remove, "delete the tenant's team user", (("tenant",), {}))
    command(
        users,
        "list",
        amqp_user_list,
        "team users and their permissions",
        (("--json",), {"action": "store_true"}),
    )

    g = group("message", "message state")
    command(g, "show", message_show, "a message, its recipients and its events", (("id",), {}))

    g = group("dead", "jobs that failed for good (the dead-letter queue)")
    limit = (("--limit",), {"type": int, "default": 100, "help": "look at this many (100)"})
    as_json = (("--json",), {"action": "store_true", "help": "JSON, not lines"})
    command(
        g,
        "list",
        dead_list,
        "the dead-lettered jobs: id, kind, tenant, message, queue, reason",
        limit,
        as_json,
    )
    pick = (("id",), {"nargs": "*", "help": "job ids from `hato dead list`"})
    every = (("--all",), {"action": "store_true", "help": "every job in the queue"})
    command(
        g,
        "retry",
        dead_retry,
        "put jobs back into the queue they died in; their recipients wait again",
        pick,
        every,
        limit,
        as_json,
    )
    command(
        g,
        "drop",
        dead_drop,
        "remove jobs for good (their recipients stay failed)",
        pick,
        every,
        limit,
        as_json,
    )

    g = group("secrets", "what is sealed with the master key")
    command(
        g,
        "reseal",
        secrets_reseal,
        "after a master-key change: seal again with the new key (HATO_MASTER_KEY_FILE) every "
        "DKIM key and webhook secret sealed with the old one",
        (("--old-key-file",), {"required": True, "help": "the previous master key"}),
    )

    g = group("dev", "dev mode")
    command(
        g,
        "init",
        dev_init,
        "create the dev tenant and hato.test (and publish its records in the dev DNS)",
        (("--network",), {"action": "append", "help": "relay for this CIDR, not 127.0.0.1"}),
    )
    dns = group("dns", "the dev DNS server: publish the records Hato asks for", parent=g)
    command(
        dns,
        "publish",
        dns_publish,
        "publish a domain's records (DKIM keys, SPF, return path) as `domain add` printed them",
        (("domain",), {}),
    )
    command(dns, "list", dns_list, "every record the dev DNS serves")
    command(
        dns,
        "set",
        dns_set,
        "publish one record set (replacing that name's records of that type)",
        (("name",), {}),
        (("type",), {"metavar": "TYPE", "help": "TXT, CNAME, MX, A or AAAA"}),
        (("values",), {"nargs": "+", "metavar": "VALUE"}),
    )
    command(
        dns,
        "remove",
        dns_remove,
        "withdraw the records at a name (of one type, when given)",
        (("name",), {}),
        (("type",), {"nargs": "?", "metavar": "TYPE"}),
    )
    sv = dns.add_parser("serve", help="run the dev DNS server (make up starts it)")
    sv.add_argument("--zone", help="zone file (default: HATO_DEV_DNS_ZONE)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=0, help="default: HATO_DEV_DNS_PORT (5300)")
    sv.set_defaults(plain=cmd_dns_serve)
    mk = g.add_parser("master-key", help="write a new master key file unless one exists")
    mk.add_argument("file")
    mk.set_defaults(plain=cmd_master_key)
    ct = g.add_parser("cert", help="write a self-signed TLS certificate unless one exists")
    ct.add_argument("cert")
    ct.add_argument("key")
    ct.add_argument("--name", default="localhost")
    ct.set_defaults(plain=cmd_cert)
    sk = g.add_parser("sink", help="SMTP sink writing each message to an .eml file")
    sk.add_argument("--dir", default="var/outbox")
    sk.add_argument("--host", default="127.0.0.1")
    sk.add_argument("--port", type=int, default=2526)
    sk.set_defaults(plain=cmd_sink)
    return p


def _version() -> str:
    try:
        return metadata.version("hato")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _run(settings: CliSettings, args: argparse.Namespace) -> int:
    store = Store(settings.store)
    ctx = Context(store, settings)
    try:
        await store.ensure_indexes()
        return await args.run(ctx, args)
    finally:
        await ctx.close()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    load_env_file(env_file())
    args = build_parser().parse_args(argv)
    if hasattr(args, "plain"):
        return args.plain(args)
    try:
        return asyncio.run(_run(CliSettings(), args))
    except (ProvisioningError, DuplicateError, ValueError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # one line for the operator, not a traceback
        return _fail(f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())

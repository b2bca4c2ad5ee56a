"""``hato``: the admin command. Tenants, networks, limits, IP pools, domains and their DNS
records, DKIM keys, SMTP credentials, API keys, suppressions, message state, and dev mode.

Reads the same ``HATO_*`` settings as the services (``HATO_MONGODB_URL``,
``HATO_MASTER_KEY_FILE``, ``HATO_DNS_NAMESERVERS`` ...), taking what the environment does
not set from the settings file of the dev stack (``var/dev.env``, which ``make up`` writes;
``HATO_ENV_FILE`` names another, or none when empty). Changes are announced on the broker, so
running services apply them at once.

The admin operations are the commands of ``shared.admin``, which the admin HTTP API
(``/admin/v1``) serves too; this module is their command line: ``COMMANDS`` at the bottom is
a table of every command (its words, arguments, the call it makes and how its result prints),
from which the parser is built. Read commands take ``--json`` and need no write rights; exit
codes tell kinds of failure apart (``Exit``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hato import dev, ops, queue
from hato.dev import DevSettings
from hato.table import (
    EPILOG,
    Command,
    Exit,
    Failure,
    Show,
    arg,
    exit_code,
    note,
    out,
    says,
)
from shared import dkim, unsubscribe
from shared.admin import Commands, KeyReport, cidr, network, warmup
from shared.broker import Broker, deliver_queue
from shared.directory import DuplicateError, TenantLimits
from shared.dns import DnsRecord, KeyCheck
from shared.domain_health import DomainHealth, HealthReport, Verdict
from shared.egress import Egress, EgressSettings
from shared.errors import Unavailable
from shared.provisioning import DEFAULT_POOL, KeyChange, Provisioner, ProvisioningError
from shared.schemas import Changed, ChangeKind, Event
from shared.secrets import SecretBox, SecretsError
from shared.settings import BrokerSettings, DnsSettings, SecretsSettings, StoreSettings
from shared.store import Store
from shared.views import HEARTBEAT_WITHIN

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = (
    "The admin command of Hato, a self-hosted mail relay: tenants, networks, IP pools, "
    "domains, DKIM keys, SMTP credentials, API keys, suppressions, message state, the delivery "
    "queue, dev mode."
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


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    store: StoreSettings = Field(default_factory=StoreSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    dev: DevSettings = Field(default_factory=DevSettings)


class Context:
    """What a command works with: the store, the admin commands, and the broker it announces
    changes on."""

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
        self.commands = Commands(
            store.directory,
            store.suppressions,
            self.provisioner,
            self.announce,
            box_problem=self.box_problem,
            health=DomainHealth(settings.dns, egress=Egress.from_settings(settings.egress)),
        )
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
                note(f"RabbitMQ cannot be reached ({exc}): {without}")
        return self._broker

    async def announce(self, what: ChangeKind, name: str, events: Sequence[Event] = ()) -> None:
        """Tell running services that ``name`` changed (and write and publish ``events``); a
        pool's queue is declared, so its mail waits durably from now on, served or not."""
        await self.store.events.append(events)
        broker = await self.broker(
            "running services pick the change up at their next refresh "
            "(ingest 10 s, signer 30 s, dispatcher 5 s)"
        )
        if broker is None:
            return
        try:
            if what is ChangeKind.POOLS and name:
                await broker.declare_pool(name)
            await broker.emit(events)
            await broker.publish(Changed(what=what, name=name))
        except Unavailable as exc:
            note(f"the change was made but not announced: {exc}")

    async def waiting(self, pool: str) -> int | None:
        """How many jobs wait in a pool's queue; None when the broker cannot say."""
        broker = await self.broker("how much mail waits is not known")
        if broker is None:
            return None
        try:
            return await broker.depth(deliver_queue(pool))
        except Exception:
            return None

    def queue(self, pool: str) -> str:
        return f"{self.settings.broker.prefix}.{deliver_queue(pool)}"

    async def close(self) -> None:
        if self._broker is not None:
            await self._broker.close()


# -- how results print -------------------------------------------------------------------------


def _tenant_line(t: dict[str, Any], *_: Any) -> None:
    print(
        f"tenant {t['name']}: pool {t.get('pool')}"
        + (f" (may name {', '.join(t['other_pools'])})" if t.get("other_pools") else "")
        + f", networks {', '.join(t.get('networks', [])) or '-'}"
        + f", limits {json.dumps(t['limits']) if t.get('limits') else '-'}"
        + (f", signs unaligned with {t['signing_domain']}" if t.get("signing_domain") else "")
    )


def _tenant_rows(tenants: list[dict[str, Any]], *_: Any) -> None:
    for t in tenants:
        print(
            f"{t['name']}\tpool={t.get('pool')}\tnetworks={','.join(t.get('networks', []))}"
            f"\tlimits={json.dumps(t.get('limits', {}))}"
        )


def _domain_added(d: dict[str, Any], args: argparse.Namespace, ctx: Context) -> None:
    state = "verified" if d["verified"] else "not verified yet (publish, then hato domain verify)"
    print(f"domain {d['domain']}: tenant {d['tenant']}, {state}")
    print("Publish these DNS records:")
    for r in d["dns_records"]:
        print(f"  {DnsRecord(**r).zone_line()}    ; {r['purpose']}")
    if ctx.settings.dev.dns_zone:
        print(f"(dev mode: hato dev dns publish {d['domain']} publishes them in the local DNS)")


def _domain_rows(domains: list[dict[str, Any]], *_: Any) -> None:
    for d in domains:
        selectors = ",".join(k["selector"] for k in d["dkim"])
        print(f"{d['domain']}\ttenant={d['tenant']}\tverified={d['verified']}\tdkim={selectors}")


def _verified(result: tuple[bool, list[KeyCheck]], args: argparse.Namespace, _: Any) -> int:
    verified, checks = result
    for c in checks:
        print(f"{c.name}: {c.status}")
    print(f"{args.domain}: {'verified' if verified else 'NOT verified'}")
    return Exit.OK if verified else Exit.FAILED


_VERDICTS = {
    Verdict.OK: "ok     ",
    Verdict.WARNING: "warning",
    Verdict.WRONG: "WRONG  ",
    Verdict.DNS_ERROR: "DNS ERR",
}


def _health(report: HealthReport, *_: Any) -> int:
    for f in report.findings:
        print(f"{_VERDICTS[f.verdict]}  {f.check.value:<15} {f.subject}: {f.says}")
        if f.publish is not None:
            print(f"         publish: {f.publish.zone_line()}")
    if report.ok:
        print(f"{report.domain}: healthy")
        return Exit.OK
    print(f"{report.domain}: NOT healthy ({', '.join(report.failing)})")
    return Exit.FAILED


def _key_change(change: KeyChange, *_: Any) -> None:
    if change.kind == dkim.PENDING:
        print(
            f"new key {change.selector} ({change.algorithm}) is pending: the current key keeps "
            f"signing until this record is published, then this one takes over:"
        )
    else:
        print(f"key {change.selector} ({change.algorithm}) is {change.kind}; publish:")
    print(f'  {change.record_name}. IN TXT "{change.record_value}"')


_DNS_STATES = {
    "found": "published, matches",
    "missing": "NOT published: publish the record (hato dkim show)",
    "different": "WRONG: the published record holds another key",
    "dns-error": "DNS lookup failed",
}


def _key_report(report: KeyReport, args: argparse.Namespace, _: Any) -> int:
    for c in report.checks:
        print(f"{c.name} [{report.states.get(c.selector)}]: {_DNS_STATES[c.status]}")
    for change in report.changes:
        print(f"key {change.selector}: now {change.kind}")
    if not args.activate and any(s == dkim.PENDING for s in report.states.values()):
        print("pending keys stay pending: --activate activates those published")
    for problem in report.unusable:  # published or not, the signer cannot use it
        print(f"NOT USABLE: {problem}")
    if report.unchecked:
        print(f"keys not checked: {report.unchecked}")
    return Exit.OK if report.ok else Exit.FAILED


def _records(records: list[dict[str, str]], *_: Any) -> None:
    for r in records:
        print(DnsRecord(**r).zone_line())


def _credential_rows(credentials: list[dict[str, Any]], *_: Any) -> None:
    for c in credentials:
        print(
            f"{c['username']}\ttenant={c['tenant']}"
            f"\tallowed_from={','.join(c['allowed_from']) or '*'}"
        )


def _secret(what: str) -> Show:
    """The secret alone on stdout (``KEY=$(hato ...)``), what it is on stderr."""

    def show(secret: str, args: argparse.Namespace, _: Any) -> None:
        note(what.format(**vars(args)))
        print(secret)

    return show


def _api_key_added(added: tuple[str, str], args: argparse.Namespace, _: Any) -> None:
    prefix, token = added
    note(f"API key {prefix} for {args.tenant}; the key (shown once) follows")
    print(token)


def _api_key_rows(keys: list[dict[str, Any]], *_: Any) -> None:
    for k in keys:
        print(
            f"{k['prefix']}\ttenant={k['tenant']}\tname={k['name']}"
            f"\tallowed_from={','.join(k['allowed_from']) or '*'}"
        )


def _user_added(password: str, args: argparse.Namespace, _: Any) -> None:
    who = "an operator" if args.operator else f"of tenant {args.tenant}"
    if args.password_stdin:
        note(f"console user {args.email} ({who}) signs in with the password given")
        return
    note(f"console user {args.email} ({who}); its password (shown once) follows")
    print(password)


def _user_rows(users: list[dict[str, Any]], *_: Any) -> None:
    for u in users:
        print(f"{u['email']}\t{'operator' if u['operator'] else 'tenant=' + u['tenant']}")


def _suppression_rows(suppressions: list[dict[str, Any]], *_: Any) -> None:
    for d in suppressions:
        until = d["expires_at"]
        print(
            f"{d['address']}\treason={d['reason']}\tsource={d['source']}"
            f"\tscope={d.get('scope') or 'all'}"
            f"\tuntil={until.isoformat() if until else 'forever'}"
        )


def _member_added(member: dict[str, Any], args: argparse.Namespace, ctx: Context) -> None:
    helo = member["helo"] or "the dispatcher default"
    caps = f", warm-up {args.warmup} per day" if args.warmup else ""
    print(f"pool {args.name}: member {member['ip']} (EHLO {helo}){caps}")
    print(
        f"its mail is sent by the dispatcher that owns {member['ip']} "
        f"(HATO_DISPATCHER_SOURCE_IPS={member['ip']}); until one runs, it waits in the queue "
        f"{ctx.queue(args.name)}"
    )


def _pool_status(pools: list[dict[str, Any]], args: argparse.Namespace, ctx: Context) -> None:
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
        print(f"  waiting in {ctx.queue(p['name'])}: {shown}")


# -- calls that take more than one step ---------------------------------------------------------


def _limits(args: argparse.Namespace) -> TenantLimits | None:
    limits = TenantLimits(
        args.max_message_size,
        args.max_recipients,
        args.messages_per_hour,
        args.max_age,
        args.retention_days,
        args.jis_extensions,
        args.missing_headers,
        args.unsubscribe_list,
    )
    return None if limits == TenantLimits() else limits


async def _add_network(ctx: Context, args: argparse.Namespace) -> str:
    given = network(args.cidr, wide=args.allow_wide_network)
    await ctx.commands.add_network(args.tenant, given, wide=True)
    return given


async def _remove_network(ctx: Context, args: argparse.Namespace) -> str:
    await ctx.commands.remove_network(args.tenant, args.cidr)
    return cidr(args.cidr)


async def _add_user(ctx: Context, args: argparse.Namespace) -> str:
    if bool(args.operator) == bool(args.tenant):
        raise ValueError("give --tenant TENANT or --operator (one of them)")
    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    return await ctx.commands.add_console_user(
        args.email, tenant=None if args.operator else args.tenant, password=password
    )


async def _add_member(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    ip, _, helo = args.member.partition("=")
    return await ctx.commands.add_pool_member(
        args.name, ip, helo=helo, warmup=warmup(args.warmup or "")
    )


# -- the table -------------------------------------------------------------------------------


ALLOW_FROM = arg(
    "--allow-from",
    action="append",
    default=[],
    metavar="ADDRESS_OR_DOMAIN",
    help="restrict to this From address or domain; repeat",
)
TENANT_FILTER = arg("--tenant", help="only this tenant's")
WIDE = arg(
    "--allow-wide-network",
    action="store_true",
    help="take networks wider than /8 (IPv4) or /32 (IPv6): every address relays",
)
LIMITS = (
    arg("--max-message-size", type=int, help="bytes"),
    arg("--max-recipients", type=int),
    arg("--messages-per-hour", type=int),
    arg("--max-age", type=float, help="seconds deferred mail is retried"),
    arg("--retention-days", type=float, help="days a message is kept once final (default 30)"),
    arg(
        "--jis-extensions",
        choices=["cp50220", "utf-8", "refuse"],
        help="ISO-2022-JP JSON mail with characters beyond JIS X 0208 (①, 髙): write them as "
        "CP50220 (default), send the message in UTF-8, or refuse it",
    ),
    arg(
        "--missing-headers",
        choices=["add", "refuse"],
        help="mail without Message-ID or Date: add them (default) or refuse it",
    ),
    arg(
        "--unsubscribe-list",
        type=unsubscribe.list_name,
        help="add one-click unsubscribe from this list to mail that names no list of its own",
    ),
    arg("--signing-domain", help="fallback DKIM domain for From domains without a key"),
)
ALGORITHM = arg("--algorithm", choices=sorted(dkim.ALGORITHMS), default="rsa-2048")

GROUPS = {
    "tenant": "tenants",
    "network": "a tenant's authorised source networks (relay without AUTH)",
    "domain": "sending domains",
    "dkim": "DKIM keys",
    "credential": "SMTP credentials (AUTH PLAIN/LOGIN)",
    "apikey": "HTTP API keys",
    "suppression": "addresses a tenant must not mail",
    "user": "people who sign in to the web console (/console)",
    "pool": "IP pools (source IPs and their EHLO names)",
    **ops.GROUPS,
    **queue.GROUPS,
    **dev.GROUPS,
}

ADMIN = (
    Command(
        "tenant add",
        "create a tenant (an existing one is refused: change it with `tenant set`)",
        lambda ctx, a: ctx.commands.create_tenant(
            a.name,
            pool=a.pool or DEFAULT_POOL,
            networks=a.network,
            allow_wide=a.allow_wide_network,
            limits=_limits(a),
            signing_domain=a.signing_domain,
            other_pools=a.other_pool or [],
        ),
        (
            arg("name"),
            arg("--pool", help="IP pool (default: default); it must exist"),
            arg("--network", action="append", default=[], help="authorised network (CIDR); repeat"),
            WIDE,
            arg("--other-pool", action="append", help="a pool messages may name; repeat"),
            *LIMITS,
        ),
        _tenant_line,
    ),
    Command(
        "tenant set",
        "change a tenant: what is given changes, the rest stays (networks: `hato network`)",
        lambda ctx, a: ctx.commands.update_tenant(
            a.name,
            pool=a.pool,
            limits=_limits(a),
            signing_domain=a.signing_domain,
            other_pools=a.other_pool,
        ),
        (
            arg("name"),
            arg("--pool", help="IP pool; it must exist"),
            arg(
                "--other-pool",
                action="append",
                help="a pool messages may name; repeat (replaces the list)",
            ),
            *LIMITS,
        ),
        _tenant_line,
    ),
    Command(
        "tenant show",
        "a tenant",
        lambda ctx, a: ctx.commands.tenant(a.name),
        (arg("name"),),
        _tenant_line,
        reads=True,
    ),
    Command(
        "tenant list",
        "list tenants",
        lambda ctx, a: ctx.commands.tenants(),
        (),
        _tenant_rows,
        reads=True,
    ),
    Command(
        "tenant remove",
        "delete a tenant that owns nothing any more (remove its domains, users and keys first)",
        lambda ctx, a: ctx.commands.remove_tenant(a.name),
        (arg("name"),),
        says("removed tenant {name}"),
    ),
    Command(
        "network add",
        "authorise a network",
        _add_network,
        (arg("tenant"), arg("cidr"), WIDE),
        says("{tenant} relays for {result}"),
    ),
    Command(
        "network remove",
        "withdraw a network",
        _remove_network,
        (arg("tenant"), arg("cidr")),
        says("{tenant} no longer relays for {result}"),
    ),
    Command(
        "domain add",
        "give a domain to a tenant; prints the DNS records to publish",
        lambda ctx, a: ctx.commands.add_domain(
            a.domain, tenant=a.tenant, verified=a.verified, selector=a.selector
        ),
        (
            arg("domain"),
            arg("--tenant", required=True),
            arg("--verified", action="store_true", help="operator marks it verified"),
            arg("--selector", default="hato", help="DKIM selector of the first key"),
        ),
        _domain_added,
    ),
    Command(
        "domain verify",
        "look its DKIM records up; verified when found",
        lambda ctx, a: ctx.commands.verify_domain(a.domain),
        (arg("domain"),),
        _verified,
    ),
    Command(
        "domain check",
        "SPF, DKIM, DMARC, return-path MX, PTR of the pool IPs, MTA-STS and TLS-RPT: what is "
        "right, what is wrong and the record to publish (exit 1 when something is wrong)",
        lambda ctx, a: ctx.commands.check_domain(a.domain),
        (arg("domain"),),
        _health,
        reads=True,
    ),
    Command(
        "domain list",
        "list domains",
        lambda ctx, a: ctx.commands.domains(a.tenant),
        (TENANT_FILTER,),
        _domain_rows,
        reads=True,
    ),
    Command(
        "domain remove",
        "take a domain and its DKIM keys away from its tenant: its mail is no longer relayed",
        lambda ctx, a: ctx.commands.remove_domain(a.domain),
        (arg("domain"),),
        says("removed domain {domain} and its DKIM keys"),
    ),
    Command(
        "dkim generate",
        "generate a key (active at once unless one of its algorithm is: then pending)",
        lambda ctx, a: ctx.commands.generate_key(
            a.domain, a.selector, dkim.ALGORITHMS[a.algorithm]
        ),
        (arg("domain"), arg("--selector"), ALGORITHM),
        _key_change,
    ),
    Command(
        "dkim rotate",
        "a new pending key: it takes over once its record is in DNS",
        lambda ctx, a: ctx.commands.rotate_key(a.domain, dkim.ALGORITHMS[a.algorithm]),
        (arg("domain"), ALGORITHM),
        _key_change,
    ),
    Command(
        "dkim check",
        "look the published records up and report; --activate activates pending keys found",
        lambda ctx, a: ctx.commands.check_keys(a.domain, activate=a.activate),
        (
            arg("domain"),
            arg(
                "--activate",
                action="store_true",
                help="activate pending keys whose record is published (the old key retires)",
            ),
        ),
        _key_report,
        reads=True,  # unless --activate: see needs_writes
    ),
    Command(
        "dkim show",
        "print the DKIM TXT records to publish",
        lambda ctx, a: ctx.commands.dkim_records(a.domain),
        (arg("domain"),),
        _records,
        reads=True,
    ),
    Command(
        "credential add",
        "create an SMTP user; prints its password once (alone on stdout)",
        lambda ctx, a: ctx.commands.add_credential(a.tenant, a.username, allowed_from=a.allow_from),
        (arg("tenant"), arg("username"), ALLOW_FROM),
        _secret("SMTP user {username} for {tenant}; its password (shown once) follows"),
    ),
    Command(
        "credential list",
        "list SMTP users",
        lambda ctx, a: ctx.commands.credentials(a.tenant),
        (TENANT_FILTER,),
        _credential_rows,
        reads=True,
    ),
    Command(
        "credential remove",
        "delete an SMTP user",
        lambda ctx, a: ctx.commands.remove_credential(a.username),
        (arg("username"),),
        says("removed SMTP user {username}"),
    ),
    Command(
        "apikey add",
        "create an API key; prints it once (alone on stdout: KEY=$(hato apikey add ...))",
        lambda ctx, a: ctx.commands.add_api_key(a.tenant, name=a.name, allowed_from=a.allow_from),
        (arg("tenant"), arg("--name", default=""), ALLOW_FROM),
        _api_key_added,
    ),
    Command(
        "apikey list",
        "list API keys (prefixes only)",
        lambda ctx, a: ctx.commands.api_keys(a.tenant),
        (TENANT_FILTER,),
        _api_key_rows,
        reads=True,
    ),
    Command(
        "apikey revoke",
        "revoke an API key",
        lambda ctx, a: ctx.commands.revoke_api_key(a.prefix),
        (arg("prefix"),),
        says("revoked API key {prefix}"),
    ),
    Command(
        "user add",
        "create a console user of a tenant (or --operator: every tenant); prints its password "
        "once (alone on stdout), or takes it from stdin with --password-stdin",
        _add_user,
        (
            arg("email"),
            arg("--tenant", help="the tenant whose mail the user sees"),
            arg("--operator", action="store_true", help="an operator: sees every tenant"),
            arg("--password-stdin", action="store_true", help="read the password from stdin"),
        ),
        _user_added,
    ),
    Command(
        "user list",
        "list console users",
        lambda ctx, a: ctx.commands.console_users(a.tenant),
        (TENANT_FILTER,),
        _user_rows,
        reads=True,
    ),
    Command(
        "user remove",
        "delete a console user and end its sessions",
        lambda ctx, a: ctx.commands.remove_console_user(a.email),
        (arg("email"),),
        says("removed console user {email}"),
    ),
    Command(
        "suppression add",
        "suppress an address",
        lambda ctx, a: ctx.commands.suppress(a.tenant, a.address, reason=a.reason),
        (arg("tenant"), arg("address"), arg("--reason", default="manual")),
        says("{tenant} will not mail {result}"),
    ),
    Command(
        "suppression remove",
        "lift a suppression",
        lambda ctx, a: ctx.commands.unsuppress(a.tenant, a.address, scope=a.scope),
        (
            arg("tenant"),
            arg("address"),
            arg("--scope", help="list:<name>: lift an unsubscribe from that list"),
        ),
        says("{tenant} may mail {result} again"),
    ),
    Command(
        "suppression list",
        "list a tenant's suppressed addresses",
        lambda ctx, a: ctx.commands.suppressions(a.tenant, limit=a.limit),
        (arg("tenant"), arg("--limit", type=int, default=1000)),
        _suppression_rows,
        reads=True,
    ),
    Command(
        "pool add",
        "add (or update) a member of a pool, creating the pool",
        _add_member,
        (
            arg("name"),
            arg("--member", required=True, metavar="IP[=EHLO_NAME]"),
            arg("--warmup", metavar="N,N,...", help="daily caps for day 1, 2, ..."),
        ),
        _member_added,
    ),
    Command(
        "pool remove",
        "take a member out of a pool",
        lambda ctx, a: ctx.commands.remove_pool_member(a.name, a.member),
        (arg("name"), arg("--member", required=True, metavar="IP")),
        says("pool {name}: {member} is no longer a member"),
    ),
    Command(
        "pool list",
        "pools with their members, the dispatchers serving them and what waits",
        lambda ctx, a: ctx.commands.pool_status(HEARTBEAT_WITHIN, ctx.waiting),
        (),
        _pool_status,
        reads=True,
    ),
)


COMMANDS: tuple[Command, ...] = ADMIN + ops.COMMANDS + queue.COMMANDS + dev.COMMANDS


def needs_writes(command: Command, args: argparse.Namespace) -> bool:
    """Whether the command changes state (and so makes the store's indexes first)."""
    return not command.reads or bool(getattr(args, "activate", False))


# -- the parser and the run ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in ``COMMANDS``, grouped by their first words."""
    p = argparse.ArgumentParser(prog="hato", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"hato {_version()}")
    groups: dict[str, argparse._SubParsersAction] = {
        "": p.add_subparsers(dest="group", required=True, metavar="COMMAND")
    }
    for command in COMMANDS:
        *path, verb = command.words.split()
        for depth in range(len(path)):
            prefix = " ".join(path[: depth + 1])
            if prefix not in groups:
                parent = groups[" ".join(path[:depth])]
                groups[prefix] = parent.add_parser(
                    path[depth], help=GROUPS.get(prefix, prefix)
                ).add_subparsers(dest=f"cmd{depth}", required=True, metavar="COMMAND")
        c = groups[" ".join(path)].add_parser(verb, help=command.help, description=command.help)
        for a in command.args:
            c.add_argument(*a.names, **a.options)
        if command.reads and not any("--json" in a.names for a in command.args):
            c.add_argument("--json", action="store_true", help="JSON, not lines")
        c.set_defaults(command=command)
    return p


def _version() -> str:
    try:
        return metadata.version("hato")
    except metadata.PackageNotFoundError:
        return "unknown"


async def _run(settings: CliSettings, command: Command, args: argparse.Namespace) -> int:
    store = Store(settings.store)
    ctx = Context(store, settings)
    try:
        if needs_writes(command, args):
            await store.ensure_indexes()
        result = await command.call(ctx, args)
        if command.show is None:
            return result
        if getattr(args, "json", False):
            out(result)
            return Exit.OK if getattr(result, "ok", True) else Exit.FAILED
        return command.show(result, args, ctx) or Exit.OK
    finally:
        await ctx.close()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    load_env_file(env_file())
    args = build_parser().parse_args(argv)
    command: Command = args.command
    try:
        if command.plain:
            return command.call(args)
        return asyncio.run(_run(CliSettings(), command, args))
    except (ProvisioningError, DuplicateError, ValueError, Failure) as exc:
        note(str(exc))
        return exit_code(exc)
    except Exception as exc:  # one line for the operator, not a traceback
        note(f"{type(exc).__name__}: {exc}")
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())

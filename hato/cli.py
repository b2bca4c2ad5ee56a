"""``hato``: the admin command. Tenants, networks, limits, domains and their DNS records, DKIM
keys, SMTP credentials, API keys, suppressions, message state, and dev mode.

Reads the same ``HATO_*`` settings as the services (``HATO_MONGODB_URL``,
``HATO_MASTER_KEY_FILE``, ``HATO_DNS_NAMESERVERS`` ...). The admin HTTP API
(``/admin/v1``) offers the same operations.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.directory import DuplicateError, Limits
from shared.dkim import ALGORITHMS
from shared.dkim import status as key_status
from shared.dns import records_for
from shared.provisioning import Provisioner, ProvisioningError
from shared.secrets import SecretBox, SecretsError, generate_master_key
from shared.settings import DnsSettings, SecretsSettings, StoreSettings
from shared.store import Store

DEV_TENANT = "dev"
DEV_DOMAIN = "hato.test"
DEV_SELECTOR = "dev"
DEV_NETWORK = "127.0.0.1/32"


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    store: StoreSettings = Field(default_factory=StoreSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)


class Context:
    """What a command works with: the store and the provisioning rules."""

    def __init__(self, store: Store, settings: CliSettings) -> None:
        self.store = store
        self.directory = store.directory
        self.settings = settings
        try:
            box: SecretBox | None = SecretBox.from_settings(settings.secrets)
        except SecretsError:
            box = None  # only commands that make keys need it; they say so
        self.provisioner = Provisioner(store.directory, box, settings.dns)


def _out(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def _fail(message: str) -> int:
    print(f"hato: {message}", file=sys.stderr)
    return 1


# -- tenants and networks ---------------------------------------------------------------------


async def tenant_add(ctx: Context, args: argparse.Namespace) -> int:
    limits = Limits(
        args.max_message_size, args.max_recipients, args.messages_per_hour, args.max_age
    )
    doc = await ctx.directory.upsert_tenant(
        args.name,
        pool=args.pool,
        networks=args.network,
        limits=limits,
        signing_domain=args.signing_domain,
        other_pools=args.other_pool,
    )
    print(
        f"tenant {doc['_id']}: pool {doc['pool']}, networks "
        f"{', '.join(doc.get('networks', [])) or '-'}, limits {doc.get('limits', {}) or '-'}"
    )
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
    await ctx.directory.add_network(args.tenant, _cidr(args.cidr))
    print(f"{args.tenant} relays for {_cidr(args.cidr)}")
    return 0


async def network_remove(ctx: Context, args: argparse.Namespace) -> int:
    await ctx.directory.remove_network(args.tenant, _cidr(args.cidr))
    print(f"{args.tenant} no longer relays for {_cidr(args.cidr)}")
    return 0


def _cidr(value: str) -> str:
    import ipaddress

    return str(ipaddress.ip_network(value, strict=False))


# -- domains and DKIM -------------------------------------------------------------------------


async def domain_add(ctx: Context, args: argparse.Namespace) -> int:
    doc = await ctx.provisioner.add_domain(
        args.domain, tenant=args.tenant, verified=args.verified, selector=args.selector
    )
    state = "verified" if doc["verified"] else "not verified yet (publish, then hato domain verify)"
    print(f"domain {doc['_id']}: tenant {args.tenant}, {state}")
    print("Publish these DNS records:")
    for record in records_for(doc, ctx.settings.dns):
        print(f"  {record.zone_line()}    ; {record.purpose}")
    return 0


async def domain_verify(ctx: Context, args: argparse.Namespace) -> int:
    verified, checks = await ctx.provisioner.verify(args.domain)
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
        args.domain, args.selector, ALGORITHMS[args.algorithm]
    )
    _print_change(change)
    return 0


async def dkim_rotate(ctx: Context, args: argparse.Namespace) -> int:
    _print_change(await ctx.provisioner.rotate(args.domain, ALGORITHMS[args.algorithm]))
    return 0


def _print_change(change) -> None:
    if change.kind == "pending":
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
    checks = await ctx.provisioner.check(args.domain)
    doc = await ctx.directory.domain(args.domain)
    states = {k["selector"]: key_status(k) for k in (doc or {}).get("dkim", [])}
    explain = {
        "found": "published, matches",
        "missing": "NOT published: publish the record (hato dkim show)",
        "different": "WRONG: the published record holds another key",
        "dns-error": "DNS lookup failed",
    }
    for c in checks:
        print(f"{c.name} [{states.get(c.selector)}]: {explain[c.status]}")
    for change in changes:
        print(f"{change.selector}: now {change.kind}")
    return 0 if all(c.status == "found" for c in checks) else 1


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
    print(f"SMTP user {args.username} for {args.tenant}; password (shown once): {password}")
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
    print(f"removed SMTP user {args.username}")
    return 0


async def apikey_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        return _fail(f"unknown tenant {args.tenant}")
    prefix, token = await ctx.directory.add_api_key(
        args.tenant, name=args.name, allowed_from=args.allow_from or []
    )
    print(f"API key {prefix} for {args.tenant} (shown once):\n{token}")
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
    print(f"revoked API key {args.prefix}")
    return 0


async def suppression_add(ctx: Context, args: argparse.Namespace) -> int:
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
    _cidr(ip)  # a valid address
    member = {
        "ip": ip,
        "helo": helo or None,
        "started_at": datetime.now(UTC),
        "warmup": [int(n) for n in args.warmup.split(",")] if args.warmup else [],
    }
    await ctx.store.pools.add_member(args.name, member)
    print(
        f"pool {args.name}: member {ip} (EHLO {helo or 'the dispatcher default'})"
        + (f", warm-up {args.warmup} per day" if args.warmup else "")
    )
    return 0


async def pool_list(ctx: Context, args: argparse.Namespace) -> int:
    for p in await ctx.store.pools.all():
        members = ", ".join(f"{m['ip']}={m.get('helo') or '-'}" for m in p.get("members", []))
        print(f"{p['_id']}\t{members}")
    return 0


# -- messages and dev mode ---------------------------------------------------------------------


async def message_show(ctx: Context, args: argparse.Namespace) -> int:
    message = await ctx.store.message(args.id)
    if message is None:
        return _fail(f"no message {args.id}")
    message["recipients"] = await ctx.store.recipients(args.id)
    message["events"] = await ctx.store.events(args.id)
    _out(message)
    return 0


async def dev_init(ctx: Context, args: argparse.Namespace) -> int:
    """The dev tenant, owning hato.test (verified, DKIM selector 'dev'), relaying from
    127.0.0.1 (or the networks given)."""
    networks = args.network or [DEV_NETWORK]
    await ctx.directory.upsert_tenant(DEV_TENANT, pool="default", networks=networks)
    await ctx.provisioner.add_domain(
        DEV_DOMAIN, tenant=DEV_TENANT, verified=True, selector=DEV_SELECTOR
    )
    print(f"dev tenant '{DEV_TENANT}' owns {DEV_DOMAIN} and relays from {', '.join(networks)}")
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
    from services.bounce.parse import Kind, parse

    status = 0
    for name in args.files:
        try:
            report = parse(Path(name).read_bytes())
        except OSError as exc:
            print(json.dumps({"file": name, "error": exc.strerror}))
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
    p = argparse.ArgumentParser(prog="hato", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="group", required=True)

    def group(name: str, help: str) -> argparse._SubParsersAction:
        return sub.add_parser(name, help=help).add_subparsers(dest="cmd", required=True)

    def command(g, name: str, run, help: str, *arguments: tuple) -> argparse.ArgumentParser:
        c = g.add_parser(name, help=help)
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

    g = group("tenant", "tenants")
    command(
        g,
        "add",
        tenant_add,
        "create or update a tenant",
        (("name",), {}),
        (("--pool",), {"help": "IP pool"}),
        (("--network",), {"action": "append", "help": "authorised network (CIDR); repeat"}),
        (("--max-message-size",), {"type": int}),
        (("--max-recipients",), {"type": int}),
        (("--messages-per-hour",), {"type": int}),
        (("--max-age",), {"type": float, "help": "seconds deferred mail is retried"}),
        (("--other-pool",), {"action": "append", "help": "a pool messages may name; repeat"}),
        (("--signing-domain",), {"help": "fallback DKIM domain for From domains without a key"}),
    )
    command(g, "list", tenant_list, "list tenants")

    g = group("network", "a tenant's authorised source networks (relay without AUTH)")
    command(g, "add", network_add, "authorise a network", (("tenant",), {}), (("cidr",), {}))
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
    algorithm = (("--algorithm",), {"choices": sorted(ALGORITHMS), "default": "rsa-2048"})
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
        "create an SMTP user; prints its password once",
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
        "create an API key; prints it once",
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
        "add (or update) a member of a pool",
        (("name",), {}),
        (("--member",), {"required": True, "metavar": "IP[=EHLO_NAME]"}),
        (("--warmup",), {"metavar": "N,N,...", "help": "daily caps for day 1, 2, ..."}),
    )
    command(g, "list", pool_list, "list pools")

    g = group("bounce", "bounces")
    bc = g.add_parser("classify", help="classify bounce messages (.eml files); JSON per recipient")
    bc.add_argument("files", nargs="+", metavar="FILE")
    bc.set_defaults(plain=cmd_bounce_classify)

    g = group("message", "message state")
    command(g, "show", message_show, "a message, its recipients and its events", (("id",), {}))

    g = group("dev", "dev mode")
    command(
        g,
        "init",
        dev_init,
        "create the dev tenant and hato.test",
        (("--network",), {"action": "append", "help": "relay for this CIDR, not 127.0.0.1"}),
    )
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


async def _run(settings: CliSettings, args: argparse.Namespace) -> int:
    store = Store(settings.store)
    try:
        await store.ensure_indexes()
        return await args.run(Context(store, settings), args)
    finally:
        await store.close()


def main(argv: list[str] | None = None) -> int:
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

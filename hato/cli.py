"""``hato``: the admin command. Tenants, domains, DKIM keys, message state, and dev mode.

Reads the same ``HATO_*`` settings as the services (``HATO_MONGODB_URL``,
``HATO_MASTER_KEY_FILE`` ...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import dkim
from shared.secrets import SecretBox, generate_master_key
from shared.settings import SecretsSettings, StoreSettings
from shared.store import Store

DEV_TENANT = "dev"
DEV_DOMAIN = "hato.test"
DEV_SELECTOR = "dev"
DEV_NETWORK = "127.0.0.1/32"


class CliSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    store: StoreSettings = Field(default_factory=StoreSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)


def _out(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


async def _with_store(settings: CliSettings, fn: Callable[[Store], Awaitable[int]]) -> int:
    store = Store(settings.store)
    try:
        await store.ensure_indexes()
        return await fn(store)
    finally:
        await store.close()


# -- commands -------------------------------------------------------------------------------


async def tenant_add(store: Store, args: argparse.Namespace, _: CliSettings) -> int:
    await store.directory.upsert_tenant(args.name, pool=args.pool, networks=args.network or [])
    print(f"tenant {args.name}: pool {args.pool}, networks {', '.join(args.network or []) or '-'}")
    return 0


async def tenant_list(store: Store, args: argparse.Namespace, _: CliSettings) -> int:
    for t in await store.directory.tenants():
        print(f"{t['_id']}\tpool={t.get('pool')}\tnetworks={','.join(t.get('networks', []))}")
    return 0


async def domain_add(store: Store, args: argparse.Namespace, settings: CliSettings) -> int:
    existing = await store.directory.domain(args.domain)
    if existing and existing["tenant"] != args.tenant:
        print(f"hato: {args.domain} belongs to tenant {existing['tenant']}", file=sys.stderr)
        return 1
    await store.directory.upsert_domain(args.domain, tenant=args.tenant, verified=args.verified)
    doc = await store.directory.domain(args.domain)
    if not (doc or {}).get("dkim"):
        await _generate(store, settings, args.domain, args.selector)
    print(f"domain {args.domain}: tenant {args.tenant}, verified={args.verified}")
    return await dkim_show(store, args, settings)


async def domain_list(store: Store, args: argparse.Namespace, _: CliSettings) -> int:
    for d in await store.directory.domains():
        selectors = ",".join(k["selector"] for k in d.get("dkim", []))
        print(f"{d['_id']}\ttenant={d['tenant']}\tverified={d.get('verified')}\tdkim={selectors}")
    return 0


async def _generate(store: Store, settings: CliSettings, domain: str, selector: str) -> None:
    box = SecretBox.from_settings(settings.secrets)
    key = await asyncio.to_thread(dkim.generate_rsa, domain.lower(), selector)
    await store.directory.add_dkim_key(domain, dkim.to_document(key, box))


async def dkim_generate(store: Store, args: argparse.Namespace, settings: CliSettings) -> int:
    if await store.directory.domain(args.domain) is None:
        print(f"hato: unknown domain {args.domain} (hato domain add first)", file=sys.stderr)
        return 1
    await _generate(store, settings, args.domain, args.selector)
    return await dkim_show(store, args, settings)


async def dkim_show(store: Store, args: argparse.Namespace, _: CliSettings) -> int:
    doc = await store.directory.domain(args.domain)
    if doc is None:
        print(f"hato: unknown domain {args.domain}", file=sys.stderr)
        return 1
    if not doc.get("dkim"):
        print(f"hato: {args.domain} has no DKIM key (hato dkim generate)", file=sys.stderr)
        return 1
    for key in doc["dkim"]:
        name = dkim.txt_record_name(doc["_id"], key["selector"])
        print(f'{name}. IN TXT "{dkim.txt_record_value(key)}"')
    return 0


async def message_show(store: Store, args: argparse.Namespace, _: CliSettings) -> int:
    message = await store.message(args.id)
    if message is None:
        print(f"hato: no message {args.id}", file=sys.stderr)
        return 1
    message["recipients"] = await store.recipients(args.id)
    message["events"] = await store.events(args.id)
    _out(message)
    return 0


async def dev_init(store: Store, args: argparse.Namespace, settings: CliSettings) -> int:
    """The dev tenant, owning hato.test (verified, DKIM selector 'dev'), relaying from
    127.0.0.1 (or the networks given)."""
    networks = args.network or [DEV_NETWORK]
    await store.directory.upsert_tenant(DEV_TENANT, pool="default", networks=networks)
    await store.directory.upsert_domain(DEV_DOMAIN, tenant=DEV_TENANT, verified=True)
    doc = await store.directory.domain(DEV_DOMAIN)
    if not any(k["selector"] == DEV_SELECTOR for k in (doc or {}).get("dkim", [])):
        await _generate(store, settings, DEV_DOMAIN, DEV_SELECTOR)
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


def cmd_sink(args: argparse.Namespace) -> int:
    from hato.sink import serve

    asyncio.run(serve(Path(args.dir), args.host, args.port))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hato", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="group", required=True)

    tenant = sub.add_parser("tenant", help="tenants").add_subparsers(dest="cmd", required=True)
    t = tenant.add_parser("add", help="create or update a tenant")
    t.add_argument("name")
    t.add_argument("--pool", default="default", help="IP pool (default: default)")
    t.add_argument("--network", action="append", help="authorised source network (CIDR); repeat")
    t.set_defaults(run=tenant_add)
    tenant.add_parser("list", help="list tenants").set_defaults(run=tenant_list)

    domain = sub.add_parser("domain", help="sending domains").add_subparsers(
        dest="cmd", required=True
    )
    d = domain.add_parser("add", help="add a sending domain to a tenant; prints its DNS records")
    d.add_argument("domain")
    d.add_argument("--tenant", required=True)
    d.add_argument("--verified", action="store_true", help="mark verified by the operator")
    d.add_argument("--selector", default="hato", help="DKIM selector of the first key")
    d.set_defaults(run=domain_add)
    domain.add_parser("list", help="list domains").set_defaults(run=domain_list)

    dk = sub.add_parser("dkim", help="DKIM keys").add_subparsers(dest="cmd", required=True)
    g = dk.add_parser("generate", help="generate an RSA-2048 key for a domain")
    g.add_argument("domain")
    g.add_argument("--selector", default="hato")
    g.set_defaults(run=dkim_generate)
    s = dk.add_parser("show", help="print the DNS TXT records to publish")
    s.add_argument("domain")
    s.set_defaults(run=dkim_show)

    msg = sub.add_parser("message", help="message state").add_subparsers(dest="cmd", required=True)
    m = msg.add_parser("show", help="a message, its recipients and its events")
    m.add_argument("id")
    m.set_defaults(run=message_show)

    dev = sub.add_parser("dev", help="dev mode").add_subparsers(dest="cmd", required=True)
    di = dev.add_parser("init", help="create the dev tenant and hato.test")
    di.add_argument("--network", action="append", help="relay for this CIDR instead of 127.0.0.1")
    di.set_defaults(run=dev_init)
    mk = dev.add_parser("master-key", help="write a new master key file unless one exists")
    mk.add_argument("file")
    mk.set_defaults(plain=cmd_master_key)
    sk = dev.add_parser("sink", help="SMTP sink writing each message to an .eml file")
    sk.add_argument("--dir", default="var/outbox")
    sk.add_argument("--host", default="127.0.0.1")
    sk.add_argument("--port", type=int, default=2526)
    sk.set_defaults(plain=cmd_sink)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "plain"):
        return args.plain(args)
    settings = CliSettings()
    try:
        return asyncio.run(_with_store(settings, lambda store: args.run(store, args, settings)))
    except Exception as exc:  # one line for the operator, not a traceback
        print(f"hato: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

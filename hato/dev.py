"""``hato dev``: dev mode. The dev tenant and its verified domain ``hato.test``, the dev DNS
server that publishes the records Hato asks for, and the files and sink a local stack needs
(a master key, a self-signed certificate, an SMTP sink). Rows of ``hato.cli``'s table."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from hato.table import Command, Exit, Failure, arg
from shared import dkim
from shared.admin import cidr
from shared.dns import records_for
from shared.schemas import ChangeKind
from shared.secrets import SecretsError, generate_master_key

if TYPE_CHECKING:
    from hato.cli import Context
    from hato.devdns import Zone

DEV_TENANT = "dev"
DEV_DOMAIN = "hato.test"
DEV_SELECTOR = "dev"
DEV_NETWORK = "127.0.0.1/32"

GROUPS = {
    "dev": "dev mode",
    "dev dns": "the dev DNS server: publish the records Hato asks for",
}


class DevSettings(BaseSettings):
    """Dev mode: the local DNS server's zone that ``hato dev dns`` publishes to."""

    model_config = SettingsConfigDict(env_prefix="HATO_DEV_", extra="ignore")

    dns_zone: str = Field(
        "", description="Zone file (JSON) of the dev DNS server; empty: none (make up sets it)."
    )
    dns_port: int = Field(5300, ge=1, description="Port of the dev DNS server on 127.0.0.1.")


async def dev_init(ctx: Context, args: argparse.Namespace) -> int:
    """The dev tenant, owning hato.test (verified, DKIM selector 'dev'), relaying from
    127.0.0.1 (or the networks given); its records published in the dev DNS."""
    networks = [cidr(n) for n in args.network or [DEV_NETWORK]]
    if await ctx.directory.tenant(DEV_TENANT) is None:
        await ctx.provisioner.create_tenant(DEV_TENANT, networks=networks)
    for network in networks:
        await ctx.directory.add_network(DEV_TENANT, network)
    doc = await ctx.provisioner.add_domain(
        DEV_DOMAIN, tenant=DEV_TENANT, verified=True, selector=DEV_SELECTOR
    )
    if ctx.box is None:
        raise Failure(ctx.box_problem)
    for key in doc.get("dkim", []):
        if dkim.status(key) != dkim.RETIRED:
            try:
                ctx.box.open(key["private_key_sealed"])
            except SecretsError:
                raise Failure(
                    dkim.unopenable(DEV_DOMAIN, key, ctx.box)
                    + f". The database is {ctx.settings.store.url} ({ctx.settings.store.database})"
                    ": if another checkout's stack uses it, stop that one (make down there) or "
                    "give this one its own (HATO_FERRETDB_ADDR=127.0.0.1:27018 make up)"
                ) from None
    await ctx.announce(ChangeKind.TENANTS, DEV_TENANT)
    await ctx.announce(ChangeKind.DOMAINS, DEV_DOMAIN)
    print(f"dev tenant '{DEV_TENANT}' owns {DEV_DOMAIN} and relays from {', '.join(networks)}")
    if ctx.settings.dev.dns_zone:
        _publish(ctx, doc)
    return Exit.OK


def _zone(ctx: Context) -> Zone:
    from hato.devdns import Zone

    if not ctx.settings.dev.dns_zone:
        raise Failure("no dev DNS (HATO_DEV_DNS_ZONE is not set): `make up` starts one and sets it")
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
        raise Failure(f"unknown domain {args.domain}", Exit.NOT_FOUND)
    _publish(ctx, doc)
    return Exit.OK


async def dns_list(ctx: Context, args: argparse.Namespace) -> list[str]:
    return _zone(ctx).lines()


def _lines(lines: list[str], *_: Any) -> None:
    for line in lines:
        print(line)


async def dns_set(ctx: Context, args: argparse.Namespace) -> int:
    _zone(ctx).set(args.name, args.type, args.values)
    print(f"{args.name} {args.type.upper()}: {', '.join(args.values)}")
    return Exit.OK


async def dns_remove(ctx: Context, args: argparse.Namespace) -> int:
    if not _zone(ctx).remove(args.name, args.type):
        raise Failure(f"the dev DNS has no {args.type or 'record'} at {args.name}", Exit.NOT_FOUND)
    print(f"removed {args.type or 'every record'} at {args.name}")
    return Exit.OK


def dns_serve(args: argparse.Namespace) -> int:
    from hato.devdns import serve

    settings = DevSettings()
    zone = args.zone or settings.dns_zone
    if not zone:
        raise Failure("no zone file: give --zone or set HATO_DEV_DNS_ZONE", Exit.USAGE)
    asyncio.run(serve(Path(zone), args.host, args.port or settings.dns_port))
    return Exit.OK


def master_key(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.exists():
        return Exit.OK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(generate_master_key() + "\n")
    print(f"wrote a new master key to {path}")
    return Exit.OK


def cert(args: argparse.Namespace) -> int:
    from hato.devcert import write_self_signed

    if Path(args.cert).exists() and Path(args.key).exists():
        return Exit.OK
    write_self_signed(Path(args.cert), Path(args.key), args.name)
    print(f"wrote a self-signed certificate for {args.name} to {args.cert}")
    return Exit.OK


def sink(args: argparse.Namespace) -> int:
    from hato.sink import serve

    asyncio.run(serve(Path(args.dir), args.host, args.port))
    return Exit.OK


HOST = arg("--host", default="127.0.0.1")

COMMANDS = (
    Command(
        "dev init",
        "create the dev tenant and hato.test (and publish its records in the dev DNS)",
        dev_init,
        (arg("--network", action="append", help="relay for this CIDR, not 127.0.0.1"),),
    ),
    Command(
        "dev dns publish",
        "publish a domain's records (DKIM keys, SPF, return path) as `domain add` printed them",
        dns_publish,
        (arg("domain"),),
    ),
    Command("dev dns list", "every record the dev DNS serves", dns_list, (), _lines, reads=True),
    Command(
        "dev dns set",
        "publish one record set (replacing that name's records of that type)",
        dns_set,
        (
            arg("name"),
            arg("type", metavar="TYPE", help="TXT, CNAME, MX, A or AAAA"),
            arg("values", nargs="+", metavar="VALUE"),
        ),
    ),
    Command(
        "dev dns remove",
        "withdraw the records at a name (of one type, when given)",
        dns_remove,
        (arg("name"), arg("type", nargs="?", metavar="TYPE")),
    ),
    Command(
        "dev dns serve",
        "run the dev DNS server (make up starts it)",
        dns_serve,
        (
            arg("--zone", help="zone file (default: HATO_DEV_DNS_ZONE)"),
            HOST,
            arg("--port", type=int, default=0, help="default: HATO_DEV_DNS_PORT (5300)"),
        ),
        plain=True,
    ),
    Command(
        "dev master-key",
        "write a new master key file unless one exists",
        master_key,
        (arg("file"),),
        plain=True,
    ),
    Command(
        "dev cert",
        "write a self-signed TLS certificate unless one exists",
        cert,
        (arg("cert"), arg("key"), arg("--name", default="localhost")),
        plain=True,
    ),
    Command(
        "dev sink",
        "SMTP sink writing each message to an .eml file",
        sink,
        (arg("--dir", default="var/outbox"), HOST, arg("--port", type=int, default=2526)),
        plain=True,
    ),
)

"""``hato queue``: what waits for delivery, and the operator's hands on it — suspend and
resume delivery for a tenant, destination domain or source IP, retry now, purge (bounce)
what matches a filter, and move a tenant's or domain's mail to another pool. Each is a row of
``COMMANDS`` over the queue commands of ``shared.admin``, joined into ``hato.cli``'s table."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING, Any

from hato.table import Command, arg
from shared.queue_control import Scope

if TYPE_CHECKING:
    from hato.cli import Context

GROUPS = {"queue": "mail waiting for delivery: list, suspend, resume, retry, purge, move"}

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(value: str) -> float:
    """Seconds written ``90``, ``90s``, ``30m``, ``2h`` or ``1d``."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value.lower())
    if found is None or float(found.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a duration like 90, 30m, 2h or 1d: {value!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


async def _scope(ctx: Context, args: argparse.Namespace) -> Scope:
    return await ctx.commands.scope(
        tenant=args.tenant or "",
        domain=args.domain or "",
        source_ip=getattr(args, "ip", None) or "",
        provider=getattr(args, "provider", None) or "",
    )


async def _list(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await ctx.commands.queue_status(await _scope(ctx, args))


async def _suspend(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await ctx.commands.suspend(
        await _scope(ctx, args), reason=args.reason or "", expires_in=args.expires
    )


async def _resume(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await ctx.commands.resume(await _scope(ctx, args))


async def _retry(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await ctx.commands.retry(await _scope(ctx, args))


async def _purge(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    return await ctx.commands.purge(await _scope(ctx, args), reason=args.reason)


async def _move(ctx: Context, args: argparse.Namespace) -> dict[str, Any]:
    if bool(args.pool) == bool(args.clear):
        raise ValueError("give --pool POOL, or --clear to lift the move")
    return await ctx.commands.move(
        await _scope(ctx, args), None if args.clear else args.pool, expires_in=args.expires
    )


async def _lift(ctx: Context, args: argparse.Namespace) -> str:
    await ctx.commands.lift_control(args.id)
    return str(args.id)


# -- how results print -------------------------------------------------------------------------


def _counts(title: str, counts: dict[str, int]) -> None:
    if counts:
        print(f"by {title}: " + ", ".join(f"{k} {n}" for k, n in counts.items()))


def _status(status: dict[str, Any], *_: Any) -> None:
    oldest = status["oldest_seconds"]
    print(
        f"waiting: {status['waiting']} recipient(s)"
        + (f", the oldest for {oldest:.0f} s" if oldest is not None else "")
        + f", {status['attempts']} attempt(s) so far"
    )
    for key, title in (
        ("by_tenant", "tenant"),
        ("by_domain", "destination domain"),
        ("by_source_ip", "source IP"),
        ("by_reason", "reason"),
    ):
        _counts(title, status[key])
    for c in status["controls"]:
        _control(c)


def _control(c: dict[str, Any], *_: Any) -> None:
    scope = ", ".join(
        f"{k} {c[k]}" for k in ("tenant", "domain", "source_ip", "provider") if c.get(k)
    )
    extra = f" to pool {c['pool']}" if c.get("pool") else ""
    extra += f" at {c['factor']:g} of the pace" if c.get("factor") else ""
    until = f"until {c['expires_at'].isoformat()}" if c.get("expires_at") else "until lifted"
    print(
        f"{c['action']} {scope or 'everything'}{extra} ({c['origin']}; {until})"
        f"{': ' + c['reason'] if c.get('reason') else ''}  [{c['id']}]"
    )


def _lifted(c: dict[str, Any], *_: Any) -> None:
    print("lifted: ", end="")
    _control(c)


def _retried(result: dict[str, Any], *_: Any) -> None:
    print(
        f"{result['waiting']} waiting recipient(s) match; the dispatchers send what waits "
        "for a retry now (suspended mail stays suspended)"
    )


def _purged(result: dict[str, Any], *_: Any) -> None:
    print(f"{result['purged']} recipient(s) bounced: {result['reason']}")


def _moved(result: dict[str, Any], *_: Any) -> None:
    (_lifted if result.get("lifted") else _control)(result)


TENANT = arg("--tenant", help="a tenant's mail")
DOMAIN = arg("--domain", help="mail to a destination domain (and its subdomains)")
IP = arg("--ip", help="mail sent from a source IP")
PROVIDER = arg("--provider", help="a provider group (gmail, docomo ...) or destination domain")
EXPIRES = arg(
    "--expires", type=duration, metavar="DURATION", help="lift it by itself after 90, 30m, 2h, 1d"
)
AS_JSON = arg("--json", action="store_true", help="JSON, not lines")

COMMANDS = (
    Command(
        "queue list",
        "what waits: counts by tenant, destination domain, source IP and reason, the oldest, "
        "and the suspensions, moves and rules in force",
        _list,
        (TENANT, DOMAIN, IP),
        _status,
        reads=True,
    ),
    Command(
        "queue suspend",
        "hold delivery for a tenant, destination domain or source IP (mail waits, its "
        "attempts not counted) until resumed or --expires",
        _suspend,
        (TENANT, DOMAIN, IP, PROVIDER, arg("--reason", default=""), EXPIRES, AS_JSON),
        _control,
    ),
    Command(
        "queue resume",
        "lift the suspension given with the same filter; what it held is sent at once",
        _resume,
        (TENANT, DOMAIN, IP, PROVIDER, AS_JSON),
        _lifted,
    ),
    Command(
        "queue retry",
        "send what matches and waits for a retry now",
        _retry,
        (TENANT, DOMAIN, IP, AS_JSON),
        _retried,
    ),
    Command(
        "queue purge",
        "bounce every waiting recipient that matches, with a reason the senders see",
        _purge,
        (TENANT, DOMAIN, IP, arg("--reason", required=True), AS_JSON),
        _purged,
    ),
    Command(
        "queue move",
        "send a tenant's or destination domain's mail (waiting and new) from another pool",
        _move,
        (
            TENANT,
            DOMAIN,
            arg("--pool", help="the pool to send from"),
            arg("--clear", action="store_true", help="lift the move"),
            EXPIRES,
            AS_JSON,
        ),
        _moved,
    ),
    Command(
        "queue lift",
        "lift a suspension, move or rule's action by its id (hato queue list shows them)",
        _lift,
        (arg("id"),),
        lambda result, *_: print(f"lifted {result}"),
    ),
)

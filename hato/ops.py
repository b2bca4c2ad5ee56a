"""``hato``'s operations beyond the admin commands: a message's state, the dead-letter
queue, the AMQP door's team users, resealing secrets after a master-key change, and
classifying bounce files. Each is a row of ``COMMANDS``, joined into ``hato.cli``'s table."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hato.amqp_users import Management, ManagementError, endpoint, team_url
from hato.table import Command, Exit, Failure, arg, note, out
from shared.broker import Revival
from shared.schemas import ChangeKind
from shared.secrets import SecretBox, SecretsError
from shared.views import message_view

if TYPE_CHECKING:
    from hato.cli import Context

GROUPS = {
    "message": "message state",
    "dead": "jobs that failed for good (the dead-letter queue)",
    "amqp": "the AMQP door: RabbitMQ users of the tenants' platform teams",
    "amqp user": "a platform team's RabbitMQ user (management API)",
    "secrets": "what is sealed with the master key",
    "bounce": "bounces",
}


async def message_show(ctx: Context, args: argparse.Namespace) -> int:
    view = await message_view(ctx.store, args.id)
    if view is None:
        raise Failure(f"no message {args.id}", Exit.NOT_FOUND)
    out(view)
    return Exit.OK


# -- dead letters ------------------------------------------------------------------------------


async def _dead(ctx: Context, args: argparse.Namespace, decision: str | None) -> int:
    """List the dead-letter queue, or retry / drop the jobs named by id (or all of them)."""
    broker = await ctx.broker("the dead-letter queue is in RabbitMQ: nothing to show")
    if broker is None:
        return Exit.UNAVAILABLE
    wanted = set(getattr(args, "id", None) or ())
    every = getattr(args, "all", False)
    if decision is not None and not wanted and not every:
        raise Failure("name the jobs by id (see `hato dead list`), or give --all", Exit.USAGE)

    async def act(message: Any) -> str | None:
        if decision is None:
            return None
        return (
            decision if every or hashlib.sha256(message.body).hexdigest()[:16] in wanted else None
        )

    # A retried job's recipients wait again (they were failed with the job).
    revival = Revival(ctx.store.messages) if decision == "retry" else None
    entries = await broker.dead_letters(limit=args.limit, act=act, revival=revival)
    done = [e for e in entries if e["done"]]
    shown = done if decision is not None else entries
    if args.json:
        print(json.dumps(shown, indent=2, default=str))
    else:
        for e in shown:
            # A batch's messages, all of them.
            ids = e.get("message_id") or ",".join(m["message_id"] for m in e.get("messages", ()))
            print(
                f"{e['id']}\t{e.get('kind', '?')}\t{e.get('tenant') or '-'}\t"
                f"{ids or '-'}\t{e['queue']}\t{e['reason']}"
            )
    if decision is not None:
        missing = wanted - {e["id"] for e in done}
        print(f"{len(done)} {'retried' if decision == 'retry' else 'dropped'}")
        if missing:
            raise Failure(
                f"not in the dead-letter queue: {', '.join(sorted(missing))}", Exit.NOT_FOUND
            )
    elif not entries and not args.json:
        print("the dead-letter queue is empty")
    return Exit.OK


async def dead_list(ctx: Context, args: argparse.Namespace) -> int:
    return await _dead(ctx, args, None)


async def dead_retry(ctx: Context, args: argparse.Namespace) -> int:
    return await _dead(ctx, args, "retry")


async def dead_drop(ctx: Context, args: argparse.Namespace) -> int:
    return await _dead(ctx, args, "drop")


# -- the AMQP door's team users ----------------------------------------------------------------


async def amqp_user_add(ctx: Context, args: argparse.Namespace) -> int:
    if await ctx.directory.tenant(args.tenant) is None:
        raise Failure(f"no tenant {args.tenant!r}", Exit.NOT_FOUND)
    prefix = ctx.settings.broker.prefix
    try:
        async with Management(endpoint(ctx.settings.broker)) as api:
            user, password = await api.add_team(prefix, args.tenant)
    except ManagementError as exc:
        raise Failure(str(exc)) from None
    url = team_url(ctx.settings.broker, user, password)
    if args.url:
        print(url)
    else:
        print(f"user: {user}\npassword: {password}\nurl: {url}")
    note(
        f"shown once. It may publish to {prefix}.submit (with an API key of {args.tenant}), "
        f"declare and consume queues named {prefix}.team.{args.tenant}.*, and bind them to "
        f"{prefix}.events with {args.tenant}.* or {args.tenant}.<event type>"
    )
    return Exit.OK


async def amqp_user_remove(ctx: Context, args: argparse.Namespace) -> int:
    try:
        async with Management(endpoint(ctx.settings.broker)) as api:
            removed = await api.remove_team(ctx.settings.broker.prefix, args.tenant)
    except ManagementError as exc:
        raise Failure(str(exc)) from None
    if not removed:
        raise Failure(f"no AMQP team user for {args.tenant!r}", Exit.NOT_FOUND)
    print(f"removed the AMQP team user of {args.tenant}")
    return Exit.OK


async def amqp_user_list(ctx: Context, args: argparse.Namespace) -> int:
    try:
        async with Management(endpoint(ctx.settings.broker)) as api:
            teams = await api.teams(ctx.settings.broker.prefix)
    except ManagementError as exc:
        raise Failure(str(exc)) from None
    if args.json:
        out(teams)
        return Exit.OK
    for t in teams:
        keys = ", ".join(p["read"] for p in t["topic"]) or "none"
        print(f"{t['tenant']}  user {t['user']}  read {t['read']}  event keys {keys}")
    return Exit.OK


# -- secrets -----------------------------------------------------------------------------------


async def secrets_reseal(ctx: Context, args: argparse.Namespace) -> int:
    """Master-key rotation: every stored secret (DKIM private keys, webhook secrets) that does
    not open with the configured master key is opened with the old one and sealed anew."""
    box = ctx.box
    if box is None:
        raise Failure(ctx.box_problem)
    try:
        old = SecretBox(await asyncio.to_thread(Path(args.old_key_file).read_text))
    except OSError as exc:
        raise Failure(f"cannot read {args.old_key_file}: {exc.strerror}") from None
    counts = {"resealed": 0, "current": 0, "unopenable": 0}

    def reseal(token: str) -> str | None:
        try:
            box.open(token)
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
        return box.seal(plain)

    for domain in await ctx.directory.domains():
        keys, changed = [], False
        for key in domain.get("dkim", []):
            if (token := reseal(key["private_key_sealed"])) is not None:
                key = {**key, "private_key_sealed": token, "sealed_with": box.fingerprint}
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
        f"{counts['resealed']} resealed with the master key {box.fingerprint}, "
        f"{counts['current']} already were, {counts['unopenable']} open with neither key"
    )
    return Exit.FAILED if counts["unopenable"] else Exit.OK


# -- bounces -----------------------------------------------------------------------------------


def bounce_classify(args: argparse.Namespace) -> int:
    """One JSON object per recipient found in each message (or one saying it is no bounce)."""
    from shared.bounces.classify import rules
    from shared.bounces.parse import Kind, NotMail, parse

    status = Exit.OK
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
            note(f"bounce classify: {error}")
            status = Exit.FAILED
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


LIMIT = arg("--limit", type=int, default=100, help="look at this many (100)")
AS_JSON = arg("--json", action="store_true", help="JSON, not lines")
PICK = arg("id", nargs="*", help="job ids from `hato dead list`")
EVERY = arg("--all", action="store_true", help="every job in the queue")

COMMANDS = (
    Command(
        "message show",
        "a message, its recipients and its events (JSON)",
        message_show,
        (arg("id"), AS_JSON),
        reads=True,
    ),
    Command(
        "dead list",
        "the dead-lettered jobs: id, kind, tenant, message, queue, reason",
        dead_list,
        (LIMIT, AS_JSON),
        reads=True,
    ),
    Command(
        "dead retry",
        "put jobs back into the queue they died in; their recipients wait again",
        dead_retry,
        (PICK, EVERY, LIMIT, AS_JSON),
    ),
    Command(
        "dead drop",
        "remove jobs for good (their recipients stay failed)",
        dead_drop,
        (PICK, EVERY, LIMIT, AS_JSON),
    ),
    Command(
        "amqp user add",
        "create (or reset) the tenant's team user; prints its new password once",
        amqp_user_add,
        (arg("tenant"), arg("--url", action="store_true", help="print only the team's AMQP URL")),
    ),
    Command(
        "amqp user remove", "delete the tenant's team user", amqp_user_remove, (arg("tenant"),)
    ),
    Command(
        "amqp user list",
        "team users and their permissions",
        amqp_user_list,
        (AS_JSON,),
        reads=True,
    ),
    Command(
        "secrets reseal",
        "after a master-key change: seal again with the new key (HATO_MASTER_KEY_FILE) every "
        "DKIM key and webhook secret sealed with the old one",
        secrets_reseal,
        (arg("--old-key-file", required=True, help="the previous master key"),),
    ),
    Command(
        "bounce classify",
        "classify bounce messages (.eml files); JSON per recipient",
        bounce_classify,
        (arg("files", nargs="+", metavar="FILE"),),
        plain=True,
    ),
)

"""The README, run as a newcomer would: `make up` in a fresh copy of the checkout, then every
block marked ``<!-- test: NAME -->`` in order, in one shell session, checking exit codes and
the outputs that matter; blocks marked ``<!-- skip: NAME — reason -->`` are reported skipped.

The copy has its own ``var/`` (so ``make up`` writes its own keys, tokens and ``var/dev.env``)
and its own database (``HATO_MONGODB_DATABASE``), and shares the RabbitMQ and FerretDB that
``make test`` started. It needs the README's ports; where a developer's own dev stack holds
them the test is skipped with that reason (on CI it fails instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pymongo import MongoClient

from shared import webhooks
from shared.testing import ROOT
from tests.conftest import MONGODB_URL
from tests.helpers.readme import Block, Session, blocks

pytestmark = pytest.mark.integration

README = ROOT / "README.md"
PORTS = (2525, 2526, 2527, 2587, 2465, 8025, 9101, 9102, 9103, 9104, 5300)
ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@dataclass
class Readme:
    """What the blocks share: the session, the copy it runs in, and every block's output."""

    session: Session
    checkout: Path
    database: str
    outputs: dict[str, str] = field(default_factory=dict)
    failed: str = ""

    def captured(self, source: str, pattern: str) -> str:
        match = re.search(pattern, self.outputs.get(source, ""), re.MULTILINE)
        if match is None:
            raise AssertionError(f"nothing like {pattern!r} in the output of {source!r}")
        return match.group(1)

    async def hato(self, *args: str) -> str:
        """Run `hato` the way the README's blocks do (after `source .venv/bin/activate`)."""
        block = Block("check", "test", "", "sh", "", 0)
        result = await self.session.run(block, "hato " + " ".join(args), timeout=60)
        assert result.code == 0, result.output
        return result.output


Hook = Callable[[Readme], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    """What a block must do: exit with ``exit``, and print something matching each ``expect``
    pattern (placeholders of ``subs`` replaced), within ``retry`` seconds of running it again;
    ``subs``: placeholder in the block → (earlier block, pattern capturing its value);
    ``only``: run just the lines starting with these; ``then``: a deeper check afterwards."""

    expect: tuple[str, ...] = ()
    exit: int = 0
    retry: float = 0
    subs: dict[str, tuple[str, str]] = field(default_factory=dict)
    only: tuple[str, ...] = ()
    then: Hook | None = None
    timeout: float = 120


async def _signed_with_the_new_keys(readme: Readme) -> None:
    """The mail sent right after `hato dkim check --activate` activated a key carries that key's
    signature, and the Ed25519 one: no cache made it wait."""
    message_id = readme.captured("dkim-send", rf'"id":\s*"({ID})"')
    rsa = readme.captured("dkim", r"^key (\S+): now active")
    ed25519 = readme.captured("dkim", r"^key (\S+) \(ed25519-sha256\) is active")
    outbox = readme.checkout / "var" / "outbox"
    for _ in range(200):
        found = sorted(outbox.glob(f"*-{message_id}-*.eml"))
        if found:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no copy of {message_id} reached the outbox")
    parsed = email.message_from_bytes(found[0].read_bytes(), policy=email.policy.compat32)
    selectors = sorted(
        re.search(r"\bs=([^;\s]+)", h).group(1) for h in parsed.get_all("DKIM-Signature", [])
    )
    assert selectors == sorted([rsa, ed25519]), selectors


async def _bulk_mail_went_out_from_its_pool_ip(readme: Readme) -> None:
    """Once the second dispatcher runs, the waiting mail is delivered from 127.0.0.2."""
    message_id = readme.captured("pool-send", rf'"id":\s*"({ID})"')
    view: dict = {}
    for _ in range(100):
        view = json.loads(await readme.hato("message", "show", message_id))
        if view["status"] == "delivered":
            break
        await asyncio.sleep(0.2)
    assert view["status"] == "delivered", view
    assert "waiting" not in view
    assert view["recipients"][0]["history"][-1]["source_ip"] == "127.0.0.2"


async def _verify_accepts_hatos_signature(readme: Readme) -> None:
    """The README's verify() accepts what Hato signs and refuses a changed body."""
    namespace: dict = {}
    exec(compile(_code("webhook-verify"), "README webhook-verify", "exec"), namespace)
    body = b'{"events": [{"id": "e1", "type": "bounced"}]}'
    header = webhooks.sign("s3cret", body)
    assert namespace["verify"]("s3cret", body, header)
    assert not namespace["verify"]("s3cret", body + b" ", header)
    for hostile in ("t=" + "9" * 5000 + ",v1=00", "t=-1,v1=00", "v1=00", "t=1,v1=é", ""):
        assert not namespace["verify"]("s3cret", body, hostile)


CHECKS: dict[str, Check] = {
    "quick-start": Check(expect=("Hato is up", "source .venv/bin/activate"), only=("make up",)),
    "activate": Check(),
    "first-mail": Check(expect=(rf"^250 2\.0\.0 Ok: queued as {ID}$",)),
    "message-show": Check(
        subs={"<message id>": ("first-mail", rf"queued as ({ID})")},
        expect=(
            r'^  "status": "delivered",$',
            r'"recipient_counts": \{\s*"delivered": 1\s*\}',
            r"-<message id>-1\.eml$",
            r'^dev\._domainkey\.hato\.test\. IN TXT "v=DKIM1; k=rsa; p=',
        ),
        retry=30,
    ),
    "http-send": Check(expect=(r'"address":\s*"alice@example.com",\s*"status":\s*"queued"',)),
    "http-list": Check(expect=(r'"messages":\s*\[\{"id"', r'"tags":\s*\["order"\]')),
    "console-user": Check(expect=(r"^[A-Za-z0-9_-]{20,}$", r"^desk@hato\.test\ttenant=dev$")),
    "amqp-user": Check(expect=(r"^dev  user hato\.team\.dev ",)),
    "amqp-submit": Check(expect=(r"'status': 202",)),
    "tenants": Check(
        expect=(
            r"^tenant acme: pool default, networks 192\.0\.2\.0/24",
            r"^  hato\._domainkey\.shop\.example\. IN TXT",
            r"^hato\._domainkey\.shop\.example: found$",
            r"^shop\.example: verified$",
            r"^acme relays for 198\.51\.100\.7/32$",
            r"^acme will not mail gone@example\.com$",
            r"^tenant acme: .*networks 192\.0\.2\.0/24, 198\.51\.100\.7/32, limits "
            r'\{"max_recipients": 100',
            r"^printer\ttenant=acme\tallowed_from=scans@shop\.example$",
        )
    ),
    "apikey-add": Check(expect=(r"^hato_[0-9a-f]+_\S+$",)),
    "apikey-revoke": Check(
        subs={"PREFIX": ("apikey-add", r"^hato_([0-9a-f]+)_")}, expect=(r"^revoked API key ",)
    ),
    "admin-api": Check(
        expect=(r'"name":\s*"acme"', r'"networks":\s*\["192\.0\.2\.0/24",\s*"198\.51\.100\.7/32"\]')
    ),
    "dkim": Check(
        expect=(
            r"^key \S+ \(ed25519-sha256\) is active; publish:$",
            r"^new key \S+ \(rsa-sha256\) is pending",
            r"^key hato: now retired$",
            r"^key \S+: now active$",
            r"published, matches$",
        )
    ),
    "dkim-send": Check(expect=(r'"status":\s*"queued"',), then=_signed_with_the_new_keys),
    "pool-send": Check(
        expect=(
            r"^pool bulk: member 127\.0\.0\.2 \(EHLO out1\.hato\.test\)",
            r"^tenant acme: pool default \(may name bulk\)",
            r'"status":\s*"queued"',
            r"^bulk\n  member 127\.0\.0\.2 .*NO dispatcher runs$",
            r"^  waiting in hato\.deliver\.bulk: ",
        )
    ),
    "pool-dispatcher": Check(
        subs={"<bulk message id>": ("pool-send", rf'"id":\s*"({ID})"')},
        expect=(
            r'"waiting": "for a dispatcher of pool bulk: none is running',
            r"^dev: a dispatcher owning 127\.0\.0\.2 runs",
            r"^  served by dev-127\.0\.0\.2 \(127\.0\.0\.2;",
        ),
        then=_bulk_mail_went_out_from_its_pool_ip,
    ),
    "classify": Check(
        expect=(
            r'"file": "tests/corpus/bounces/postfix-user-unknown\.eml".*"reason": "userunknown"',
            r'"file": "tests/corpus/bounces/vacation\.eml".*"reason": "vacation"',
            r"^reason \d\.\d\d  recipient \d\.\d\d  status \d\.\d\d  hard/soft \d\.\d\d  ",
        )
    ),
    "suppressions": Check(
        expect=(r'"address":\s*"gone@example\.com",\s*"reason":\s*"asked us"', r"^204$")
    ),
    "events": Check(expect=(r"^delivered erin@example\.com \{",), timeout=60),
    "webhook-verify": Check(then=_verify_accepts_hatos_signature),
    "sendgrid-send": Check(expect=(r"^HTTP/1\.1 202 ", r"(?i)^x-message-id: [0-9a-f-]{36}\s*$")),
    "postmark-send": Check(expect=(r'"To":"alice@example\.com".*"ErrorCode":0,"Message":"OK"',)),
    "mailgun-send": Check(
        expect=(r'^\{"id":"<[0-9a-f-]{36}@hato\.test>","message":"Queued\. Thank you\."\}$',)
    ),
    "queue": Check(
        expect=(
            r"^suspend domain example\.net \(operator; until \S+\): incident 42  \[suspend:",
            r"^waiting: \d+ recipient\(s\)",
            r'"filter": \{\s*"tenant": "dev"\s*\}',
            r"^lifted: suspend domain example\.net ",
        )
    ),
    "dead-list": Check(expect=(r"^the dead-letter queue is empty$|\t(sign|deliver|result)\t",)),
}


def _readme_blocks() -> list[Block]:
    return blocks(README.read_text())


def _code(name: str) -> str:
    return next(b.code for b in _readme_blocks() if b.name == name)


def _port_taken(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:  # as servers do: a closed connection's TIME_WAIT
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # does not count
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return True
    return False


def _copy_checkout(target: Path) -> None:
    """The checkout as a newcomer has it: sources and scripts, no var/; the virtualenv and
    the built FerretDB are shared with this one (symlinks), not rebuilt."""
    shutil.copytree(
        ROOT,
        target,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info"
        ),
    )
    (target / ".venv").symlink_to(ROOT / ".venv")
    (target / "var").mkdir()
    if (ROOT / "var" / "bin").is_dir():
        (target / "var" / "bin").symlink_to(ROOT / "var" / "bin")


def _newcomer_env(database: str) -> dict[str, str]:
    """This environment less Hato's settings and the virtualenv (a newcomer's shell), plus the
    copy's own database, and the servers when the suite was pointed at other ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATO_") and k != "VIRTUAL_ENV"}
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["HATO_MONGODB_DATABASE"] = database
    for name in ("HATO_AMQP_URL", "HATO_MONGODB_URL"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


@pytest.fixture(scope="module")
async def readme(tmp_path_factory) -> Readme:
    taken = [p for p in PORTS if _port_taken(p)]
    if taken:
        message = (
            f"the README's ports {taken} are in use (a dev stack from `make up`?); "
            "`make down` first to run the README"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    base = tmp_path_factory.mktemp("readme")
    checkout = base / "hato"
    _copy_checkout(checkout)
    state = base / "session"
    state.mkdir()
    database = f"readme{uuid.uuid4().hex[:10]}"
    readme = Readme(Session(checkout, _newcomer_env(database), state), checkout, database)
    yield readme
    # RabbitMQ stays up for the rest of the suite even if this copy's `make up` started it.
    (checkout / "var" / "run" / "rabbitmq.started-by-hato").unlink(missing_ok=True)
    down = await asyncio.create_subprocess_exec(
        "scripts/dev.sh",
        "down",
        cwd=checkout,
        env=readme.session.base_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(120):
        await down.wait()
    with contextlib.closing(MongoClient(os.environ.get("HATO_MONGODB_URL", MONGODB_URL))) as db:
        db.drop_database(database)


def test_every_code_block_is_marked_and_checked() -> None:
    """Every shell and Python block is marked test or skip (with a reason), and every block
    to run has its checks here, and every check a block."""
    found = _readme_blocks()
    to_run = {b.name for b in found if b.kind == "test"}
    assert to_run == set(CHECKS), to_run ^ set(CHECKS)
    assert [b.name for b in found if b.kind == "test"][:2] == ["quick-start", "activate"]


@pytest.mark.parametrize("block", _readme_blocks(), ids=lambda b: b.name)
async def test_readme_block(readme: Readme, block: Block) -> None:
    """The block does what the README says it does (skipped blocks say why they cannot)."""
    if block.kind == "skip":
        pytest.skip(f"README block {block.name!r}: {block.note}")
    if readme.failed:
        pytest.fail(f"an earlier README block failed: {readme.failed}")
    check = CHECKS[block.name]
    code = block.code
    if check.only:
        code = "\n".join(line for line in code.splitlines() if line.strip().startswith(check.only))
    values = {p: readme.captured(src, pattern) for p, (src, pattern) in check.subs.items()}
    for placeholder, value in values.items():
        assert placeholder in code, f"{block.name}: no {placeholder} in the block"
        code = code.replace(placeholder, value)
    patterns = []
    for pattern in check.expect:
        for placeholder, value in values.items():
            pattern = pattern.replace(placeholder, re.escape(value))
        patterns.append(re.compile(pattern, re.MULTILINE))
    deadline = asyncio.get_running_loop().time() + check.retry
    readme.failed = block.name
    while True:
        result = await readme.session.run(block, code, timeout=check.timeout)
        missing = [p.pattern for p in patterns if not p.search(result.output)]
        if (result.code == check.exit and not missing) or (
            asyncio.get_running_loop().time() > deadline
        ):
            break
        await asyncio.sleep(0.5)
    readme.outputs[block.name] = result.output
    assert result.code == check.exit, (
        f"README block {block.name!r} (line {block.line}) exited {result.code}:\n{result.output}"
    )
    assert not missing, (
        f"README block {block.name!r} (line {block.line}) printed none of {missing}:\n"
        f"{result.output}"
    )
    if check.then is not None:
        await check.then(readme)
    readme.failed = ""

"""Hato side by side with Postfix + OpenDKIM on this machine: throughput and latency.

    make bench
    .venv/bin/python -m bench.compare [--messages 20000] [--sizes 1024,20480]
        [--concurrency 20] [--rate 50] [--duration 60] [--systems hato,postfix]
        [--profile DIR] [--rounds N]

Both relays run on loopback, sign every message with RSA-2048 (Hato's signer; OpenDKIM as
Postfix's milter) and deliver everything to one sink (``benchkit sink``, Go), which stamps
when each message arrived and offers PIPELINING and CHUNKING, as the large providers' MX hosts
do (the table says how many messages each relay sent with BDAT). The load comes from
Postfix's ``smtp-source`` through ``benchkit proxy``, which stamps when each transaction began
(MAIL FROM), when its reply to the final "." came back, and tags the message with an
``X-Bench-Id`` header so the two ends can be matched. ``smtp-source`` opens one connection
per message, as it does by default.

Workloads: N messages of each size from 20 concurrent sessions (throughput), then a steady
``--rate`` messages per second for ``--duration`` seconds (latency: ``rate * 1.1``
``smtp-source`` processes started evenly apart, each sending a message a second). Figures per system
and workload: accepted and delivered messages per second, p50/p99 accept latency (MAIL FROM
to the reply after DATA), p50/p99 accept-to-delivered latency, peak RSS of each process kind
and of all together. Hato counts its four services, RabbitMQ and FerretDB; Postfix counts
all its daemons and OpenDKIM.

Both relays run from start to end. With ``--rounds N`` each throughput workload runs as N
parts of ``messages / N``, the systems taking turns part by part (A B, B A, A B ...): the
figures are then the medians of the parts, and the table also gives Hato / Postfix of
throughput and CPU per round. This machine's speed drifts by tens of percent within
minutes; a pair of parts run back to back cancels most of it.

Writes ``bench/results/latest.json`` and ``bench/results/latest.png`` and prints a table
with the ratio Hato / Postfix of every figure. Every run is bounded (``--drain-timeout``)
and stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from bench import layers
from bench.postfix import DOMAIN, SELECTOR, PostfixRelay, descendants
from shared.directory import TenantLimits
from shared.dkim import generate_rsa, to_document
from shared.secrets import SecretBox, generate_master_key
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port

ROOT = Path(__file__).resolve().parents[1]
BENCHKIT = ROOT / "var/bin/benchkit"
RESULTS = ROOT / "bench/results"
AMQP_URL = os.environ.get("HATO_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MONGODB_URL = os.environ.get("HATO_MONGODB_URL", "mongodb://127.0.0.1:27017/")
SENDER = f"bench@{DOMAIN}"
RECIPIENT = "rcpt@sink.test"
SYSTEMS = ("hato", "postfix")


class Relay(Protocol):
    name: str
    port: int

    def processes(self) -> dict[str, list[int]]: ...


# ---- measuring ends ----


class Kit:
    """One ``benchkit`` process (sink or proxy) recording into ``out``."""

    def __init__(self, *args: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [str(BENCHKIT), *args, "-out", str(out)], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"benchkit {args[0]} did not start")

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.out.read_text().splitlines() if line]

    def count(self) -> int:
        with contextlib.suppress(OSError):
            return self.out.read_bytes().count(b"\n")
        return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class RssSampler:
    """Samples a relay's processes every 0.2 s: keeps the peak RSS per process kind (all
    processes of a kind summed) and of everything together, and the CPU time each kind used
    while sampling (processes that exit in between lose at most their last 0.2 s)."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.peak_by_kind: dict[str, float] = {}
        self.peak_total = 0.0
        self._cpu_first: dict[int, float] = {}
        self._cpu_last: dict[int, tuple[str, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> None:
        total = 0.0
        for kind, pids in self.relay.processes().items():
            mb = sum(rss_mb(pid) for pid in pids)
            total += mb
            self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0.0), mb)
            for pid in pids:
                seconds = cpu_seconds(pid)
                if seconds is not None:
                    self._cpu_first.setdefault(pid, seconds if self._task is None else 0.0)
                    self._cpu_last[pid] = (kind, seconds)
        self.peak_total = max(self.peak_total, total)

    def cpu_by_kind(self) -> dict[str, float]:
        """CPU seconds per process kind between the first and the last sample."""
        used: dict[str, float] = {}
        for pid, (kind, last) in self._cpu_last.items():
            used[kind] = used.get(kind, 0.0) + last - self._cpu_first[pid]
        return used

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(0.2)

    def start(self) -> None:
        self.sample()  # processes running now count their CPU time from here
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sample()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, and of its children it has reaped (Postfix's
    master reaps its short-lived daemons)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


# ---- Hato ----


class HatoRelay:
    """Hato's four services against the running RabbitMQ and FerretDB, with their own
    database and queue prefix, delivering everything to the sink."""

    name = "hato"

    def __init__(self, workdir: Path, sink_port: int, concurrency: int) -> None:
        self.workdir = workdir
        self.sink_port = sink_port
        self.concurrency = concurrency
        self.port = free_port()
        self.run = f"bench{int(time.time())}"
        self.store = Store(StoreSettings(url=MONGODB_URL, database=self.run))
        self.stack: Stack | None = None

    async def start(self) -> None:
        master = generate_master_key()
        await self.store.ensure_indexes()
        d = self.store.directory
        await d.upsert_tenant(
            "bench", networks=["127.0.0.1/32"], limits=TenantLimits(messages_per_hour=10**9)
        )
        await d.upsert_domain(DOMAIN, tenant="bench", verified=True)
        await d.add_dkim_key(DOMAIN, to_document(generate_rsa(DOMAIN, SELECTOR), SecretBox(master)))
        throttle = {
            "sink.test": {
                "connections": self.concurrency,
                "per_connection": 1000,
                "per_minute": 10**9,
            }
        }
        logs = self.workdir / "hato-logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.stack = Stack(
            env={
                "HATO_AMQP_URL": AMQP_URL,
                "HATO_AMQP_PREFIX": self.run,
                "HATO_AMQP_QUEUE_EXPIRES": str(3600 * 1000),
                "HATO_MONGODB_URL": MONGODB_URL,
                "HATO_MONGODB_DATABASE": self.run,
                "HATO_MASTER_KEY": master,
                "HATO_VERP_KEY": secrets.token_hex(32),
                "HATO_INGEST_SMTP_PORT": str(self.port),
                "HATO_INGEST_HTTP_PORT": str(free_port()),
                "HATO_BOUNCE_SMTP_PORT": str(free_port()),
                "HATO_DISPATCHER_ROUTES": f"*=127.0.0.1:{self.sink_port}",
                "HATO_DISPATCHER_THROTTLE": json.dumps(throttle),
                "HATO_LOG_LEVEL": os.environ.get("HATO_LOG_LEVEL", "WARNING"),
            },
            log_dir=logs,
        )
        await self.stack.start_all()

    async def stop(self) -> None:
        if self.stack is not None:
            await self.stack.stop_all()
        with contextlib.suppress(Exception):
            await self.store.client.drop_database(self.run)
        await self.store.close()

    def processes(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        if self.stack is not None:
            for name, service in self.stack.processes.items():
                if service.process.returncode is None:
                    found[name] = [service.process.pid]
        ferret = ROOT / "var/run/ferretdb.pid"
        with contextlib.suppress(OSError, ValueError):
            found["ferretdb"] = [int(ferret.read_text().split()[0])]
        beam = subprocess.run(["pgrep", "-f", "beam.smp"], capture_output=True, text=True)
        rabbit = [int(p) for p in beam.stdout.split()]
        found["rabbitmq"] = [p for pid in rabbit for p in (pid, *descendants(pid))]
        return found


# ---- workloads ----


@dataclass
class Workload:
    name: str
    size: int
    messages: int = 0  # throughput: this many from `concurrency` sessions
    concurrency: int = 0
    rate: int = 0  # steady: this many per second ...
    duration: int = 0  # ... for this long

    @property
    def total(self) -> int:
        return self.messages or self.rate * self.duration

    def describe(self) -> str:
        if self.rate:
            return f"{self.rate} msg/s x {self.duration} s, {self.size // 1024} KB"
        return f"{self.messages} x {self.size // 1024} KB, {self.concurrency} sessions"


def smtp_source(port: int, size: int, *extra: str) -> list[str]:
    return [
        shutil.which("smtp-source") or "/usr/sbin/smtp-source",
        "-l",
        str(size),
        "-f",
        SENDER,
        "-t",
        RECIPIENT,
        "-M",
        "client.bench.test",
        *extra,
        f"127.0.0.1:{port}",
    ]


async def generate(work: Workload, port: int) -> None:
    if work.messages:
        cmd = smtp_source(port, work.size, "-s", str(work.concurrency), "-m", str(work.messages))
        await run_checked(cmd)
        return
    # Long-running smtp-source processes, each sending one message, waiting a second (-w 1,
    # whole seconds only) and sending the next; started evenly apart. A transaction takes
    # ~0.1 s, so rate * 1.1 of them offer about `rate` (the accepted msg/s row shows what they
    # did). One process per message offered it exactly, but spawning 50 processes a second
    # competed for the two cores (Hato's accept p50 at this rate went from 70 ms to 600 ms).
    slots = work.rate + work.rate // 10
    procs = []
    for _ in range(slots):
        count = str(max(1, work.total // slots))
        cmd = smtp_source(port, work.size, "-s", "1", "-w", "1", "-m", count)
        procs.append(asyncio.create_task(run_checked(cmd)))
        await asyncio.sleep(1 / slots)
    await asyncio.gather(*procs)


async def run_checked(cmd: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.decode(errors='replace')[-500:]}")


@dataclass
class Figures:
    accepted: int
    delivered: int
    signed: int
    accepted_per_s: float
    delivered_per_s: float
    accept_p50_ms: float
    accept_p99_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float
    peak_rss_mb: float
    rss_by_process_mb: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_msg: float = 0.0
    cpu_ms_per_msg_by_process: dict[str, float] = field(default_factory=dict)
    rejected: int = 0
    wall_s: float = 0.0
    # With --profile, for the profiled workload: process -> layer -> ms (bench.layers)
    cpu_ms_per_msg_by_layer: dict[str, dict[str, float]] = field(default_factory=dict)
    # With --rounds N > 1: each round's throughput and CPU (the figures above are medians)
    rounds: list[dict[str, float]] = field(default_factory=list)
    chunked: int = 0  # delivered with BDAT (RFC 3030) rather than DATA


def pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def figures(accepted: list[list[str]], delivered: list[list[str]], rss: RssSampler) -> Figures:
    ok = {int(r[0]): (int(r[1]), int(r[3])) for r in accepted if r[4] == "250"}
    arrived = {int(r[0]): int(r[1]) for r in delivered if r[0] != "-"}
    start = min(mail for mail, _ in ok.values())
    end_accept = max(reply for _, reply in ok.values())
    matched = {i: t for i, t in arrived.items() if i in ok}
    end_deliver = max(matched.values(), default=start)
    per_msg = {k: v * 1000 / max(1, len(matched)) for k, v in rss.cpu_by_kind().items()}
    return Figures(
        accepted=len(ok),
        delivered=len(matched),
        signed=sum(1 for r in delivered if r[3] == "1" and r[0] != "-" and int(r[0]) in ok),
        chunked=sum(1 for r in delivered if r[4:] == ["BDAT"] and r[0] != "-" and int(r[0]) in ok),
        accepted_per_s=len(ok) / ((end_accept - start) / 1e9),
        delivered_per_s=len(matched) / ((end_deliver - start) / 1e9) if matched else 0.0,
        accept_p50_ms=pct([(r - m) / 1e6 for m, r in ok.values()], 50),
        accept_p99_ms=pct([(r - m) / 1e6 for m, r in ok.values()], 99),
        e2e_p50_ms=pct([(t - ok[i][1]) / 1e6 for i, t in matched.items()], 50),
        e2e_p99_ms=pct([(t - ok[i][1]) / 1e6 for i, t in matched.items()], 99),
        peak_rss_mb=rss.peak_total,
        rss_by_process_mb={k: round(v, 1) for k, v in sorted(rss.peak_by_kind.items())},
        cpu_ms_per_msg=sum(per_msg.values()),
        cpu_ms_per_msg_by_process={k: round(v, 2) for k, v in sorted(per_msg.items())},
        rejected=len(accepted) - len(ok),
        wall_s=(max(end_deliver, end_accept) - start) / 1e9,
    )


class Profiler:
    """py-spy sampling every Python process of a relay while a workload runs; each process's
    samples as collapsed stacks in ``<dir>/<process>.stacks``, and the functions that spent
    the most time themselves (and with what they call) in ``<dir>/<process>.top``."""

    def __init__(self, relay: Relay, folder: Path) -> None:
        self.folder = folder
        self.shares: dict[str, dict[str, float]] = {}  # per process, once stopped: bench.layers
        folder.mkdir(parents=True, exist_ok=True)
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        self.procs = {
            kind: subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "-p",
                    str(pids[0]),
                    "-r",
                    "200",
                    "-f",
                    "raw",
                    "--nonblocking",
                    "-o",
                    str(folder / f"{kind}.stacks"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for kind, pids in relay.processes().items()
            if kind not in ("ferretdb", "rabbitmq") and pids
        }

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(2)  # SIGINT: py-spy writes what it sampled
        for kind, proc in self.procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            stacks = self.folder / f"{kind}.stacks"
            if stacks.exists():
                collapsed = stacks.read_text()
                (self.folder / f"{kind}.top").write_text(top_functions(collapsed))
                self.shares[kind] = layers.by_layer(collapsed)
                (self.folder / f"{kind}.layers").write_text(layers.format_shares(self.shares[kind]))


def top_functions(collapsed: str, most: int = 40) -> str:
    """Functions by self samples and by inclusive samples, from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    under: dict[str, int] = {}
    total = 0
    for frames, n in layers.samples(collapsed):
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            under[frame] = under.get(frame, 0) + n
    out = [f"{total} samples", "", "self %  function"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:most]:
        out.append(f"{100 * n / max(total, 1):6.1f}  {frame}")
    out += ["", "total %  function (with what it calls)"]
    for frame, n in sorted(under.items(), key=lambda kv: -kv[1])[:most]:
        out.append(f"{100 * n / max(total, 1):6.1f}  {frame}")
    return "\n".join(out) + "\n"


async def measure(
    relay: Relay,
    sink: Kit,
    work: Workload,
    workdir: Path,
    drain_timeout: float,
    profile: Path | None = None,
) -> Figures:
    """Runs one workload through a proxy in front of ``relay``; waits for the sink to have
    every accepted message (or ``drain_timeout``). With ``profile``, py-spy samples the
    relay's Python processes meanwhile."""
    tag = f"{relay.name}-{work.name}"
    already = sink.count()
    proxy_port = free_port()
    proxy = Kit(
        "proxy",
        "-listen",
        f"127.0.0.1:{proxy_port}",
        "-upstream",
        f"127.0.0.1:{relay.port}",
        out=workdir / f"{tag}.accepted",
    )
    rss = RssSampler(relay)
    rss.start()
    profiler = Profiler(relay, profile) if profile else None
    try:
        await generate(work, proxy_port)
        await asyncio.sleep(0.3)  # the proxy's last records reach its file
        accepted = sum(1 for r in proxy.lines() if r[4] == "250")
        deadline = time.monotonic() + drain_timeout
        while sink.count() - already < accepted and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.3)
    finally:
        await rss.stop()
        proxy.stop()
        if profiler is not None:
            await asyncio.to_thread(profiler.stop)
    delivered = sink.lines()[already:]
    result = figures(proxy.lines(), delivered, rss)
    if profiler is not None:
        result.cpu_ms_per_msg_by_layer = {
            kind: {
                layer: round(share * result.cpu_ms_per_msg_by_process[kind], 3)
                for layer, share in shares.items()
            }
            for kind, shares in profiler.shares.items()
            if kind in result.cpu_ms_per_msg_by_process
        }
    return result


@contextlib.asynccontextmanager
async def running(name: str, args: argparse.Namespace, workdir: Path) -> AsyncIterator[Running]:
    """``name``'s relay and its sink, started and warmed up; stopped on the way out."""
    sink = Kit("sink", "-listen", f"127.0.0.1:{free_port()}", out=workdir / f"{name}.delivered")
    sink_port = int(_listen_port(sink))
    relay: HatoRelay | PostfixRelay
    try:
        if name == "hato":
            relay = HatoRelay(workdir, sink_port, args.concurrency)
            await relay.start()
        else:
            relay = PostfixRelay(workdir, free_port(), sink_port, free_port())
            await asyncio.to_thread(relay.start)
        try:
            # After a warm-up of 200, the first of four rounds gave a Hato / Postfix CPU
            # ratio 1.1-1.5 times the median of the rounds, in four runs out of four.
            warm = Workload("warm-up", 1024, messages=1000, concurrency=args.concurrency)
            await measure(relay, sink, warm, workdir, args.drain_timeout)
            yield Running(name, relay, sink)
        finally:
            if isinstance(relay, HatoRelay):
                await relay.stop()
            else:
                await asyncio.to_thread(relay.stop)
                relay.cleanup()
    finally:
        sink.stop()


@dataclass
class Running:
    name: str
    relay: Relay
    sink: Kit


def rounds_of(work: Workload, rounds: int) -> list[Workload]:
    """A throughput workload cut into ``rounds`` equal parts (the steady one stays whole)."""
    if rounds <= 1 or not work.messages:
        return [work]
    part = max(1, work.messages // rounds)
    return [replace(work, messages=part) for _ in range(rounds)]


def turns(systems: list[str], round_index: int) -> list[str]:
    """The systems' order in a round: reversed every other round (A B, B A, A B ...), so a
    machine that slows or speeds up during the run weighs on each the same."""
    return list(reversed(systems)) if round_index % 2 else list(systems)


def combined(parts: list[Figures]) -> Figures:
    """One workload's figures from its rounds: counts summed, peaks the largest, every
    rate, latency and CPU figure the median of the rounds'."""
    if len(parts) == 1:
        return parts[0]

    def median(attr: str) -> float:
        return statistics.median(getattr(p, attr) for p in parts)

    def median_by(attr: str) -> dict[str, float]:
        keys = {k for p in parts for k in getattr(p, attr)}
        return {
            k: round(statistics.median(getattr(p, attr).get(k, 0.0) for p in parts), 2)
            for k in sorted(keys)
        }

    rss: dict[str, float] = {}
    for p in parts:
        for k, v in p.rss_by_process_mb.items():
            rss[k] = max(rss.get(k, 0.0), v)
    return Figures(
        accepted=sum(p.accepted for p in parts),
        delivered=sum(p.delivered for p in parts),
        signed=sum(p.signed for p in parts),
        chunked=sum(p.chunked for p in parts),
        accepted_per_s=median("accepted_per_s"),
        delivered_per_s=median("delivered_per_s"),
        accept_p50_ms=median("accept_p50_ms"),
        accept_p99_ms=median("accept_p99_ms"),
        e2e_p50_ms=median("e2e_p50_ms"),
        e2e_p99_ms=median("e2e_p99_ms"),
        peak_rss_mb=max(p.peak_rss_mb for p in parts),
        rss_by_process_mb=rss,
        cpu_ms_per_msg=median("cpu_ms_per_msg"),
        cpu_ms_per_msg_by_process=median_by("cpu_ms_per_msg_by_process"),
        rejected=sum(p.rejected for p in parts),
        wall_s=sum(p.wall_s for p in parts),
        cpu_ms_per_msg_by_layer=next(
            (p.cpu_ms_per_msg_by_layer for p in parts if p.cpu_ms_per_msg_by_layer), {}
        ),
        rounds=[
            {"delivered_per_s": p.delivered_per_s, "cpu_ms_per_msg": p.cpu_ms_per_msg}
            for p in parts
        ],
    )


def paired(results: dict[str, dict[str, Figures]], work: str, attr: str) -> list[float]:
    """Hato / Postfix of ``attr`` in each round of ``work``: each pair ran minutes apart at
    most, so the machine's drift over a run cancels out of these."""
    if not all(s in results for s in SYSTEMS):
        return []
    a, b = (results[s][work].rounds for s in SYSTEMS)
    return [x[attr] / y[attr] for x, y in zip(a, b, strict=True) if y[attr]]


async def bench_all(
    workloads: list[Workload], args: argparse.Namespace, workdir: Path
) -> dict[str, dict[str, Figures]]:
    """Every workload on every system. All relays run from start to end; a throughput
    workload of ``--rounds`` N runs as N parts, the systems taking turns part by part."""
    parts: dict[str, dict[str, list[Figures]]] = {s: {} for s in args.systems}
    async with contextlib.AsyncExitStack() as stack:
        up = {s: await stack.enter_async_context(running(s, args, workdir)) for s in args.systems}
        for i, work in enumerate(workloads):
            for r, part in enumerate(rounds_of(work, args.rounds)):
                for name in turns(args.systems, r):
                    where = f" (round {r + 1} of {args.rounds})" if args.rounds > 1 else ""
                    print(f"  {name}: {part.describe()}{where} ...", file=sys.stderr, flush=True)
                    first = i == 0 and r == 0 and name == "hato"
                    profile = args.profile if args.profile and first else None
                    relay, sink = up[name].relay, up[name].sink
                    done = await measure(relay, sink, part, workdir, args.drain_timeout, profile)
                    parts[name].setdefault(work.name, []).append(done)
                    await asyncio.sleep(2)  # let the queues settle between workloads
    return {s: {w: combined(f) for w, f in by_work.items()} for s, by_work in parts.items()}


def _listen_port(kit: Kit) -> str:
    args = kit.process.args
    assert isinstance(args, list)
    return str(args[args.index("-listen") + 1]).rsplit(":", 1)[1]


# ---- report ----

PAIRED = (("delivered msg/s", "delivered_per_s"), ("CPU ms/msg", "cpu_ms_per_msg"))
ROWS = (
    ("accepted msg/s", "accepted_per_s", "{:.0f}"),
    ("delivered msg/s", "delivered_per_s", "{:.0f}"),
    ("accept p50 ms", "accept_p50_ms", "{:.1f}"),
    ("accept p99 ms", "accept_p99_ms", "{:.1f}"),
    ("e2e p50 ms", "e2e_p50_ms", "{:.1f}"),
    ("e2e p99 ms", "e2e_p99_ms", "{:.1f}"),
    ("peak RSS MB", "peak_rss_mb", "{:.0f}"),
    ("CPU ms/msg", "cpu_ms_per_msg", "{:.1f}"),
)


def table(results: dict[str, dict[str, Figures]], workloads: list[Workload]) -> str:
    out = [f"{'workload':<28} {'figure':<16} {'hato':>9} {'postfix':>9} {'hato/postfix':>13}"]
    for work in workloads:
        label = work.describe()
        for title, attr, fmt in ROWS:
            values = [
                getattr(results[s][work.name], attr) if s in results else None for s in SYSTEMS
            ]
            cells = [fmt.format(v) if v is not None else "-" for v in values]
            ratio = f"{values[0] / values[1]:.2f}" if None not in values and values[1] else "-"
            out.append(f"{label:<28} {title:<16} {cells[0]:>9} {cells[1]:>9} {ratio:>13}")
            label = ""
        for title, attr in (
            ("delivered msg/s", "delivered_per_s"),
            ("CPU ms/msg", "cpu_ms_per_msg"),
        ):
            ratios = paired(results, work.name, attr)
            if len(ratios) > 1:
                each = " ".join(f"{r:.2f}" for r in ratios)
                out.append(
                    f"{'':<28} {title} hato/postfix per round: {each}"
                    f" (median {statistics.median(ratios):.2f})"
                )
        for s in SYSTEMS:
            if s in results:
                f = results[s][work.name]
                note = (
                    f"{f.delivered}/{f.accepted} delivered, {f.signed} DKIM-signed,"
                    f" {f.chunked} with BDAT"
                )
                if f.rejected:
                    note += f", {f.rejected} refused"
                out.append(f"{'':<28} {s}: {note}")
        out.append("")
    out.append("peak RSS by process (MB, all processes of a kind together, largest workload):")
    for s in SYSTEMS:
        if s in results:
            peaks: dict[str, float] = {}
            for f in results[s].values():
                for k, v in f.rss_by_process_mb.items():
                    peaks[k] = max(peaks.get(k, 0.0), v)
            out.append(f"  {s}: " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    out.append("CPU ms per delivered message by process (first throughput workload):")
    for s in SYSTEMS:
        if s in results:
            f = results[s][workloads[0].name]
            cpu = sorted(f.cpu_ms_per_msg_by_process.items(), key=lambda kv: -kv[1])
            out.append(f"  {s}: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu if v >= 0.01))
    for s in SYSTEMS:
        for work in workloads:
            by_layer = results.get(s, {}).get(work.name)
            if by_layer is not None and by_layer.cpu_ms_per_msg_by_layer:
                out.append(layers.report(by_layer.cpu_ms_per_msg_by_layer, work.describe()))
    return "\n".join(out)


def chart(results: dict[str, dict[str, Figures]], workloads: list[Workload], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = (
        ("delivered msg/s", "delivered_per_s"),
        ("accept p99 ms", "accept_p99_ms"),
        ("accept-to-delivered p99 ms", "e2e_p99_ms"),
        ("peak RSS MB", "peak_rss_mb"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 4.5))
    names = [w.describe() for w in workloads]
    width = 0.38
    for ax, (title, attr) in zip(axes, panels, strict=True):
        for k, system in enumerate(s for s in SYSTEMS if s in results):
            values = [getattr(results[system][w.name], attr) for w in workloads]
            xs = [i + (k - 0.5) * width for i in range(len(workloads))]
            ax.bar(xs, values, width, label=system)
        ax.set_title(title)
        ax.set_xticks(range(len(workloads)), names, rotation=15, fontsize=8)
        ax.legend()
    fig.suptitle("Hato vs Postfix + OpenDKIM (RSA-2048), same machine, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


async def main(args: argparse.Namespace) -> None:
    if not BENCHKIT.exists():
        sys.exit(f"{BENCHKIT} is missing: run `make bench` (it builds tools/benchkit)")
    workloads = [
        Workload(f"throughput-{s // 1024}k", s, messages=args.messages, concurrency=c)
        for s in args.sizes
        for c in [args.concurrency]
    ]
    if args.duration:
        workloads.append(Workload("steady", 1024, rate=args.rate, duration=args.duration))
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = ROOT / "var/bench"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    results = await bench_all(workloads, args, workdir)
    engines = engines_used()
    print(table(results, workloads))
    print("\nHato ran on: " + "; ".join(f"{k} {v}" for k, v in engines.items()))
    print(f"Machine: {os.cpu_count()} x {cpu_model()}")
    document = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
        },
        "engines": engines,
        "command": " ".join(sys.argv),
        "workloads": {w.name: w.describe() for w in workloads},
        "rounds": args.rounds,
        "paired_ratios": {
            w.name: {attr: paired(results, w.name, attr) for _, attr in PAIRED}
            for w in workloads
            if args.rounds > 1 and w.messages
        },
        **{s: {w: vars(f) for w, f in r.items()} for s, r in results.items()},
    }
    (RESULTS / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    png = RESULTS / "latest.png"
    drew = chart(results, workloads, png)
    wrote = f" and {png}" if drew else " (no matplotlib: no chart)"
    print(f"\nwrote {RESULTS / 'latest.json'}{wrote}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


def cpu_model() -> str:
    """The processor's name and clock as the kernel reports them: runs on different hosts
    of one cloud give different figures for the same code."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "?"
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in info.splitlines())
    )
    return f"{fields.get('model name', '?')}, {fields.get('cpu MHz', '?')} MHz"


def engines_used() -> dict[str, str]:
    """What Hato's figures were measured on: the store's engine and the broker."""

    def debian(package: str) -> str:
        found = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True
        )
        return found.stdout.strip() or "?"

    driver = re.search(
        r"^require modernc\.org/sqlite (\S+)",
        (ROOT / "tools/ferretdb/go.mod").read_text(),
        re.MULTILINE,
    )
    store = (
        f"MongoDB-compatible server at {MONGODB_URL}"
        if "HATO_MONGODB_URL" in os.environ
        else "FerretDB 1.24.2, SQLite backend (WAL, synchronous=FULL"
        + (f", driver modernc.org/sqlite {driver[1]}" if driver else "")
        + "), with "
        + ", ".join(sorted(p.name for p in (ROOT / "tools/ferretdb").glob("*.patch")))
    )
    if "HATO_MONGODB_URL" not in os.environ:
        store += f"; Go processors: {_ferretdb_procs()}"
    broker = f"RabbitMQ {debian('rabbitmq-server')} (classic queues, {_erlang_schedulers()})"
    return {"store": store, "broker": broker}


def _ferretdb_procs() -> str:
    """GOMAXPROCS of the running FerretDB: its environment's, else the wrapper's default."""
    try:
        pid = (ROOT / "var/run/ferretdb.pid").read_text().split()[0]
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return "?"
    given = [e.partition(b"=")[2].decode() for e in env if e.startswith(b"GOMAXPROCS=")]
    return given[0] if given else "1 (tools/ferretdb's default)"


def _erlang_schedulers() -> str:
    """The schedulers RabbitMQ's emulator was started with (``+S``), else one per core."""
    found = subprocess.run(["pgrep", "-x", "beam.smp"], capture_output=True, text=True)
    for pid in found.stdout.split():
        with contextlib.suppress(OSError):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"-S" in args[:-1]:
                return f"Erlang schedulers {args[args.index(b'-S') + 1].decode()}"
            return "Erlang schedulers: one per core"
    return "Erlang schedulers ?"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1024, 20480])
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--rate", type=int, default=50)
    p.add_argument("--duration", type=int, default=60, help="0: no steady workload")
    p.add_argument("--systems", type=lambda s: s.split(","), default=list(SYSTEMS))
    p.add_argument("--drain-timeout", type=float, default=600)
    p.add_argument("--keep", action="store_true", help="keep var/bench (logs, records)")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="cut each throughput workload into N parts, the systems taking turns part by "
        "part; figures are the medians of the parts, and Hato / Postfix is also given per part",
    )
    p.add_argument(
        "--profile",
        type=Path,
        help="py-spy each Python process during the first workload; stacks and top lists here",
    )
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be 1 or more")
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))

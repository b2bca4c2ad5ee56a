"""Where a Hato process spends its CPU, by layer: py-spy's collapsed stacks grouped by the
innermost frame that belongs to a known layer (the socket system calls, OpenSSL's RSA, the
AMQP client, pymongo, aiosmtpd, Hato's own code, uvloop's loop ...).

``python -m bench.compare --profile DIR`` writes each process's shares to
``DIR/<process>.layers`` and prints them (and keeps them in ``latest.json``) as milliseconds
of CPU per delivered mail: the share times the process's CPU per mail in the same workload, so
a change's effect on one layer shows next to the others.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# (layer, pattern over a frame "function (file:line)"), innermost match wins. The first two
# are looked for in the innermost frame only: time inside a system call or OpenSSL.
_LEAF = [
    (
        "socket writes (system calls; on loopback they also run TCP's receiving side)",
        re.compile(r"^(StreamWriter\.write|PyMongoProtocol\.write|SMTPProtocol\.write) \("),
    ),
    ("RSA signatures (OpenSSL)", re.compile(r"^SigningKey\.sign_digest \(")),
]
_FRAMES = [
    ("DKIM canonicalisation and hashing", re.compile(r"\((dkim/|services/signer/dkim_sign)")),
    ("AMQP client (aiormq, pamqp, aio-pika)", re.compile(r"\((aiormq|pamqp|aio_pika)/")),
    ("Hato's broker layer (publish, consume, seal)", re.compile(r"\(shared/broker/")),
    ("MongoDB driver (pymongo, bson)", re.compile(r"\((pymongo|bson)/")),
    ("pydantic (jobs and events in and out)", re.compile(r"\((pydantic|pydantic_core)/|schemas")),
    ("SMTP server (aiosmtpd)", re.compile(r"\((aiosmtpd/|shared/smtp_server)")),
    ("SMTP client (aiosmtplib)", re.compile(r"\((aiosmtplib/|services/dispatcher/pipelining)")),
    ("tracing (OpenTelemetry)", re.compile(r"\((opentelemetry|trace/|_decorator\.py|propagat)")),
    ("logging", re.compile(r"\((structlog/|logging/|shared/logging)")),
    ("asyncio (tasks, timeouts, streams)", re.compile(r"\(asyncio/(?!runners)")),
    ("Hato's handlers and store", re.compile(r"\((services|shared|hato)/")),
    ("event loop (uvloop's own: epoll, reads, accepts)", re.compile(r"^Runner\.run \(")),
]
OTHER = "other"


def layer_of(stack: list[str]) -> str:
    """The layer one sample (its frames, outermost first) counts for."""
    leaf = stack[-1]
    for name, pattern in _LEAF:
        if pattern.search(leaf):
            return name
    for frame in reversed(stack):
        for name, pattern in _FRAMES:
            if pattern.search(frame):
                return name
    return OTHER


def samples(collapsed: str) -> Iterator[tuple[list[str], int]]:
    """Each stack (its frames, outermost first) of py-spy's collapsed output and how many
    samples it had; lines that are no such record are skipped."""
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def by_layer(collapsed: str) -> dict[str, float]:
    """Each layer's share (0..1) of the samples in py-spy's collapsed stacks, largest first."""
    counts: dict[str, int] = {}
    total = 0
    for frames, n in samples(collapsed):
        total += n
        layer = layer_of(frames)
        counts[layer] = counts.get(layer, 0) + n
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return {layer: n / total for layer, n in ranked} if total else {}


def format_shares(shares: dict[str, float]) -> str:
    return "".join(f"{100 * share:6.1f}  {layer}\n" for layer, share in shares.items())


def report(ms_by_layer: dict[str, dict[str, float]], workload: str) -> str:
    """The table ``bench.compare`` prints: per process, its layers' ms of CPU per mail."""
    lines = [f"CPU ms per delivered message by process and layer (py-spy; {workload}):"]
    for process, layers in sorted(ms_by_layer.items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"  {process} {sum(layers.values()):.2f}:")
        lines += [f"    {ms:5.2f}  {layer}" for layer, ms in layers.items() if ms >= 0.005]
    return "\n".join(lines)

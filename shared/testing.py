"""The testing kit: what tests and benchmarks need to run Hato's services and to stand in
for its boundaries, beside the code they exercise.

- ``free_port`` and ``TcpProxy`` (a connection a test can cut and restore);
- ``Stack``: the four services as real processes (``python -m services.<name>``), as
  operators run them, with one environment;
- ``FakeBroker``, ``MemoryEvents``, ``MemoryMessages`` and ``MemoryStore``: the broker, the
  events repository (``shared.events.Events``), the messages-and-recipients repository
  (``shared.messages.Messages``) and a store holding both, at the boundary of a handler, in
  memory, for unit tests of its rules in milliseconds (the broker refuses event publishes
  while told to; the messages repository moves recipients by the one transition table,
  ``shared.schemas.TRANSITIONS``);
- ``ManualClock``: the time a handler that takes a ``clock`` reads, moved by the test.

Nothing in the services imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shared.errors import Unavailable
from shared.ids import new_id
from shared.schemas import (
    BATCHES,
    BrokerMessage,
    Change,
    Event,
    RecipientStatus,
    Reply,
    moves_from,
    utcnow,
)

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("ingest", "signer", "dispatcher", "bounce")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TcpProxy:
    """Forwards ``listen_host:port`` to ``target``; ``cut()`` drops every connection and stops
    listening, ``restore()`` listens again on the same port."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = free_port(host)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)

    restore = start

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@dataclass
class ServiceProcess:
    name: str
    process: asyncio.subprocess.Process
    ops_port: int
    log_path: Path

    @property
    def ops_url(self) -> str:
        return f"http://127.0.0.1:{self.ops_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, timeout: float = 60) -> None:
        async with httpx.AsyncClient(timeout=1) as client:
            deadline = asyncio.get_running_loop().time() + timeout
            while asyncio.get_running_loop().time() < deadline:
                if self.process.returncode is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.log()[-3000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.ops_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log()[-3000:]}")

    async def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (SIGKILL and -9 when it does not stop in time)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(timeout):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode  # type: ignore[return-value]


@dataclass
class Stack:
    """Starts services with a shared environment (one broker prefix, one database)."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    async def start(self, name: str, *, wait: bool = True, **env: str) -> ServiceProcess:
        ops_port = free_port()
        full_env = {
            **os.environ,
            # Every test's MX hosts and webhook receivers are on loopback: allowed explicitly
            # (a test of the refusal sets it empty).
            "HATO_EGRESS_ALLOW": "127.0.0.0/8",
            **self.env,
            f"HATO_{name.upper()}_OPS_PORT": str(ops_port),
            **env,
        }
        log_path = self.log_dir / f"{name}.log"
        log_file = log_path.open("ab")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            f"services.{name}",
            cwd=ROOT,
            env=full_env,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
        )
        log_file.close()
        service = ServiceProcess(name, process, ops_port, log_path)
        self.processes[name] = service
        if wait:
            await service.wait_ready()
        return service

    async def start_all(self, **env: str) -> None:
        await asyncio.gather(*(self.start(n, **env) for n in SERVICES))

    async def stop_all(self) -> dict[str, int]:
        codes = await asyncio.gather(*(p.terminate() for p in self.processes.values()))
        return dict(zip(self.processes, codes, strict=True))


@dataclass
class FakeBroker:
    """Publishes into lists; ``refuse_events`` event publishes in a row are refused (the
    broker closed the channel, say) before the next ones are confirmed."""

    refuse_events: int = 0
    published: list[tuple[BrokerMessage, bytes]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    refused: int = 0

    async def publish(self, message: BrokerMessage, payload: bytes = b"", **_: Any) -> None:
        if isinstance(message, Event):
            await self.emit([message])
            return
        self.published.append((message, payload))

    def unbatched(self) -> list[tuple[BrokerMessage, bytes]]:
        """What was published, each batch as the jobs it carries."""
        return [
            item
            for message, payload in self.published
            for item in (
                message.split(payload) if isinstance(message, BATCHES) else [(message, payload)]
            )
        ]

    async def emit(self, events: Iterable[Event]) -> None:
        events = list(events)
        if self.refuse_events:
            self.refuse_events -= 1
            self.refused += 1
            raise Unavailable("publish to 'events' not confirmed: channel closed")
        self.events.extend(events)


@dataclass
class MemoryEvents:
    """The writes of ``shared.events.Events`` (``store.events``): events by id, first write
    wins, as the collection's unique ids make it."""

    stored: dict[str, Event] = field(default_factory=dict)

    async def append(self, events: Sequence[Event]) -> None:
        await self.write(events)

    async def write(self, events: Sequence[Event]) -> None:
        for e in events:
            self.stored.setdefault(e.id, e)

    def doc(self, event: Event) -> dict[str, Any]:
        return {"_id": event.id, **event.model_dump(exclude={"id", "kind", "schema_version"})}


@dataclass
class MemoryMessages:
    """The part of ``shared.messages.Messages`` (``store.messages``) that handlers read and
    move, in dicts: ``add`` a message with its recipients (``queued``). Recipient documents
    have the fields the collection's have."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, tenant: str, *addresses: str) -> tuple[str, dict[str, str]]:
        """A message of ``tenant`` to ``addresses``; its id and each address's recipient id."""
        message_id = new_id()
        self.messages[message_id] = {"_id": message_id, "tenant": tenant}
        ids = {}
        for address in addresses:
            rid = new_id()
            self.docs[rid] = {
                "_id": rid,
                "message_id": message_id,
                "tenant": tenant,
                "address": address.lower(),
                "status": RecipientStatus.QUEUED.value,
            }
            ids[address] = rid
        return message_id, ids

    async def message(self, message_id: str) -> dict[str, Any] | None:
        return self.messages.get(message_id)

    async def recipient(self, recipient_id: str) -> dict[str, Any] | None:
        return self.docs.get(recipient_id)

    async def recipient_by_address(self, message_id: str, address: str) -> dict[str, Any] | None:
        return next(
            (
                d
                for d in self.docs.values()
                if d["message_id"] == message_id and d["address"] == address.lower()
            ),
            None,
        )

    async def recipient_docs(self, message_id: str) -> list[dict[str, Any]]:
        return [d for d in self.docs.values() if d["message_id"] == message_id]

    async def fail_dead_lettered(
        self, message_id: str, recipient_ids: Sequence[str], reply: Reply
    ) -> list[dict[str, Any]]:
        """As the store's: those of ``recipient_ids`` a failure may end become ``failed``
        (marked dead-lettered); returns them and those a dead letter failed before."""
        fails = moves_from(Change.FAILURE, RecipientStatus.FAILED)
        found = [
            d
            for d in await self.recipient_docs(message_id)
            if d["_id"] in recipient_ids and (d["status"] in fails or d.get("dead_lettered"))
        ]
        before = [dict(d) for d in found]
        for d in found:
            if d["status"] in fails:
                d.update(
                    status=RecipientStatus.FAILED.value,
                    reply=reply.model_dump(),
                    dead_lettered=True,
                    finished_at=utcnow(),
                )
        return before


@dataclass
class MemoryStore:
    """A ``shared.store.Store`` in memory, to hand a handler where one goes: its ``events``
    (``MemoryEvents``) and its ``messages`` (``MemoryMessages``)."""

    events: MemoryEvents = field(default_factory=MemoryEvents)
    messages: MemoryMessages = field(default_factory=MemoryMessages)


@dataclass
class ManualClock:
    """A clock for handlers that take one (``clock=``, ``shared.schemas.utcnow`` by default):
    it reads ``at`` until the test moves it."""

    at: datetime = field(default_factory=utcnow)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)

"""A RabbitMQ cluster of a test's own: three nodes of Debian's rabbitmq-server on this machine.

Each node has its own name (``hatotest<id>n<k>@localhost``), AMQP and distribution ports on
127.0.0.1 below the ephemeral range (a restarted node gets its ports back), its data and logs
under the test's folder, no plugins, and the cluster's Erlang cookie in a ``HOME`` of its own.
Nothing of the machine's own RabbitMQ (``rabbit@<host>`` on 5672, its cookie and its files) is
read or touched: every command names its node with ``-n``.

Nodes run as whoever runs the tests (root too: ``HOME`` points at the cluster's folder) and
directly as ``beam.smp`` (``RABBITMQ_ALLOW_INPUT`` makes the start script exec the VM instead of
forking it; ``-noinput`` keeps the Erlang shell off), so a node is one process: ``kill()`` is a
real SIGKILL of the broker, and ``setpriv --pdeathsig KILL`` ends it should the test process
die without cleaning up. ``stop()`` ends every node this object started, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

SBIN = Path("/usr/lib/rabbitmq/bin")
SERVER = SBIN / "rabbitmq-server"
CTL = SBIN / "rabbitmqctl"
SETPRIV = shutil.which("setpriv")
# Two schedulers and no busy-waiting: three brokers share this machine's cores with the
# services under test. Distribution listens on loopback only.
ERL_ARGS = (
    "-noinput +S 2:2 +sbwt none +sbwtdcpu none +sbwtdio none "
    "-kernel inet_dist_use_interface {127,0,0,1}"
)
DLX_RETRY_MS = 1000
MAX_MESSAGE_SIZE = 1024 * 1024  # bytes (RabbitMQ 3.10's default is 128 MiB, 4.x's 16 MiB)


def available() -> str | None:
    """Why no cluster can run here, or None when it can."""
    if not SERVER.exists() or not CTL.exists():
        return f"RabbitMQ's scripts are not in {SBIN} (apt-get install rabbitmq-server)"
    with contextlib.suppress(OSError):
        socket.getaddrinfo("localhost", None)
        return None
    return "'localhost' does not resolve (node names are NAME@localhost)"


def _free_low_port(taken: set[int]) -> int:
    """A free loopback port below the kernel's ephemeral range, so that no outgoing
    connection takes it while its node is down."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(20000, max(low, 20100))
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


@dataclass
class Node:
    name: str
    amqp_port: int
    dist_port: int
    base: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.base / "log" / f"{self.name}.log"


@dataclass
class RabbitCluster:
    """``async with RabbitCluster(folder) as cluster``: the nodes started and joined to the
    first; every node stopped on the way out."""

    folder: Path
    size: int = 3
    startup_timeout: float = 90.0
    nodes: list[Node] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.home = self.folder / "home"
        self.home.mkdir(exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")
        tag, taken = secrets.token_hex(3), set()
        for k in range(1, self.size + 1):
            base = self.folder / f"n{k}"
            (base / "log").mkdir(parents=True, exist_ok=True)
            node = Node(f"hatotest{tag}n{k}@localhost", 0, 0, base)
            node.amqp_port, node.dist_port = _free_low_port(taken), _free_low_port(taken)
            (base / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{node.amqp_port}\n"
                # What production clusters run with (the README says so): a node cut off
                # from the majority stops serving instead of diverging.
                "cluster_partition_handling = pause_minority\n"
                # Small, so that a test can go over it cheaply.
                f"max_message_size = {MAX_MESSAGE_SIZE}\n"
            )
            # A dead-letter that at-least-once holds (no queue took it) is routed again after
            # this many ms; 180,000 by default, too long to watch it arrive in a test.
            setting = f"{{dead_letter_worker_publisher_confirm_timeout, {DLX_RETRY_MS}}}"
            (base / "advanced.config").write_text(f"[{{rabbit, [{setting}]}}].\n")
            self.nodes.append(node)

    @property
    def urls(self) -> str:
        """Every node's AMQP URL, comma-separated (what ``HATO_AMQP_URL`` takes)."""
        return ",".join(n.url for n in self.nodes)

    def _env(self, node: Node | None = None) -> dict[str, str]:
        env = {
            "PATH": f"{SBIN}:/usr/sbin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(self.folder / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
        }
        if node is not None:
            env |= {
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(node.amqp_port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.base / "log"),
                "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(node.base / "advanced.config"),
                "RABBITMQ_PID_FILE": str(node.base / "pid"),
                "RABBITMQ_ALLOW_INPUT": "1",
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
            }
        return env

    async def ctl(self, node: Node, *args: str, timeout: float = 60) -> str:
        """``rabbitmqctl -n NODE ARGS``; its output, or RuntimeError with it."""
        process = await asyncio.create_subprocess_exec(
            str(CTL),
            "-n",
            node.name,
            *args,
            env=self._env(),
            cwd=self.folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout):
                out, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: no answer") from None
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)}: {text[-2000:]}")
        return text

    def _spawn(self, node: Node) -> None:
        def limits() -> None:
            # A file handle per queue and connection: the hard limit, as scripts/infra.sh does.
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        command = [str(SERVER)]
        if SETPRIV:
            command = [SETPRIV, "--pdeathsig", "KILL", *command]
        out = (node.base / "console.log").open("ab")
        node.process = subprocess.Popen(
            command,
            env=self._env(node),
            cwd=node.base,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=limits,
        )
        out.close()
        node.starts += 1

    async def _await_startup(self, node: Node) -> None:
        """Until the node's broker runs (its AMQP port answers), bounded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        while loop.time() < deadline:
            if not node.running:
                raise RuntimeError(f"{node.name} exited at start:\n{self.tail(node)}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", node.amqp_port)
                writer.close()
                await self.ctl(node, "await_startup", timeout=self.startup_timeout)
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"{node.name} not up in {self.startup_timeout}s:\n{self.tail(node)}")

    def tail(self, node: Node, lines: int = 40) -> str:
        text = ""
        for path in (node.base / "console.log", node.log_file):
            with contextlib.suppress(OSError):
                text += "".join(path.read_text(errors="replace").splitlines(True)[-lines:])
        return text

    async def start(self) -> None:
        """Start every node, then join the others to the first."""
        for node in self.nodes:
            self._spawn(node)
        await asyncio.gather(*(self._await_startup(n) for n in self.nodes))
        first = self.nodes[0]

        async def join(node: Node) -> None:
            await self.ctl(node, "stop_app")
            await self.ctl(node, "join_cluster", first.name)
            await self.ctl(node, "start_app")

        for node in self.nodes[1:]:  # one at a time: concurrent joins race in mnesia
            await join(node)
        await self.await_members(len(self.nodes))

    async def await_members(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` nodes run in the cluster, as the first running node sees it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        status = ""
        while loop.time() < deadline:
            node = next(n for n in self.nodes if n.running)
            with contextlib.suppress(RuntimeError):
                status = await self.ctl(node, "cluster_status", "--formatter", "json")
                if len(json.loads(status).get("running_nodes", [])) >= count:
                    return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"{count} running nodes not reached in {timeout}s: {status}")

    def kill(self, node: Node) -> None:
        """SIGKILL the node's VM (and whatever it started): a crash, no goodbye."""
        if node.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.process.pid, signal.SIGKILL)
        node.process.wait(timeout=30)

    async def restart(self, node: Node) -> None:
        """Start a stopped node again on its data: it rejoins the cluster."""
        assert not node.running, f"{node.name} still runs"
        self._spawn(node)
        await self._await_startup(node)

    async def stop(self) -> None:
        """End every node this object started: a clean stop, SIGKILL when it does not end."""

        async def stop_one(node: Node) -> None:
            if not node.running:
                return
            with contextlib.suppress(Exception):
                await self.ctl(node, "stop", timeout=20)
            assert node.process is not None
            for _ in range(100):
                if node.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            self.kill(node)

        await asyncio.gather(*(stop_one(n) for n in self.nodes), return_exceptions=True)
        for node in self.nodes:  # whatever gather left (a cancelled stop, say)
            if node.running:
                self.kill(node)

    async def __aenter__(self) -> RabbitCluster:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

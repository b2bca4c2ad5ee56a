"""Hato's services as real processes (``python -m services.<name>``), as operators run them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.net import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "signer", "dispatcher", "bounce")


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

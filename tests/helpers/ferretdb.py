"""A private FerretDB process (built by scripts/infra.sh), for tests that stop the database."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from shared.testing import ROOT, free_port

FERRETDB = ROOT / "var" / "bin" / "ferretdb"


class PrivateFerretDB:
    def __init__(self, data_dir: Path, *, metrics: bool = False) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        # Its Prometheus metrics on /debug/metrics of this port (0: none).
        self.debug_port = free_port() if metrics else 0
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            str(FERRETDB),
            "--listen-addr",
            f"127.0.0.1:{self.port}",
            "--sqlite-url",
            f"file:{self.data_dir}/",
            "--log-level",
            "error",
            *(["--debug-addr", f"127.0.0.1:{self.debug_port}"] if self.debug_port else []),
        )
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(OSError):
                    _, w = await asyncio.open_connection("127.0.0.1", self.port)
                    w.close()
                    return
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.process and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

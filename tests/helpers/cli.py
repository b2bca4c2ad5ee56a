"""The `hato` admin command as a process, the way operators run it."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from shared.testing import ROOT


async def run_hato(env: dict[str, str], *args: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``hato ARGS`` with ``env`` over this environment and no
    settings file unless ``env`` names one (a developer's var/dev.env must not leak in)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hato.cli",
        *args,
        cwd=cwd,
        env={**os.environ, "HATO_ENV_FILE": "", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()

"""The README as a test: its code blocks, how they are marked, and a shell session that runs
them one after the other as a newcomer would type them.

A shell or Python block is preceded by ``<!-- test: NAME -->`` (run it) or
``<!-- skip: NAME — reason -->`` (it cannot run here, and the reason says why). Blocks without
a language (diagrams) are prose.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

CODE_LANGUAGES = {"sh", "bash", "shell", "console", "python", "py"}
_MARK = re.compile(r"^<!--\s*(test|skip):\s*([a-z0-9][a-z0-9-]*)(?:\s+(.*?))?\s*-->\s*$")
_FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")
# What a shell block leaves behind for the next, beyond its exported variables: nothing.
_SESSION_NOISE = ("PWD", "OLDPWD", "SHLVL", "_")


@dataclass(frozen=True, slots=True)
class Block:
    name: str
    kind: str  # "test" or "skip"
    note: str  # the skip reason, or a remark on a test block
    language: str
    code: str
    line: int  # where the fence opens, 1-based

    @property
    def is_python(self) -> bool:
        return self.language in ("python", "py")


class ReadmeError(ValueError):
    """Raised when a code block is not marked, or a mark is not followed by a block."""


def blocks(text: str) -> list[Block]:
    """Every marked code block, in order; raises ReadmeError on an unmarked one."""
    lines = text.splitlines()
    out: list[Block] = []
    pending: tuple[str, str, str, int] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        mark = _MARK.match(line)
        if mark:
            if pending:
                raise ReadmeError(f"line {pending[3]}: mark {pending[1]!r} is not before a block")
            pending = (mark.group(1), mark.group(2), (mark.group(3) or "").lstrip("—- "), i + 1)
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            language = fence.group(1).lower()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ReadmeError(f"line {i + 1}: a code block is never closed")
            if language in CODE_LANGUAGES:
                if pending is None:
                    raise ReadmeError(
                        f"line {i + 1}: a {language} block is not marked "
                        "(<!-- test: NAME --> or <!-- skip: NAME — reason -->)"
                    )
                kind, name, note, _ = pending
                if kind == "skip" and not note:
                    raise ReadmeError(f"line {i + 1}: skipping {name!r} needs a reason")
                out.append(Block(name, kind, note, language, "\n".join(lines[i + 1 : end]), i + 1))
            elif pending is not None:
                raise ReadmeError(f"line {i + 1}: {pending[1]!r} marks a block that is no code")
            pending = None
            i = end + 1
            continue
        if pending and line.strip():
            raise ReadmeError(f"line {pending[3]}: mark {pending[1]!r} is not before a block")
        i += 1
    if pending:
        raise ReadmeError(f"line {pending[3]}: mark {pending[1]!r} is not before a block")
    names = [b.name for b in out]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ReadmeError(f"block names used twice: {sorted(duplicates)}")
    return out


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    output: str  # stdout and stderr, interleaved as written


class Session:
    """One newcomer's shell: each block runs in ``cwd`` with what earlier blocks exported
    (``source .venv/bin/activate``, ``export KEY=...``) and nothing else carried over."""

    def __init__(self, cwd: Path, env: dict[str, str], state_dir: Path) -> None:
        self.cwd = cwd
        self.state = state_dir / "session.env"
        self.scripts = state_dir
        self.base_env = env
        self._n = 0

    async def run(self, block: Block, code: str, *, timeout: float) -> Result:
        self._n += 1
        if block.is_python:
            script = self.scripts / f"{self._n:02d}-{block.name}.py"
            script.write_text(code + "\n")
            command = f'python "{script}"'
        else:
            command = code
        wrapper = self.scripts / f"{self._n:02d}-{block.name}.sh"
        wrapper.write_text(
            f'[ -f "{self.state}" ] && source "{self.state}"\n'
            f"trap 'export -p > \"{self.state}.next\"' EXIT\n"
            "set -eo pipefail\n" + command + "\n"
        )
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(wrapper),
            cwd=self.cwd,
            env=self.base_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                out, _ = await process.communicate()
        except TimeoutError:
            os.killpg(process.pid, 9)
            out, _ = await process.communicate()
            return Result(-1, out.decode(errors="replace") + f"\n[killed after {timeout:g} s]")
        self._keep_exports()
        return Result(process.returncode or 0, out.decode(errors="replace"))

    def _keep_exports(self) -> None:
        following = self.state.with_name(self.state.name + ".next")
        if not following.exists():
            return
        kept = [
            line
            for line in following.read_text().splitlines()
            if not any(line.startswith(f"declare -x {n}=") for n in _SESSION_NOISE)
        ]
        self.state.write_text("\n".join(kept) + "\n")
        following.unlink()

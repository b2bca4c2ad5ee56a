"""Waiting for asynchronous state without fixed sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], *, until: Callable[[T], bool] = bool, timeout: float = 30
) -> T:
    """Call ``probe`` until ``until(result)`` holds; the last result, or TimeoutError."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await probe()
        if until(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met in {timeout}s; last: {result!r}")
        await asyncio.sleep(0.05)

"""Group commit: items submitted by concurrent callers are written together.

The first item is written at once; items arriving while a write is in flight wait for it and
go together in the next one (up to ``max_batch``). So a lone caller pays no extra latency and
a busy service makes one database round trip for many items. Each ``submit`` returns when its
item is written and raises what its batch's write raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[None]], *, max_batch: int) -> None:
        self.write = write
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                await self.write([item for item, _ in batch])
            except Exception as exc:
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
            else:
                for _, f in batch:
                    if not f.done():
                        f.set_result(None)

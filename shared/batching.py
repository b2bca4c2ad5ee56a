"""Group commit: items submitted by concurrent callers are written together.

The first item is written at once; items arriving while a write is in flight wait for it and
go together in the next one (up to ``max_batch``). So a lone caller pays no extra latency and
a busy service makes one database round trip for many items. Each ``submit`` returns when its
item is written (with its result, when ``write`` returns one per item) and raises what its
batch's write raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self, write: Callable[[list[T]], Awaitable[list[R] | None]], *, max_batch: int
    ) -> None:
        self.write = write
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[R | None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R | None:
        future: asyncio.Future[R | None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                results = await self.write([item for item, _ in batch])
            except Exception as exc:
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
            else:
                for i, (_, f) in enumerate(batch):
                    if not f.done():
                        f.set_result(results[i] if results is not None else None)

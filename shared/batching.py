"""Group commit: items submitted by concurrent callers are written together.

The first item is written at once; items arriving while a write is in flight wait for it and
go together in the next one (up to ``max_batch``). So a lone caller pays no extra latency and
a busy service makes one database round trip for many items. Each ``submit`` returns when its
item is written (with its result, when ``write`` returns one per item) and raises what the
write of its item raised.

Under load the batches are small all the same: items come in bursts a few milliseconds apart,
and each burst found the writer idle. So a writer may ``wait``: when its last write carried more
than one item (the service is busy), the next batch waits that long for company before it is
taken. A quiet service, whose writes carry one item each, never waits.

When a batch of several fails, each of its items is written again alone: one caller's bad item
(a document the database refuses) fails that caller only, not the others who happened to share
its round trip. So ``write`` must be safe to repeat for items already written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[list[R] | None]],
        *,
        max_batch: int,
        wait: float = 0.0,
    ) -> None:
        self.write = write
        self.max_batch = max_batch
        self.wait = wait  # seconds; see the module docstring
        self._busy = False  # the last write carried more than one item
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
            if self._busy and self.wait and len(self._pending) < self.max_batch:
                await asyncio.sleep(self.wait)
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            self._busy = len(batch) > 1
            try:
                results = await self.write([item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                for item, f in batch:  # alone: the bad item fails its own caller only
                    try:
                        result = await self.write([item])
                    except Exception as alone:
                        if not f.done():
                            f.set_exception(alone)
                    else:
                        if not f.done():
                            f.set_result(result[0] if result is not None else None)
            else:
                for i, (_, f) in enumerate(batch):
                    if not f.done():
                        f.set_result(results[i] if results is not None else None)

"""Group commit: concurrent items share writes; a lone item is written at once."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import Batcher


async def test_items_arriving_during_a_write_go_together_in_the_next() -> None:
    """The first item is written at once; those arriving while it is written go together in the next
    write, at most max_batch at a time."""
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        writes.append(items)
        await asyncio.sleep(0.05)

    b = Batcher(write, max_batch=3)
    first = asyncio.create_task(b.submit(0))
    await asyncio.sleep(0.01)  # the first write is in flight
    await asyncio.gather(first, *(b.submit(i) for i in range(1, 6)))
    assert writes == [[0], [1, 2, 3], [4, 5]]


async def test_a_bad_item_fails_its_own_caller_only() -> None:
    """The batch [2, 3] fails because of 2; written again alone, 3 succeeds."""
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        writes.append(items)
        if 2 in items:
            raise ConnectionError("down")

    b = Batcher(write, max_batch=2)
    results = await asyncio.gather(*(b.submit(i) for i in range(4)), return_exceptions=True)
    assert [isinstance(r, ConnectionError) for r in results] == [False, False, True, False]
    assert writes == [[0], [1, 2], [1], [2], [3]] or writes == [[0, 1], [2, 3], [2], [3]]
    await b.submit(7)  # the batcher goes on
    with pytest.raises(ConnectionError):
        await b.submit(2)


async def test_a_busy_writer_waits_for_company_and_a_quiet_one_does_not() -> None:
    """After a write of several items the next batch waits ``wait`` for more; after a write
    of one item (a quiet service) the next is taken at once."""
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        writes.append(items)

    b = Batcher(write, max_batch=10, wait=0.05)
    await b.submit(0)  # alone: written at once, no wait after it
    started = asyncio.get_running_loop().time()
    await b.submit(1)
    assert asyncio.get_running_loop().time() - started < 0.04
    await asyncio.gather(b.submit(2), b.submit(3))  # a burst: busy from now on
    late = asyncio.create_task(b.submit(4))
    await asyncio.sleep(0.01)
    await asyncio.gather(late, b.submit(5))  # 5 arrives while 4 waits: they go together
    assert writes == [[0], [1], [2, 3], [4, 5]]

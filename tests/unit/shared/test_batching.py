"""Group commit: concurrent items share writes; a lone item is written at once."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import Batcher


async def test_items_arriving_during_a_write_go_together_in_the_next() -> None:
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

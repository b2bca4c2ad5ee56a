"""EventWriter: concurrent writes share inserts; a failed insert fails every writer in it."""

from __future__ import annotations

import asyncio

import pytest

from services.bounce.events import EventWriter
from shared.schemas import Event, EventType


class FakeStore:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.fail = fail

    async def insert_events(self, events):
        if self.fail:
            raise ConnectionError("store down")
        self.batches.append([e.id for e in events])


def event(i: int) -> Event:
    return Event(id=f"e{i}", type=EventType.ACCEPTED, message_id="m", tenant="t")


async def test_concurrent_events_are_written_in_batches() -> None:
    store = FakeStore()
    writer = EventWriter(store, max_batch=4)  # type: ignore[arg-type]
    await asyncio.gather(*(writer.write(event(i)) for i in range(10)))
    assert sorted(len(b) for b in store.batches) == [2, 4, 4]
    assert sorted(i for b in store.batches for i in b) == sorted(f"e{i}" for i in range(10))


async def test_a_failed_insert_fails_each_waiting_write() -> None:
    writer = EventWriter(FakeStore(fail=True), max_batch=10)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(writer.write(event(i)) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):
        await writer.write(event(9))

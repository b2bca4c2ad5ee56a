"""Frames waiting together leave in one write, in order, and draining still reaches each."""

from __future__ import annotations

import asyncio

import pytest
from aiormq.abc import ChannelFrame
from aiormq.connection import FrameGenerator

from shared import amqp_writes


def frame(payload: bytes, *, drain: bool = False, close: bool = False) -> ChannelFrame:
    future = asyncio.get_running_loop().create_future() if drain else None
    return ChannelFrame(payload=payload, should_close=close, drain_future=future)


async def frames_out(*frames: ChannelFrame) -> list[ChannelFrame]:
    amqp_writes.install()
    queue: asyncio.Queue[ChannelFrame] = asyncio.Queue()
    for f in frames:
        queue.put_nowait(f)
    generator = FrameGenerator(queue)
    out = []
    while not queue.empty():
        out.append(await generator.__anext__())
    return out


@pytest.mark.asyncio
async def test_waiting_frames_are_joined_in_order_and_each_drain_is_kept() -> None:
    """Frames waiting together leave in one write, in their order, and each one waiting for a drain
    is drained when that write is."""
    a, b, c = frame(b"a"), frame(b"b", drain=True), frame(b"c", drain=True)
    [out] = await frames_out(a, b, c)
    assert out.payload == b"abc"
    assert out.should_drain and not out.should_close
    out.drain()  # what aiormq's writer does once the socket took the bytes
    await asyncio.sleep(0)
    assert b.drain_future is not None and b.drain_future.done()
    assert c.drain_future is not None and c.drain_future.done()


@pytest.mark.asyncio
async def test_a_lone_frame_goes_as_it_is() -> None:
    """A frame alone goes out as it is, not copied into a new one."""
    a = frame(b"a", drain=True)
    assert await frames_out(a) == [a]


@pytest.mark.asyncio
async def test_nothing_is_joined_after_a_closing_frame() -> None:
    """A closing frame is the last of its write, so the write still closes the connection; frames
    queued after it go in the next."""
    first, closing, after = frame(b"1"), frame(b"close", close=True), frame(b"late")
    out = await frames_out(first, closing, after)
    assert [f.payload for f in out] == [b"1close", b"late"]
    assert out[0].should_close and not out[1].should_close


@pytest.mark.asyncio
async def test_a_write_stops_growing_past_the_size_limit() -> None:
    """A write takes no more frames once it holds MAX_BYTES; the rest go in the next."""
    big = b"x" * amqp_writes.MAX_BYTES
    out = await frames_out(frame(b"a"), frame(big), frame(b"b"), frame(b"c"))
    assert [len(f.payload) for f in out] == [1 + len(big), 2]


@pytest.mark.asyncio
async def test_a_closed_generator_stops() -> None:
    """Once the connection is closing the frame iterator stops, frames still queued or not, as
    aiormq's own does."""
    amqp_writes.install()
    queue: asyncio.Queue[ChannelFrame] = asyncio.Queue()
    queue.put_nowait(frame(b"a"))
    generator = FrameGenerator(queue)
    generator.close_event.set()
    with pytest.raises(StopAsyncIteration):
        await generator.__anext__()

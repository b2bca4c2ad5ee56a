"""AMQP frames that are ready together go to the socket in one write.

aiormq (pinned in pyproject.toml) writes each queued frame to the socket on its own: a
publish, an ack, a confirm-select each cost a ``send`` system call, and on loopback each such
call also runs the receiving side of TCP. A service handling a batch queues dozens of frames
in one turn of the event loop (the signer: a delivery job and an event per message, and an
ack per job), so under load a sixth of its CPU went on these calls. ``install`` makes aiormq's
writer take every frame already waiting (up to ``MAX_BYTES``) and write them joined; their
order, and which of them the writer waits to drain, are unchanged. The broker reads bigger
chunks too.

aiormq has no option for this, hence a replacement of its frame iterator (the one place its
writer takes frames from the queue); ``tests/unit/test_amqp_writes.py`` holds it to the
behaviour above, and ``install`` refuses an aiormq whose iterator it does not know.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version

import aiormq.connection
from aiormq.abc import ChannelFrame

MAX_BYTES = 256 * 1024  # a bigger frame (a large message body) goes alone or last
_KNOWN = "7.2."  # the aiormq whose FrameGenerator and writer this was written against


def joined(frames: list[ChannelFrame]) -> ChannelFrame:
    """One frame writing ``frames``' payloads in order; draining it drains each of them."""
    if len(frames) == 1:
        return frames[0]
    waiting = [f for f in frames if f.should_drain]
    drain_future: asyncio.Future[None] | None = None
    if waiting:
        drain_future = asyncio.get_running_loop().create_future()
        drain_future.add_done_callback(lambda _: [f.drain() for f in waiting])
    return ChannelFrame(
        payload=b"".join(f.payload for f in frames),
        should_close=frames[-1].should_close,
        drain_future=drain_future,
    )


async def _next_frames(self: aiormq.connection.FrameGenerator) -> ChannelFrame:
    if self.close_event.is_set():
        raise StopAsyncIteration
    frame: ChannelFrame = await self.queue.get()
    self.queue.task_done()
    frames, size = [frame], len(frame.payload)
    while not frames[-1].should_close and size < MAX_BYTES and not self.queue.empty():
        frame = self.queue.get_nowait()
        self.queue.task_done()
        frames.append(frame)
        size += len(frame.payload)
    return joined(frames)


def install() -> None:
    """Make every aiormq connection of this process write waiting frames together."""
    found = version("aiormq")
    if not found.startswith(_KNOWN):
        raise RuntimeError(f"shared.amqp_writes knows aiormq {_KNOWN}x, not {found}")
    aiormq.connection.FrameGenerator.__anext__ = _next_frames  # type: ignore[method-assign]

"""Acks that are ready together go to the broker as one ``basic.ack`` with ``multiple``.

A service working through a batch finishes many jobs in one turn of the event loop (their
group commit returns for all of them at once). One ack each is a frame each for the client to
build and wait on, and for the broker to read and apply. ``Acks`` keeps one channel's open
delivery tags in the order they came. Once the jobs finishing in a turn have all said so, it
acks the run of finished ones that starts at the oldest open tag with one ``multiple`` ack,
and any finished job behind one still running with an ack of its own, at once: a slow job
(a delivery to a slow server) never holds another job's ack back, so the prefetch window
stays as full as before.

A ``multiple`` ack up to tag T also settles every unsettled tag below T on the channel, so
every delivery of the channel must pass through ``delivered`` before it is settled, and in
the order they came: aiormq starts one task per delivery in that order, and the consumers
call ``delivered`` before their first ``await``. A tag settled otherwise (a nack) leaves with
``settled``.
"""

from __future__ import annotations

import asyncio
import itertools

from aiormq.abc import AbstractChannel


class Acks:
    """The acks of one channel's deliveries (the module docstring)."""

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._open: dict[int, bool] = {}  # delivery tag → finished, in the order delivered
        self._next: asyncio.Future[None] | None = None  # the flush the next acks go in

    def delivered(self, tag: int) -> None:
        """``tag`` came and is not settled yet."""
        self._open[tag] = False

    def settled(self, tag: int) -> None:
        """``tag`` was settled otherwise (nacked): no ack may cover it any more."""
        self._open.pop(tag, None)

    @property
    def open(self) -> int:
        """How many delivered tags are not acked yet."""
        return len(self._open)

    async def ack(self, tag: int) -> None:
        """Ack ``tag`` together with the others finishing in this turn of the loop; returns
        once the ack is written (raises what writing it raised)."""
        if tag not in self._open:  # not seen by ``delivered``: alone, as it came
            await self._channel.basic_ack(tag)
            return
        self._open[tag] = True
        if self._next is None:
            self._next = asyncio.ensure_future(self._flush())
        await asyncio.shield(self._next)

    def _due(self) -> tuple[int | None, int, list[int]]:
        """The end of the finished run from the oldest open tag (None: no such run), its
        length, and the finished tags behind an unfinished one; all of them leave."""
        run = list(itertools.takewhile(self._open.__getitem__, self._open))
        for tag in run:
            del self._open[tag]
        behind = [tag for tag, finished in self._open.items() if finished]
        for tag in behind:
            del self._open[tag]
        return (run[-1] if run else None), len(run), behind

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the other jobs finishing in this turn mark theirs first
        self._next = None  # acks from now on go in the next flush
        upto, count, behind = self._due()
        sends = [self._channel.basic_ack(tag) for tag in behind]
        if upto is not None:
            sends.insert(0, self._channel.basic_ack(upto, multiple=count > 1))
        if len(sends) == 1:
            await sends[0]
        else:  # queued together, so written together (shared/amqp_writes.py)
            await asyncio.gather(*sends)

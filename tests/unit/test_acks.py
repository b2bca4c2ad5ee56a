"""shared/broker/acks.py: which acks go to the broker when jobs finish, against a channel
that records them (the rules; tests/integration/test_broker.py runs them on RabbitMQ)."""

from __future__ import annotations

import asyncio

import pytest

from shared.broker.acks import Acks


class Channel:
    """Records the acks it is asked to send; ``fail`` makes sending raise."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bool]] = []
        self.fail = False

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        if self.fail:
            raise RuntimeError("channel closed")
        self.sent.append((tag, multiple))


async def test_jobs_finishing_in_one_turn_are_acked_with_one_multiple_ack() -> None:
    """Five jobs finishing together: one ack, up to the last, with ``multiple``."""
    channel = Channel()
    acks = Acks(channel)  # type: ignore[arg-type]
    for tag in range(1, 6):
        acks.delivered(tag)
    await asyncio.gather(*(acks.ack(tag) for tag in (3, 1, 5, 2, 4)))
    assert channel.sent == [(5, True)]
    assert acks.open == 0


async def test_a_job_still_running_holds_back_no_other_ack() -> None:
    """Finished jobs behind an unfinished one are acked each on its own, at once; the
    unfinished one stays open, and the run before it goes as one ack."""
    channel = Channel()
    acks = Acks(channel)  # type: ignore[arg-type]
    for tag in range(1, 7):
        acks.delivered(tag)
    await asyncio.gather(*(acks.ack(tag) for tag in (1, 2, 4, 6)))
    assert channel.sent == [(2, True), (4, False), (6, False)]
    assert acks.open == 2  # 3 and 5
    await acks.ack(3)
    assert channel.sent[-1] == (3, False)
    await acks.ack(5)
    assert channel.sent[-1] == (5, False)
    assert acks.open == 0


async def test_a_nacked_tag_is_never_covered_by_a_multiple_ack() -> None:
    """A tag settled otherwise leaves the open ones: the jobs around it are acked as a run
    without it only when nothing before them is open."""
    channel = Channel()
    acks = Acks(channel)  # type: ignore[arg-type]
    for tag in (1, 2, 3):
        acks.delivered(tag)
    acks.settled(1)
    await asyncio.gather(acks.ack(2), acks.ack(3))
    assert channel.sent == [(3, True)]


async def test_jobs_finishing_in_later_turns_go_in_later_acks() -> None:
    """An ack asked for after a flush has taken its tags goes in the next one."""
    channel = Channel()
    acks = Acks(channel)  # type: ignore[arg-type]
    for tag in (1, 2):
        acks.delivered(tag)
    await acks.ack(1)
    await acks.ack(2)
    assert channel.sent == [(1, False), (2, False)]


async def test_an_unknown_tag_is_acked_alone_and_a_failed_write_reaches_the_waiters() -> None:
    """A tag never marked delivered is acked on its own; when writing fails, every job
    waiting on that ack gets the error (consume() then leaves it to the broker)."""
    channel = Channel()
    acks = Acks(channel)  # type: ignore[arg-type]
    await acks.ack(9)
    assert channel.sent == [(9, False)]
    acks.delivered(10)
    acks.delivered(11)
    channel.fail = True
    results = await asyncio.gather(acks.ack(10), acks.ack(11), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    with pytest.raises(RuntimeError):
        await acks.ack(12)

"""Sign jobs that arrive in one turn of the event loop leave in one broker message, and every
caller hears the broker's answer for the message that carries its job."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.ingest.sign_jobs import SignJobs
from shared.errors import Unavailable
from shared.schemas import BrokerMessage, Recipient, SignBatch, SignJob


def job(n: int) -> SignJob:
    return SignJob(
        message_id=f"m{n}",
        tenant="acme",
        mail_from="a@shop.test",
        from_domain="shop.test",
        recipients=(Recipient(id=f"r{n}", address="b@ok.test"),),
        pool="default",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@dataclass
class Broker:
    """Confirms after a turn of the loop, or refuses everything."""

    refuse: bool = False
    published: list[tuple[BrokerMessage, bytes]] = field(default_factory=list)

    async def publish(self, message: BrokerMessage, payload: bytes = b"", **_: Any) -> None:
        self.published.append((message, payload))
        await asyncio.sleep(0)
        if self.refuse:
            raise Unavailable("publish to 'work' not confirmed: channel closed")


def raw(n: int, size: int = 10) -> bytes:
    return str(n).encode() * size


async def test_jobs_of_one_turn_leave_together_and_a_job_alone_as_itself() -> None:
    """Five jobs published at once are one batch holding each message; a job published
    alone later is a plain sign job."""
    broker = Broker()
    jobs = SignJobs(broker)
    await asyncio.gather(*(jobs.publish(job(n), raw(n)) for n in range(5)))
    [(batch, payload)] = broker.published
    assert isinstance(batch, SignBatch)
    assert batch.split(payload) == [(job(n), raw(n)) for n in range(5)]

    await jobs.publish(job(9), raw(9))
    assert broker.published[1] == (job(9), raw(9))


async def test_a_refused_batch_fails_every_job_in_it() -> None:
    """No confirm: each caller hears Unavailable (and answers 451), none returns."""
    jobs = SignJobs(Broker(refuse=True))
    outcomes = await asyncio.gather(
        *(jobs.publish(job(n), raw(n)) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, Unavailable) for o in outcomes)


@pytest.mark.parametrize(
    ("max_jobs", "max_bytes", "sizes", "expected"),
    [
        (3, 1 << 20, [10] * 7, [3, 3, 1]),
        (32, 25, [10] * 5, [2, 2, 1]),
        (32, 25, [10, 30, 10], [1, 2]),  # a message the size of a batch goes alone
        (1, 1 << 20, [10] * 3, [1, 1, 1]),  # off: a message a job
    ],
    ids=["by-count", "by-size", "large-alone", "off"],
)
async def test_batches_are_cut_by_count_and_size(
    max_jobs: int, max_bytes: int, sizes: list[int], expected: list[int]
) -> None:
    """No batch holds more than ``max_jobs`` jobs or more than about ``max_bytes`` of
    messages, and no job is left out or published twice."""
    broker = Broker()
    jobs = SignJobs(broker, max_jobs=max_jobs, max_bytes=max_bytes)
    await asyncio.gather(*(jobs.publish(job(n), raw(n, s)) for n, s in enumerate(sizes)))
    counts = [len(m.jobs) if isinstance(m, SignBatch) else 1 for m, _ in broker.published]
    assert sorted(counts, reverse=True) == sorted(expected, reverse=True)
    ids = [
        j.message_id
        for m, _ in broker.published
        for j in (m.jobs if isinstance(m, SignBatch) else (m,))
    ]
    assert sorted(ids) == sorted(f"m{n}" for n in range(len(sizes)))

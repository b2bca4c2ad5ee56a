"""Leases on the real MongoDB-compatible server: one holder at a time, expiry and take-over,
racing acquisitions, renewal while a job works, and hand-over on release."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from shared.leases import Leases
from shared.store import Store
from tests.conftest import unique

pytestmark = pytest.mark.integration


def leases(store: Store, who: str, ttl: float = 3.0) -> Leases:
    return Leases(store.db, holder=f"{who}-{unique('')}", ttl=ttl)


class Loops:
    """A process's periodic jobs (what ``Runtime.every`` does); ``kill()`` stops them with no
    goodbye, as SIGKILL would."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []

    def every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                await job()

        self.tasks.append(asyncio.create_task(loop()))

    async def kill(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_one_holder_at_a_time_and_renewals_keep_it(store: Store) -> None:
    """The first taker holds the lease; another cannot take it while the holder renews."""
    await Leases(store.db, holder="x").ensure_indexes()
    a = leases(store, "a", ttl=3.0).lease("job")
    b = leases(store, "b", ttl=3.0).lease("job")
    assert await a.acquire()
    assert not await b.acquire()
    for _ in range(6):  # two TTLs in all
        await asyncio.sleep(a.renew_every)
        assert await a.acquire()
        assert not await b.acquire()
    assert a.held and not b.held
    assert (await b.latest())["holder"] == a.holder


async def test_an_expired_lease_is_taken_over_and_the_old_holder_knows(store: Store) -> None:
    """A holder that stops renewing loses the lease after its TTL: another takes it, and the
    old holder stops acting before that (its own margin) and cannot take it back."""
    a = leases(store, "a", ttl=2.0).lease("job")
    b = leases(store, "b", ttl=2.0).lease("job")
    assert await a.acquire()
    assert not await b.acquire()
    await asyncio.sleep(1.7)
    assert not a.held  # 2 s minus its margin of 0.4 s
    assert not await b.acquire()  # not expired yet for others
    await asyncio.sleep(0.4)
    assert await b.acquire()
    assert not await a.acquire()
    assert (await a.latest())["holder"] == b.holder


async def test_racing_first_acquisitions_have_one_winner(store: Store) -> None:
    """Eight processes taking a lease nobody held yet, at once: exactly one gets it (the
    others lose the race for the first term's unique _id), every time."""
    for round_ in range(10):
        contenders = [leases(store, f"p{i}").lease(f"race{round_}") for i in range(8)]
        won = await asyncio.gather(*(c.acquire() for c in contenders))
        assert sum(won) == 1, won
        winner = contenders[won.index(True)]
        assert (await winner.latest())["holder"] == winner.holder


async def test_racing_takeovers_of_an_expired_lease_have_one_winner(store: Store) -> None:
    """Eight processes taking over one expired lease at once: exactly one gets it. (A
    conditional find_one_and_update is no such guard on FerretDB 1.24: all may "win".)"""
    for round_ in range(10):
        first = leases(store, "dead", ttl=0.2).lease(f"takeover{round_}")
        assert await first.acquire()
        await asyncio.sleep(0.25)
        contenders = [leases(store, f"p{i}").lease(f"takeover{round_}") for i in range(8)]
        won = await asyncio.gather(*(c.acquire() for c in contenders))
        assert sum(won) == 1, won


async def test_release_hands_the_lease_over_at_once(store: Store) -> None:
    """A stopping holder releases its lease: another replica takes it without waiting for
    the TTL, and old terms are pruned (the previous one is kept)."""
    a = leases(store, "a", ttl=60).lease("job")
    b = leases(store, "b", ttl=60).lease("job")
    assert await a.acquire()
    await a.release()
    assert not a.held
    assert await b.acquire()
    names = await store.db.leases.find({"name": "job"}).to_list()
    assert [d["version"] for d in sorted(names, key=lambda d: d["version"])] == [2, 3]


async def test_a_job_longer_than_the_ttl_keeps_its_lease(store: Store) -> None:
    """``run`` renews the lease while its job works: a job over two TTLs long keeps it, and
    another process cannot take it meanwhile."""
    a = leases(store, "a", ttl=1.5).lease("job")
    b = leases(store, "b", ttl=1.5).lease("job")
    running = asyncio.create_task(a.run(lambda: asyncio.sleep(4.0)))
    await asyncio.sleep(0.05)
    stolen = []
    while not running.done():
        stolen.append(await b.acquire())
        await asyncio.sleep(0.1)
    assert running.result() is True
    assert not any(stolen)


async def test_a_job_is_cancelled_when_its_lease_is_lost(store: Store) -> None:
    """When another process took the lease (the holder stalled past its TTL), the holder's
    job is cancelled at its next renewal, so the work does not go on twice."""
    a = leases(store, "a", ttl=0.9).lease("job")
    stopped = asyncio.Event()

    async def job() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    running = asyncio.create_task(a.run(job))
    await asyncio.sleep(0.1)
    latest = await a.latest()
    # What a take-over writes: the next term, someone else's.
    version = latest["version"] + 1
    await store.db.leases.insert_one(
        {**latest, "_id": f"job#{version:012d}", "version": version, "holder": "thief"}
    )
    async with asyncio.timeout(5):
        assert await running is False
    assert stopped.is_set() and not a.held


async def test_a_periodic_job_runs_on_one_replica_and_moves_when_it_dies(store: Store) -> None:
    """``every``: of two replicas scheduling the same job, only the holder runs it; when the
    holder dies without releasing (SIGKILL), the other runs it within about one TTL."""
    ran: list[str] = []
    replicas = {}
    for name in ("a", "b"):
        lease = leases(store, name, ttl=3.0).lease("rotation")
        loops = Loops()

        async def job(name: str = name) -> None:
            ran.append(name)

        lease.every(loops, 0.05, job)
        replicas[name] = (lease, loops)
    await asyncio.sleep(2.5)
    assert len(set(ran)) == 1 and len(ran) > 10, ran
    holder = ran[-1]
    other = "b" if holder == "a" else "a"
    await replicas[holder][1].kill()
    ran.clear()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    while other not in ran:
        assert loop.time() - killed_at < 8, "no take-over"
        await asyncio.sleep(0.02)
    # Not before the dead holder's term expired: it renewed at most a third of a TTL ago.
    assert 1.5 < loop.time() - killed_at
    assert set(ran) == {other}
    await replicas[other][1].kill()


async def test_close_lets_the_job_finish_then_releases(store: Store) -> None:
    """A stopping holder lets its running job finish (within the grace), then releases."""
    a = leases(store, "a", ttl=60).lease("job")
    b = leases(store, "b", ttl=60).lease("job")
    finished = asyncio.Event()

    async def job() -> None:
        await asyncio.sleep(0.3)
        finished.set()

    running = asyncio.create_task(a.run(job))
    await asyncio.sleep(0.05)
    await a.close(grace=5)
    assert finished.is_set()
    assert await running is True
    assert await b.acquire()
    assert not await a.acquire()  # closed: it takes nothing any more

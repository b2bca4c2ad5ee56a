"""Leases in MongoDB: work that must not run on two replicas at once runs on the one holding
its lease; another replica takes over when the holder stops renewing (it was killed, hangs, or
lost the database).

A lease is a chain of *terms*, one document each in the ``leases`` collection::

    {_id: "<name>#<version>", name, version, holder, expires_at, at}

A process takes term n+1 by **inserting** it, when term n (the latest) is its own (a renewal)
or has expired (a take-over); of processes racing for n+1 the unique ``_id`` lets exactly one
win, the others get a DuplicateKeyError and know who holds. Terms are never updated. That is
on purpose: FerretDB 1.24 (dev and tests) has no atomic conditional update — its
findAndModify reads the matching document, then writes it back by ``_id`` in a transaction of
its own (``internal/handler/msg_findandmodify.go`` → ``common.UpdateDocument`` →
``UpdateAll``): when eight processes took over one expired lease at once with
``find_one_and_update({_id, expires_at: {$lte: now}}, ...)``, as many as all eight "won" it
in a trial here. A unique insert is atomic on FerretDB and MongoDB alike.

Times: a term's ``expires_at`` is the holder's wall clock plus the TTL, and a replica takes
over when its own wall clock is past it; the holder stops acting a margin before that (its
monotonic clock), so clocks may disagree by up to that margin (``min(ttl / 5, 2 s)``).

A holder renews every third of the TTL; a job keeps renewing while it works, and is
cancelled when the lease is lost or cannot be renewed before its term ends (another replica
may start the same work then). So a job runs on one replica at a time unless the holder's
process stalls past its term's end while the job is in flight (paused by the OS, say) or the
clocks disagree by more than the margin: then that work may be done twice. Every job put
under a lease in Hato is safe to repeat; the lease is what keeps it from being repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pymongo.errors
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from shared import logging as hlog

log = hlog.get_logger(__name__)

RELEASED = ""  # the holder of a term that ends a lease at once (a stopping holder's last)
MAX_MARGIN = 2.0  # seconds a holder stops acting before its term expires (clock skew)


def holder_id(service: str) -> str:
    """This process as a lease holder: service, host (the pod name on Kubernetes) and pid,
    plus a random part so that a restarted process with the same pid is someone else."""
    return f"{service}@{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Scheduler(Protocol):
    """What runs periodic jobs (``shared.runtime.Runtime``)."""

    def every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None: ...


@dataclass(frozen=True, slots=True)
class Term:
    """The term this process holds: its version, when it was taken and until when this
    process may act on it (event-loop time)."""

    version: int
    taken: float
    until: float


class Lease:
    """One named lease as seen by one process. ``acquire()`` takes or renews it; ``run(job)``
    runs a job only while it is held; ``every(...)`` makes a periodic job a singleton."""

    def __init__(
        self, collection: AsyncCollection[dict[str, Any]], name: str, *, holder: str, ttl: float
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"lease {name}: the TTL must be positive, not {ttl}")
        if not holder:
            raise ValueError(f"lease {name}: a holder needs a name")
        self.collection = collection
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.renew_every = ttl / 3
        self.margin = min(ttl / 5, MAX_MARGIN)
        self._term: Term | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._running: asyncio.Task[Any] | None = None

    def __repr__(self) -> str:
        return f"Lease({self.name!r}, holder={self.holder!r}, held={self.held})"

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    @property
    def held(self) -> bool:
        """Whether this process holds the lease now (its own view, which errs on the safe
        side: it stops a margin before others may take over)."""
        return self._term is not None and self._now() < self._term.until

    async def acquire(self) -> bool:
        """Take the lease when it is free or expired, or renew it when it is ours: True while
        this process holds it. A term younger than half the renewal interval is not renewed
        (callers may ask often). A database error is logged and changes nothing: the lease
        stays held until its term runs out."""
        if self._closed:
            return self.held
        async with self._lock:
            term = self._term
            if term is not None and self.held and self._now() - term.taken < self.renew_every / 2:
                return True
            try:
                return await self._take()
            except pymongo.errors.PyMongoError as exc:
                log.warning("lease not renewed: database error", lease=self.name, error=repr(exc))
                return self.held

    async def _take(self) -> bool:
        taken, now = self._now(), datetime.now(UTC)
        latest = await self.latest()
        if latest is not None:
            holder = latest["holder"]
            if holder not in (self.holder, RELEASED) and _aware(latest["expires_at"]) > now:
                self._lost(holder)
                return False
        version = (latest["version"] if latest else 0) + 1
        try:
            await self.collection.insert_one(self._doc(version, self.holder, now + self._ttl()))
        except pymongo.errors.DuplicateKeyError:
            winner = await self.collection.find_one({"_id": self._id(version)})
            self._lost(winner["holder"] if winner else "?")
            return False
        # A term is deleted (below) only after a later one exists, and a process that read
        # the lease long ago may have inserted a term number deleted since: the latest tells.
        latest = await self.latest()
        if latest is None or latest["version"] != version:
            self._lost(latest["holder"] if latest else "?")
            return False
        if not self.held:
            log.info("lease taken", lease=self.name, holder=self.holder, version=version)
        self._term = Term(version, taken, taken + self.ttl - self.margin)
        await self.collection.delete_many({"name": self.name, "version": {"$lt": version - 1}})
        return True

    def _lost(self, holder: str) -> None:
        if self.held:  # not when its term had simply run out unrenewed
            log.warning("lease lost", lease=self.name, holder=holder)
        self._term = None

    def _ttl(self) -> timedelta:
        return timedelta(seconds=self.ttl)

    def _id(self, version: int) -> str:
        return f"{self.name}#{version:012d}"

    def _doc(self, version: int, holder: str, expires_at: datetime) -> dict[str, Any]:
        return {
            "_id": self._id(version),
            "name": self.name,
            "version": version,
            "holder": holder,
            "expires_at": expires_at,
            "at": datetime.now(UTC),
        }

    async def latest(self) -> dict[str, Any] | None:
        """The lease's current term as stored (holder, expiry), or None when never taken."""
        return await self.collection.find_one({"name": self.name}, sort=[("version", DESCENDING)])

    async def release(self) -> None:
        """End this process's term now, so another replica takes over without waiting for the
        TTL (a holder that is stopping). Nothing happens when it is not held."""
        async with self._lock:
            term, self._term = self._term, None
            if term is None:
                return
            # A term of nobody that has expired already: the next taker needs no wait.
            released = self._doc(term.version + 1, RELEASED, datetime.now(UTC))
            try:
                await self.collection.insert_one(released)
            except pymongo.errors.DuplicateKeyError:
                return  # taken over already
            except pymongo.errors.PyMongoError as exc:
                log.warning("lease not released", lease=self.name, error=repr(exc))
                return
            log.info("lease released", lease=self.name, holder=self.holder)

    async def run(self, job: Callable[[], Awaitable[object]]) -> bool:
        """Run ``job`` if this process holds the lease (taking it when it is free); renew
        the lease while the job works; cancel the job if the lease is lost meanwhile, since
        another replica may start the same work. True when the job ran to its end; its
        exceptions propagate."""
        if self._closed or not await self.acquire():
            return False
        task = asyncio.ensure_future(job())
        self._running = task
        try:
            while True:
                term = self._term
                wait = 0.0 if term is None else min(self.renew_every, term.until - self._now())
                done, _ = await asyncio.wait({task}, timeout=max(wait, 0.0))
                if done:
                    task.result()
                    return True
                if not await self.acquire():
                    log.warning("lease lost while its job ran: job stopped", lease=self.name)
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    return False
        finally:
            task.cancel()  # when our caller is cancelled, so is the job
            self._running = None

    def every(
        self, scheduler: Scheduler, seconds: float, job: Callable[[], Awaitable[object]]
    ) -> None:
        """Make a periodic job a singleton: every ``seconds`` it runs on the replica holding
        the lease, which keeps it between runs (renewing every third of the TTL), so one
        replica runs the job at its interval and another takes over only when that one
        stops."""
        scheduler.every(self.renew_every, self.acquire)

        async def guarded() -> None:
            await self.run(job)

        guarded.__name__ = getattr(job, "__name__", self.name)
        scheduler.every(seconds, guarded)

    async def close(self, grace: float) -> None:
        """Stop taking and renewing the lease, give a running job ``grace`` seconds (or as
        long as the term lasts, if shorter) and cancel it after, then release the lease."""
        self._closed = True
        task = self._running
        if task is not None and not task.done():
            term = self._term
            left = 0.0 if term is None else term.until - self._now()
            await asyncio.wait({task}, timeout=max(0.0, min(grace, left)))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.release()


class Leases:
    """The leases of one process: one holder name, the ``leases`` collection, a default TTL.
    ``lease(name)`` gives the same Lease object each time, so its term is kept."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, holder: str, ttl: float = 30.0
    ) -> None:
        self.collection: AsyncCollection[dict[str, Any]] = db.leases
        self.holder = holder
        self.ttl = ttl
        self._leases: dict[str, Lease] = {}

    async def ensure_indexes(self) -> None:
        """The index that finds a lease's latest term (a scan of a small collection on
        FerretDB, which uses no secondary index)."""
        await self.collection.create_index([("name", ASCENDING), ("version", DESCENDING)])

    def lease(self, name: str, *, ttl: float | None = None) -> Lease:
        lease = self._leases.get(name)
        if lease is None:
            lease = Lease(self.collection, name, holder=self.holder, ttl=ttl or self.ttl)
            self._leases[name] = lease
        return lease

    async def close(self, grace: float) -> None:
        """Close every lease (see ``Lease.close``) at once: their jobs share the grace."""
        await asyncio.gather(*(lease.close(grace) for lease in self._leases.values()))

"""Sign jobs to the broker, those of one turn of the event loop in one message.

Acceptances finish together: the documents of every message a group commit wrote are
durable at once (``shared.batching``), and each acceptance then publishes its sign job. A
confirmed publish costs the broker, ingest and the signer about the same whatever it carries,
so the sign jobs that arrive in one turn leave in the next as one ``SignBatch`` (one job alone
goes as the ``SignJob`` it is). Each caller still waits for the broker's confirm of the message
that carries its job, and hears the same failure when there is none: nothing is answered
``250`` before its job is on the queue.

Not a timer: a job waits for no other job that is not already there, so mail accepted alone
(a quiet relay, a steady trickle) goes as fast as before.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import Histogram

from shared.errors import Unavailable
from shared.schemas import BrokerMessage, SignBatch, SignJob

JOBS_PER_MESSAGE = Histogram(
    "hato_ingest_sign_jobs_per_message",
    "Sign jobs in each broker message ingest published (a batch's, or 1).",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


class Publisher(Protocol):
    """What the batching needs of the broker (``shared.broker.Broker``)."""

    async def publish(self, message: BrokerMessage, payload: bytes = b"") -> None: ...


class SignJobs:
    """Publishes sign jobs in batches of at most ``max_jobs`` jobs and about ``max_bytes``
    of messages (a message that size or larger goes alone). ``max_jobs=1``: one message a
    job, as signers older than sign batches need."""

    def __init__(self, broker: Publisher, *, max_jobs: int = 32, max_bytes: int = 1 << 20) -> None:
        self.broker = broker
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self._waiting: list[tuple[SignJob, bytes, asyncio.Future[None]]] = []
        self._bytes = 0
        self._sending: set[asyncio.Task[None]] = set()

    async def publish(self, job: SignJob, raw: bytes) -> None:
        """Return once the broker confirmed the message that carries ``job``; raise what
        publishing it raised (``Unavailable``) otherwise."""
        if self.max_jobs <= 1 or len(raw) >= self.max_bytes:
            JOBS_PER_MESSAGE.observe(1)
            await self.broker.publish(job, raw)
            return
        if self._bytes + len(raw) > self.max_bytes:
            self._flush()
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((job, raw, done))
        self._bytes += len(raw)
        if len(self._waiting) >= self.max_jobs:
            self._flush()
        elif len(self._waiting) == 1:
            # After the callbacks already due this turn: the jobs they publish come along.
            asyncio.get_running_loop().call_soon(self._flush)
        await done

    def _flush(self) -> None:
        items, self._waiting, self._bytes = self._waiting, [], 0
        if items:
            task = asyncio.ensure_future(self._send(items))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, items: list[tuple[SignJob, bytes, asyncio.Future[None]]]) -> None:
        JOBS_PER_MESSAGE.observe(len(items))
        try:
            if len(items) == 1:
                job, raw, _ = items[0]
                await self.broker.publish(job, raw)
            else:
                batch, payload = SignBatch.of([(job, raw) for job, raw, _ in items])
                await self.broker.publish(batch, payload)
        except Exception as exc:
            self._settle(items, exc)
        except BaseException:  # cancelled (the process stops): none of them is answered 250
            self._settle(items, Unavailable("stopping: the sign job was not published"))
            raise
        else:
            for *_, done in items:
                if not done.done():
                    done.set_result(None)

    @staticmethod
    def _settle(items: list[tuple[SignJob, bytes, asyncio.Future[None]]], exc: Exception) -> None:
        for *_, done in items:
            if not done.done():
                done.set_exception(exc)

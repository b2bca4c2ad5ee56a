"""Inbound reports before and while they are read: every report that reaches the bounce
listener is stored raw (the ``reports`` collection) before it is parsed, and parsed in a
small process pool with a deadline, so that neither a hostile report nor a parser bug can
stall the service's event loop (a thread would still hold the GIL) or lose the report.

A report whose parsing fails or takes too long stays in ``reports`` as ``unparsed``, with
the error, for an operator to look at, and its job is dead-lettered (``matching``); the
sender got its ``250`` when the report was stored and queued.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
from datetime import timedelta
from enum import StrEnum
from typing import Any

import pymongo.errors
from bson import Binary
from pymongo import ASCENDING

from shared import logging as hlog
from shared.bounces.parse import NotMail, Report, parse
from shared.ids import new_id
from shared.schemas import utcnow

log = hlog.get_logger(__name__)

_NOT_IMPLEMENTED = 238  # FerretDB 1.x answers a TTL index with this code (NotImplemented)


class ReportState(StrEnum):
    RECEIVED = "received"  # stored, not yet parsed
    PARSED = "parsed"
    NOT_MAIL = "not-mail"
    UNPARSED = "unparsed"  # the parser failed or ran out of time: kept for an operator


class Unparsed(Exception):
    """Raised by ``ReportParser.parse`` when a report could not be parsed in time or the
    parser failed; the message says which."""


class ReportParser:
    """``parse`` in worker processes, at most ``timeout`` seconds a report. A report past its
    deadline has its worker killed (the pool is replaced: other reports being parsed at that
    moment fail as ``Unparsed`` too, and stay stored)."""

    def __init__(self, *, workers: int = 2, timeout: float = 30.0) -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError("a report parser needs at least one worker and a positive timeout")
        self.workers, self.timeout = workers, timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: no copy of the service's threads, sockets and event loop.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("forkserver")
            )
        return self._pool

    async def parse(self, raw: bytes) -> Report:
        """The parsed report; ``NotMail`` for what is not mail; ``Unparsed`` otherwise."""
        pool = self._executor()
        future = pool.submit(parse, raw)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except NotMail:
            raise
        except TimeoutError:
            self._kill(pool)
            raise Unparsed(f"parsing took longer than {self.timeout:g} s") from None
        except concurrent.futures.process.BrokenProcessPool:
            self._kill(pool)
            raise Unparsed("the parser's worker process died") from None
        except Exception as exc:  # a parser bug: the report is kept for a look
            raise Unparsed(f"the parser failed: {type(exc).__name__}") from exc

    def _kill(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class ReportStore:
    """The ``reports`` collection: raw inbound reports and what became of them."""

    def __init__(self, db: Any, *, retention_days: float = 30) -> None:
        self.collection = db.reports
        self.retention = timedelta(days=retention_days)
        self.ttl_index = False  # True once the server keeps the retention itself

    async def ensure_indexes(self) -> None:
        try:
            await self.collection.create_index(
                [("received_at", ASCENDING)],
                name="reports_ttl",
                expireAfterSeconds=int(self.retention.total_seconds()),
            )
            self.ttl_index = True
        except pymongo.errors.OperationFailure as exc:
            if exc.code != _NOT_IMPLEMENTED:
                raise
            await self.collection.create_index([("received_at", ASCENDING)], name="reports_at")
        await self.collection.create_index([("state", ASCENDING), ("received_at", ASCENDING)])

    async def keep(self, raw: bytes, *, peer: str, rcpt_tos: list[str]) -> str:
        """Store the raw report (the listener caps its size below MongoDB's 16 MiB)."""
        report_id = new_id()
        await self.collection.insert_one(
            {
                "_id": report_id,
                "received_at": utcnow(),
                "peer": peer,
                "rcpt_tos": rcpt_tos[:100],
                "size": len(raw),
                "raw": Binary(raw),
                "state": ReportState.RECEIVED.value,
            }
        )
        return report_id

    async def mark(
        self, report_id: str, state: ReportState, *, kind: str = "", error: str = ""
    ) -> None:
        fields: dict[str, Any] = {"state": state.value, "parsed_at": utcnow()}
        if kind:
            fields["kind"] = kind
        if error:
            fields["error"] = error[:500]
        await self.collection.update_one({"_id": report_id}, {"$set": fields})

    async def forget(self, report_id: str) -> None:
        """Delete a report the listener could not queue (it answered ``451``: the sender
        sends it again)."""
        await self.collection.delete_one({"_id": report_id})

    async def get(self, report_id: str) -> dict[str, Any] | None:
        return await self.collection.find_one({"_id": report_id})

    async def purge(self) -> int:
        """Delete reports older than the retention (what the TTL index does on MongoDB)."""
        result = await self.collection.delete_many(
            {"received_at": {"$lt": utcnow() - self.retention}}
        )
        return result.deleted_count

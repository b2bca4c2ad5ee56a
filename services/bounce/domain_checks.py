"""Scheduled domain health re-checks: every sending domain is checked again at an interval (on
one replica at a time: the caller holds a lease), its last result is kept in the
``domain_health`` collection, and a ``domain_check_failed`` event tells the tenant when a
domain that passed stops passing — once per breakage, not at every run while it stays broken.

A domain never seen passing (one still being set up) raises no event: ``hato domain check``
and ``GET /v1/domains/{domain}/check`` show what it lacks.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from shared import logging as hlog
from shared.broker import Broker
from shared.domain_health import DomainHealth, HealthReport, check_stored
from shared.schemas import Event, EventType
from shared.store import Store

log = hlog.get_logger(__name__)

MAX_RECORDS_IN_EVENT = 10  # zone lines an event carries; the check itself names them all


def failed_event(report: HealthReport) -> Event:
    """The event of a domain that stopped passing: which checks fail, what each finding says
    and the records to publish."""
    bad = [f for f in report.findings if f.verdict.value in ("wrong", "dns-error")]
    records = [f.publish.zone_line() for f in bad if f.publish is not None]
    return Event.of(
        EventType.DOMAIN_CHECK_FAILED,
        tenant=report.tenant,
        step=(report.domain, report.checked_at.isoformat()),
        detail={
            "domain": report.domain,
            "failing": ",".join(report.failing),
            "problems": "\n".join(f"{f.check.value} {f.subject}: {f.says}" for f in bad),
            "publish": "\n".join(records[:MAX_RECORDS_IN_EVENT]),
        },
        at=report.checked_at,
    )


class DomainRechecks:
    """Checks every stored domain; ``run_once`` is the periodic job."""

    def __init__(self, store: Store, broker: Broker | None, health: DomainHealth) -> None:
        self.store = store
        self.broker = broker
        self.health = health
        self.results = _results(store.db)

    async def run_once(self) -> list[Event]:
        """Check each domain, keep its result, and emit (write and publish) an event for each
        that went from passing to failing; returns those events."""
        events = []
        for doc in await self.store.directory.domains():
            try:
                report = await check_stored(
                    self.health, self.store.directory, self.store.pools, doc
                )
            except Exception as exc:  # one domain's trouble does not stop the others
                log.warning("domain check failed to run", domain=doc["_id"], error=repr(exc))
                continue
            before = await self.results.find_one_and_replace(
                {"_id": report.domain},
                {
                    "_id": report.domain,
                    "tenant": report.tenant,
                    "ok": report.ok,
                    "failing": report.failing,
                    "checked_at": report.checked_at,
                },
                upsert=True,
            )
            if before is not None and before.get("ok") and not report.ok:
                log.warning("domain check failed", domain=report.domain, failing=report.failing)
                events.append(failed_event(report))
        if events:
            await self.store.events.append(events)
            if self.broker is not None:
                await self.broker.emit(events)
        return events


def _results(db: AsyncDatabase[dict[str, Any]]) -> Any:
    return db.domain_health

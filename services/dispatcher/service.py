"""The dispatcher service: deliver each job, record every recipient's outcome, retry the rest.

``handle`` reads as its steps: skip recipients already final (a redelivered
job sends nothing twice), find the destination, deliver, expire what waited
too long, record, report, and schedule the retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from prometheus_client import Counter

from services.dispatcher.routes import RouteTable
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.smtp_client import SmtpClient
from shared import logging as hlog
from shared.broker import Broker, Delivery, deliver_queue
from shared.errors import ConfigError, Permanent, RetryLater
from shared.runtime import Runtime
from shared.schemas import (
    DeliveryJob,
    DeliveryResult,
    Recipient,
    RecipientResult,
    RecipientStatus,
    Reply,
    utcnow,
)
from shared.store import Store

log = hlog.get_logger(__name__)

DELIVERIES = Counter(
    "hato_dispatcher_recipients_total",
    "Recipient outcomes of delivery attempts, by status.",
    ["status"],
)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        broker: Broker,
        routes: RouteTable,
        client: SmtpClient,
        *,
        retry_delays: Sequence[float],
        max_age: float,
    ) -> None:
        self.store = store
        self.broker = broker
        self.routes = routes
        self.client = client
        self.retry_delays = list(retry_delays) or [60.0]
        self.max_age = max_age

    async def handle(self, delivery: Delivery) -> None:
        job = delivery.message
        if not isinstance(job, DeliveryJob):
            raise Permanent(f"expected a delivery job, got {type(job).__name__}")
        pending = await self.pending(job)
        if not pending:
            log.info("nothing left to deliver")
            return
        results, destination = await self.deliver(job, pending, delivery.payload)
        results = self.expire(job, results)
        delay = self.retry_delay(delivery.attempt)
        retry = any(r.status is RecipientStatus.DEFERRED for r in results)
        await self.store.record_attempt(
            results,
            destination=destination,
            next_attempt_at=utcnow() + timedelta(seconds=delay) if retry else None,
        )
        await self.broker.publish(
            DeliveryResult(
                message_id=job.message_id,
                tenant=job.tenant,
                attempt=delivery.attempt,
                destination=destination,
                results=tuple(results),
            )
        )
        for r in results:
            DELIVERIES.labels(r.status.value).inc()
        log.info(
            "attempted",
            destination=destination,
            outcome={r.address: r.status.value for r in results},
        )
        if retry:
            raise RetryLater(delay, "deferred recipients")

    async def pending(self, job: DeliveryJob) -> list[Recipient]:
        done = await self.store.finished_recipients(r.id for r in job.recipients)
        return [r for r in job.recipients if r.id not in done]

    async def deliver(
        self, job: DeliveryJob, recipients: list[Recipient], message: bytes
    ) -> tuple[list[RecipientResult], str]:
        dest = self.routes.lookup(job.domain)
        if dest is None:
            reply = Reply(code=451, enhanced="4.4.0", text=f"no route to {job.domain}")
            return [
                RecipientResult(
                    recipient_id=r.id,
                    address=r.address,
                    status=RecipientStatus.DEFERRED,
                    reply=reply,
                )
                for r in recipients
            ], ""
        return await self.client.send(dest, job.mail_from, recipients, message), str(dest)

    def expire(self, job: DeliveryJob, results: list[RecipientResult]) -> list[RecipientResult]:
        """Deferred recipients older than ``max_age`` become ``expired``, keeping the last reply."""
        if (utcnow() - job.created_at).total_seconds() < self.max_age:
            return results
        return [
            r.model_copy(update={"status": RecipientStatus.EXPIRED})
            if r.status is RecipientStatus.DEFERRED
            else r
            for r in results
        ]

    def retry_delay(self, attempt: int) -> float:
        return self.retry_delays[min(attempt, len(self.retry_delays)) - 1]


async def run(settings: DispatcherSettings) -> None:
    try:
        routes = RouteTable.parse(settings.routes)
    except ValueError as exc:
        raise ConfigError(f"HATO_DISPATCHER_ROUTES: {exc}") from None
    client = SmtpClient(
        helo_name=settings.helo_name,
        timeout=settings.smtp_timeout,
        connect_timeout=settings.connect_timeout,
    )
    async with Runtime("dispatcher", settings, pools=settings.pools) as rt:
        dispatcher = Dispatcher(
            rt.store,
            rt.broker,
            routes,
            client,
            retry_delays=settings.retry_delays,
            max_age=settings.max_age,
        )
        for pool in settings.pools:
            await rt.broker.consume(deliver_queue(pool), dispatcher.handle)
        rt.serving()
        log.info("ready", pools=settings.pools, ops_port=rt.ops.port)
        await rt.until_stopped()

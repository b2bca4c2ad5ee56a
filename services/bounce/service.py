"""The bounce service: bounced and expired delivery results are classified (their events
written with the reason) and feed the suppression list; inbound bounces and complaints the
same, kept and queued by the listener and read by the report consumer; the webhook queue is
bound to what tenants subscribed to and fills their outboxes; the dead-letter events the
broker publishes are written, and a job RabbitMQ dead-lettered itself (past a quorum queue's
delivery limit) gets the same event.

Several replicas may run: consumers share their queues, and what must run on one replica at a
time holds a lease in MongoDB (``shared/leases.py``): each webhook endpoint's sending, the
purge of expired events on servers without TTL indexes, and the re-checks of every sending
domain's DNS (``domain_checks.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from opentelemetry import trace

from services.bounce.domain_checks import DomainRechecks
from services.bounce.feedback import Addressee, Feedback
from services.bounce.inbound import BounceHandler, BounceListener
from services.bounce.matching import ReportConsumer
from services.bounce.reports import ReportParser, ReportStore
from services.bounce.settings import BounceSettings
from services.bounce.webhook_sender import WebhookBindings, WebhookRouter, WebhookSender
from shared import logging as hlog
from shared import metrics
from shared.bounces.classify import Rules, Verdict, rules
from shared.bounces.parse import Finding
from shared.broker import Broker, Delivery, Queue, dead_reply, undecoded
from shared.domain_health import DomainHealth
from shared.egress import Egress
from shared.errors import Permanent
from shared.leases import Leases, holder_id
from shared.runtime import Runtime
from shared.schemas import (
    Changed,
    ChangeKind,
    DeliveryResult,
    Event,
    EventType,
    RecipientStatus,
    Reply,
)
from shared.secrets import SecretBox
from shared.telemetry import CONSUMED
from shared.timeline import EventLog, Timeline, attempt_events
from shared.verp import Verp

log = hlog.get_logger(__name__)


class ResultHandler:
    """A delivery result (the dispatcher sends those with bounced or expired recipients) →
    each recipient classified by the rules inbound bounces go through, its event written and
    published with the reason, and the suppression list fed."""

    def __init__(
        self, timeline: Timeline, feedback: Feedback | None = None, rules: Rules | None = None
    ) -> None:
        self.timeline = timeline
        self.feedback = feedback
        self.rules = rules

    async def handle(self, delivery: Delivery) -> None:
        result = delivery.message
        if not isinstance(result, DeliveryResult):
            raise Permanent(f"expected a delivery result, got {type(result).__name__}")
        verdicts = self.verdicts(result)
        reasons = {rid: v.reason for rid, v in verdicts.items()}
        for r in result.results:
            if r.recipient_id in reasons:
                metrics.bounce(result.tenant, r.address, reasons[r.recipient_id], "delivery")
        span = trace.get_current_span()  # the result's consumer span, in the mail's trace
        if span.is_recording():
            span.set_attributes(
                {
                    "hato.recipient_ids": [r.recipient_id for r in result.results],
                    "hato.bounce.reasons": [
                        reasons.get(r.recipient_id, "") for r in result.results
                    ],
                }
            )
        await self.timeline.record(attempt_events(result, reasons))
        if self.feedback is None:
            return
        for r in result.results:
            if r.recipient_id in verdicts:
                target = Addressee(
                    result.tenant,
                    result.message_id,
                    r.recipient_id,
                    r.address,
                    result.tags,
                    result.metadata,
                )
                await self.feedback.suppress(target, verdicts[r.recipient_id], "delivery")

    def verdicts(self, result: DeliveryResult) -> dict[str, Verdict]:
        """The classified reason of each bounced or expired recipient of the attempt."""
        if self.rules is None:
            return {}
        out = {}
        for r in result.results:
            if r.status not in (RecipientStatus.BOUNCED, RecipientStatus.EXPIRED):
                continue
            verdict = self.rules.classify_finding(
                Finding(
                    r.address,
                    status=r.reply.enhanced or f"{str(r.reply.code)[0]}.0.0",
                    reply_code=r.reply.code,
                    diagnostic=str(r.reply),
                    command=r.command or "",
                )
            )
            if r.status is RecipientStatus.EXPIRED:
                verdict = self.rules.verdict(
                    r.address, "expired", verdict.status, verdict.diagnostic
                )
            out[r.recipient_id] = verdict
        return out


class DeadLetterMessages(Protocol):
    """The recipients a dead-lettered job leaves (``shared.messages.Messages``)."""

    async def fail_dead_lettered(
        self, message_id: str, recipient_ids: Sequence[str], reply: Reply
    ) -> list[dict[str, Any]]: ...


class EventRecords(Protocol):
    """What the event recorder writes: the service passes its ``Store``; unit tests pass a
    small fake."""

    @property
    def events(self) -> EventLog: ...

    @property
    def messages(self) -> DeadLetterMessages: ...


class EventRecorder:
    """Events published by code that has no store of its own (the broker's dead-letter
    events) → the ``events`` collection. Every service writes its other events itself.

    A dead-lettered job also ends its recipients that were still waiting in ``failed``, with
    the reason and a ``failed`` event each: nothing stays ``queued`` for ever because the job
    that carried it died (``hato dead retry`` brings them back with the job)."""

    def __init__(self, store: EventRecords, timeline: Timeline | None = None) -> None:
        self.store = store
        self.timeline = timeline

    async def handle(self, delivery: Delivery) -> None:
        event = delivery.message
        if not isinstance(event, Event):
            raise Permanent(f"expected an event, got {type(event).__name__}")
        await self.store.events.append([event])
        if event.type is EventType.DEAD_LETTERED and event.message_id:
            await self._fail_recipients(event)

    async def _fail_recipients(self, event: Event) -> None:
        ids = [i for i in str(event.detail.get("recipients") or "").split(",") if i]
        if not ids or event.message_id is None:
            return
        queue = str(event.detail.get("queue", ""))
        reply = dead_reply(queue, str(event.detail.get("reason", "")))
        failed = await self.store.messages.fail_dead_lettered(event.message_id, ids, reply)
        events = [
            Event.of(
                EventType.FAILED,
                tenant=event.tenant,
                message_id=event.message_id,
                recipient_id=doc["_id"],
                address=doc.get("address"),
                step=("dead", queue),
                reply=reply,
                detail={"reason": "dead_lettered", "queue": queue},
            )
            for doc in failed
        ]
        if events and self.timeline is not None:
            await self.timeline.record(events)
        elif events:
            await self.store.events.append(events)
        log.warning("recipients failed with their dead-lettered job", recipients=len(events))


class BrokerDeadLetters:
    """A copy of each dead letter (``dead.watch``) → for a job RabbitMQ itself dead-lettered
    (past a quorum queue's delivery limit), the ``dead_lettered`` event ``consume()`` publishes
    for the jobs it dead-letters, same id: ``EventRecorder`` then fails the job's recipients
    as for any dead job, and the job waits in ``dead`` for an operator. A publish the broker
    does not confirm raises ``Unavailable``: the copy comes back and is published again."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def handle(self, delivery: Delivery) -> None:
        events = self.broker.broker_dead_letter(
            delivery.message, delivery.headers, delivery.message_id
        )
        if not events:
            return  # consume() dead-lettered it (its events are out), or it is no job
        event = events[0]
        log.warning(
            "a job RabbitMQ dead-lettered",
            queue=event.detail["queue"],
            reason=event.detail["reason"],
            message_ids=[e.message_id for e in events],
        )
        await self.broker.emit(events)
        # Counted as dead letters of the queue they died in: the alert on dead letters and
        # the dashboards (fed by consume()'s count of its own) show them too.
        queue = event.detail["queue"].removeprefix(f"{self.broker.settings.prefix}.")
        CONSUMED.labels(queue, "dead").inc()


async def run(settings: BounceSettings) -> None:
    key = settings.verp.secret()
    verp = Verp(key, settings.verp.label, settings.verp.ttl_days) if key else None
    async with Runtime("bounce", settings) as rt:
        leases = Leases(rt.store.db, holder=holder_id("bounce"), ttl=settings.lease_ttl)
        await leases.ensure_indexes()
        timeline = Timeline(rt.store.events, rt.broker)
        feedback = Feedback(
            rt.store,
            rt.broker,
            soft_limit=settings.soft_bounce_limit,
            soft_window=timedelta(days=settings.soft_bounce_window_days),
            soft_days=settings.soft_suppression_days,
        )
        await rt.broker.consume(Queue.RESULTS, ResultHandler(timeline, feedback, rules()).handle)
        reports = ReportStore(rt.store.db)
        await reports.ensure_indexes()
        unsubscribe = settings.unsubscribe.make()
        consumer = ReportConsumer(
            rt.store,
            reports,
            verp,
            rules(),
            feedback,
            parser=ReportParser(workers=settings.parse_workers, timeout=settings.parse_timeout),
            retry_delay=settings.parse_retry_delay,
            unsubscribe=unsubscribe,
        )
        await rt.broker.consume(Queue.REPORTS, consumer.handle)
        listener = None
        if settings.smtp_port >= 0:
            listener = BounceListener(
                BounceHandler(
                    reports,
                    rt.broker,
                    verp,
                    fbl_address=settings.fbl_address,
                    unsubscribe=unsubscribe,
                ),
                host=settings.smtp_host,
                port=settings.smtp_port,
                max_size=settings.max_message_size,
            )
            await listener.start()
        await rt.broker.consume(Queue.EVENTS_STORE, EventRecorder(rt.store, timeline).handle)
        await rt.broker.consume(
            Queue.DEAD_WATCH, BrokerDeadLetters(rt.broker).handle, decode=undecoded
        )
        sender = await _webhooks(rt, settings, leases)
        _housekeeping(rt, settings, leases, reports)
        rt.census()
        rt.serving()
        log.info(
            "ready",
            ops_port=rt.ops.port,
            smtp=f"{listener.host}:{listener.port}" if listener else None,
        )
        await rt.until_stopped()
        if listener is not None:
            await listener.stop()
        consumer.close()
        # Released leases pass to another replica at once instead of after their TTL. Half
        # of what is left of the one shutdown grace; the broker's drain gets the rest.
        await leases.close(rt.grace_left() / 2)
        if sender is not None:
            await sender.close()


async def _webhooks(rt: Runtime, settings: BounceSettings, leases: Leases) -> WebhookSender | None:
    """The webhook queue bound to what tenants subscribed to (kept so as they change), its
    router filling the outboxes, and the sender emptying them; None without a master key (the
    endpoints' signing secrets are sealed with it)."""
    if not (settings.secrets.master_key.get_secret_value() or settings.secrets.master_key_file):
        log.warning("no master key: webhooks are not delivered")
        return None
    box = SecretBox.from_settings(settings.secrets)
    router = WebhookRouter(rt.store.webhooks)
    bindings = WebhookBindings(rt.broker, rt.store.webhooks)
    await bindings.sync()

    async def webhooks_changed(change: Changed) -> None:
        if change.what is ChangeKind.WEBHOOKS:
            router.forget()
            await bindings.sync()

    await rt.broker.on_change(webhooks_changed)
    rt.every(settings.webhook_binding_refresh, bindings.sync)
    await rt.broker.consume(Queue.WEBHOOKS, router.handle)
    sender = WebhookSender(
        rt.store.webhooks,
        box,
        leases,
        timeout=settings.webhook_timeout,
        backoff=settings.webhook_backoff,
        egress=Egress.from_settings(settings.egress),
    )
    rt.every(settings.webhook_interval, sender.run_once)
    return sender


def _housekeeping(
    rt: Runtime, settings: BounceSettings, leases: Leases, reports: ReportStore
) -> None:
    """What runs on one replica at a time, on a schedule: messages past their retention
    deleted, domains re-checked, and where the server keeps no TTL index, expired events and
    reports purged."""
    if not rt.store.events.ttl_index:
        # Deleting expired events twice does no harm, but on FerretDB each purge reads the
        # whole events collection: one replica at a time is enough.
        leases.lease("events-purge").every(
            rt, settings.purge_interval, rt.store.events.purge_expired
        )
    if not reports.ttl_index:  # the same for inbound reports kept raw
        leases.lease("reports-purge").every(rt, settings.purge_interval, reports.purge)

    async def retention() -> None:
        tenants = await rt.store.directory.tenants()
        days = {
            t["_id"]: t["limits"]["retention_days"]
            for t in tenants
            if (t.get("limits") or {}).get("retention_days")
        }
        if gone := await rt.store.messages.purge_finished(settings.retention_days, days):
            log.info("messages past retention deleted", messages=gone)

    leases.lease("retention").every(rt, settings.retention_interval, retention)
    if settings.domain_check_interval > 0:
        health = DomainHealth(settings.dns, egress=Egress.from_settings(settings.egress))
        rechecks = DomainRechecks(rt.store, rt.broker, health)
        leases.lease("domain-checks").every(rt, settings.domain_check_interval, rechecks.run_once)

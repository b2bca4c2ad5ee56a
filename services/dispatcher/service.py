"""The dispatcher service: route each job to its source IP, deliver it, record every
recipient's outcome, retry the rest.

Two kinds of queue feed it. A pool's queue (``deliver.<pool>``), consumed by every instance
with an IP in the pool: the job's destination domain picks its member IP (rendezvous over
the live members, within warm-up caps); an IP of this instance delivers at once, another's
gets the job forwarded to its own queue (``deliver.<pool>.ip.<ip>``), which only its owner
consumes and which hands jobs back to the pool after ``handoff_ttl`` if that owner is gone.

Delivering reads as its steps: skip recipients already final (a redelivered job sends nothing
twice), find the servers (static route or MX), wait for the destination's pace, send (next
MX when one cannot be reached), expire what waited too long, record, report, retry the rest.

Queue controls (``shared.queue_control``) steer it on the way: a job of a tenant or domain
moved to another pool is published there; an IP a reply rule keeps away from a receiver is
passed over for the pool's next member; a suspended delivery waits (``Held``: the same
attempt, nothing recorded) until the suspension is lifted or expires, when every instance
sweeps what it held back at once. The reply rules (``rules.py``) read each attempt's replies
and start those controls themselves, with an expiry; the IP's owner ends them.

The job is the outbox of what it recorded: an attempt's events and its result for the bounce
service are published after the write, and a publish the broker does not confirm raises
``Unavailable``, so the job is not acked and comes back (same attempt). Its pending check
then finds the recipients its first run made final and publishes again their stored events
of this attempt (same ids) and the results the bounce service never got.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from opentelemetry import trace
from prometheus_client import Counter

from services.dispatcher.mx import MxResolver, Route
from services.dispatcher.pools import Member, PoolView
from services.dispatcher.rules import RuleAction, Rules, Trigger, pair_provider
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.smtp_client import SmtpClient, status_for
from services.dispatcher.throttle import Pace, Throttle, batches, slows_down, too_big
from shared import logging as hlog
from shared import metrics, schemas
from shared.broker import (
    ATTEMPT_HEADER,
    FIRST_ATTEMPT_HEADER,
    Broker,
    Delivery,
    Queue,
    broker_death,
    deliver_queue,
    ip_queue,
    settle,
)
from shared.egress import Egress
from shared.errors import ConfigError, Held, Permanent, RetryLater
from shared.queue_control import (
    Action,
    Controls,
    ControlSet,
    Scope,
    Waiting,
    control_id,
    expired,
    retry_requested,
    scope_of,
)
from shared.runtime import Runtime
from shared.schemas import (
    Changed,
    ChangeKind,
    DeliveryJob,
    DeliveryResult,
    Event,
    EventType,
    Recipient,
    RecipientResult,
    RecipientStatus,
    Reply,
    utcnow,
)
from shared.telemetry import inner_span
from shared.timeline import EventLog, Timeline, attempt_events
from shared.verp import Verp, VerpMode

log = hlog.get_logger(__name__)

NEEDS_CLASSIFYING = (RecipientStatus.BOUNCED, RecipientStatus.EXPIRED)

DELIVERIES = Counter(
    "hato_dispatcher_recipients_total",
    "Recipient outcomes of delivery attempts, by status.",
    ["status"],
)
FORWARDED = Counter(
    "hato_dispatcher_forwarded_total", "Jobs forwarded to the instance owning their IP."
)
HELD = Counter("hato_dispatcher_held_total", "Jobs that waited because a suspension covered them.")
MOVED = Counter("hato_dispatcher_moved_total", "Jobs moved to another pool by a queue control.")


class DeliveryEvents(EventLog, Protocol):
    """The dispatcher's part of the events collection (``shared.events.Events``)."""

    async def of_attempt(
        self, message_id: str, recipient_ids: Sequence[str], attempt: int
    ) -> list[Event]: ...


class DeliveryMessages(Protocol):
    """The dispatcher's part of the messages and recipients (``shared.messages.Messages``)."""

    async def pending_recipients(self, ids: Iterable[str]) -> set[str]: ...

    async def record_attempt(
        self,
        results: Sequence[RecipientResult],
        events: Sequence[Event] = (),
        *,
        source_ip: str = "",
    ) -> None: ...

    async def unreported_results(self, ids: Iterable[str]) -> list[dict[str, Any]]: ...

    async def results_reported(self, ids: Sequence[str]) -> None: ...


class DeliveryRecords(Protocol):
    """What the dispatcher's handler reads and writes in the database: the service passes
    its ``Store``; unit tests pass a small fake."""

    @property
    def events(self) -> DeliveryEvents: ...

    @property
    def messages(self) -> DeliveryMessages: ...


class Dispatcher:
    def __init__(
        self,
        store: DeliveryRecords,
        broker: Broker,
        view: PoolView,
        mx: MxResolver,
        client: SmtpClient,
        throttle: Throttle,
        *,
        retry_delays: Sequence[float],
        max_age: float,
        verp: Verp | None = None,
        verp_mode: VerpMode = VerpMode.RECIPIENT,
        rules: Rules | None = None,
        hold_delay: float = 60.0,
        controls: Controls | None = None,
        waiting: Waiting | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.clock = clock  # what "now" is for ages, expiries and retry times
        self.rules = rules or Rules()
        self.hold_delay = hold_delay
        self.controls = controls  # None: no queue controls (unit tests of delivery)
        self.waiting = waiting
        self.control_set = ControlSet()
        self.verp = verp
        self.verp_mode = verp_mode
        self.store = store
        self.broker = broker
        self.view = view
        self.mx = mx
        self.client = client
        self.throttle = throttle
        self.retry_delays = list(retry_delays) or [60.0]
        self.max_age = max_age
        self.timeline = Timeline(store.events, broker)

    # -- the two kinds of queue ---------------------------------------------------------------

    async def route(self, delivery: Delivery) -> None:
        """A job from a pool's queue: deliver it from its member IP, or hand it to the owner."""
        job = self._job(delivery)
        death = broker_death(delivery.headers)
        if (
            death is not None
            and death[1] == "delivery_limit"
            and death[0].startswith(self.broker.full(ip_queue(job.pool, "")))
        ):
            # Back from an IP queue past its delivery limit (its dispatcher died with it each
            # time): forwarded again, it would go round for ever. consume() dead-letters it
            # with its event, the reason worded as for a job RabbitMQ put into `dead` itself.
            raise Permanent(self.broker.death_reason(*death))
        if await self.moved(job, delivery):
            return
        avoid = self.control_set.avoided(
            domain=job.domain, provider=metrics.provider_group(job.domain)
        )
        member = self.view.choose(job.pool, job.domain, avoid=avoid)
        if member is None and avoid:
            member = self.view.choose(job.pool, job.domain)
            if member is not None and not self.too_old(job):
                raise Held(self.hold_delay, "rules keep every live member away from it")
            # Too old to wait on: one last attempt, which expires it if it is refused.
        if member is None:
            raise RetryLater(600, "every live member of the pool is at its warm-up cap")
        if member.ip not in self.view.own_ips:
            await self.broker.forward(
                ip_queue(job.pool, member.ip),
                schemas.encode(job, delivery.payload),
                dict(delivery.headers),
                job.message_id,
            )
            FORWARDED.inc()
            span = trace.get_current_span()
            if span.is_recording():
                span.set_attribute("hato.forwarded_to", member.ip)
            log.info("forwarded to its IP's instance", source_ip=member.ip, domain=job.domain)
            return
        await self.deliver(member, job, delivery)

    def owned(self, ip: str) -> Callable[[Delivery], Awaitable[None]]:
        """The handler of this instance's own IP queue."""

        async def handle(delivery: Delivery) -> None:
            job = self._job(delivery)
            if await self.moved(job, delivery):
                return
            provider = metrics.provider_group(job.domain)
            if ip in self.control_set.avoided(domain=job.domain, provider=provider):
                # A rule keeps this IP away from the destination: back to the pool, where
                # another member takes it.
                await self.requeue(job, delivery)
                return
            await self.deliver(self.view.member(ip), job, delivery)

        return handle

    async def moved(self, job: DeliveryJob, delivery: Delivery) -> bool:
        """Send the job to the pool a move control names for it, if another; True if so."""
        pool = self.control_set.move(tenant=job.tenant, domain=job.domain)
        if pool is None or pool == job.pool:
            return False
        await self.requeue(job.model_copy(update={"pool": pool}), delivery)
        MOVED.inc()
        log.info("moved to another pool", pool=pool, domain=job.domain)
        return True

    async def requeue(self, job: DeliveryJob, delivery: Delivery) -> None:
        """Publish ``job`` to its pool's queue as the same attempt."""
        keep = {
            k: v for k, v in delivery.headers.items() if k in (ATTEMPT_HEADER, FIRST_ATTEMPT_HEADER)
        }
        await self.broker.publish(job, delivery.payload, headers=keep)

    # -- controls and rules -----------------------------------------------------------------

    async def refresh_controls(self) -> None:
        """Read the controls in force; end the expired ones a rule put on this instance's
        IPs (with a ``rule_ended`` event each: one owner per IP, so one event)."""
        if self.controls is None:
            return
        docs = await self.controls.all()
        now = self.clock()
        ended = [
            d
            for d in docs
            if expired(d, now)
            and str(d.get("origin", "")).startswith("rule:")
            and d.get("source_ip") in self.view.own_ips
        ]
        for d in ended:
            if await self.controls.remove_id(d["_id"]):
                await self.rule_ended(d)
        before = {d["_id"]: d for d in self.control_set.docs if d["action"] == Action.SUSPEND}
        self.control_set = ControlSet.of(docs)
        lifted = set(before) - {d["_id"] for d in self.control_set.docs}
        for gone in sorted(lifted):
            # Resumed, lifted or expired: what it held goes now, not at its next look.
            await self.retry_now(scope_of(before[gone]), held_only=True)
        # An action an operator lifted early (hato queue lift) may start again.
        self.rules.running(
            {
                (
                    str(d["origin"]).removeprefix("rule:"),
                    d.get("source_ip", ""),
                    d.get("provider", ""),
                )
                for d in self.control_set.docs
                if str(d.get("origin", "")).startswith("rule:")
            }
        )

    async def rule_ended(self, doc: dict[str, Any]) -> None:
        rule = str(doc.get("origin", ""))[len("rule:") :]
        self.rules.ended(rule, doc.get("source_ip") or "", doc.get("provider") or "")
        detail = doc.get("detail") or {}
        event = Event.of(
            EventType.RULE_ENDED,
            tenant=str(detail.get("tenant") or ""),
            step=(doc["_id"], doc["created_at"].isoformat()),
            detail={
                "rule": rule,
                "action": detail.get("action"),
                "source_ip": doc.get("source_ip"),
                "provider": doc.get("provider"),
            },
        )
        await self.store.events.append([event])
        await self.timeline.publish([event])
        metrics.RULES_ENDED.labels(rule, str(detail.get("action") or "")).inc()
        log.info("rule ended", rule=rule, source_ip=doc.get("source_ip"))

    async def triggered(self, job: DeliveryJob, triggers: Sequence[Trigger]) -> None:
        """Start the actions of rules whose threshold was reached: a control over (source
        IP, provider) that ends by itself, a ``rule_triggered`` event and a metric."""
        if self.controls is None:
            return
        for t in triggers:
            action = {
                RuleAction.SLOW_DOWN: Action.SLOW,
                RuleAction.PAUSE: Action.SUSPEND,
                RuleAction.MOVE_IP: Action.AVOID,
            }[t.rule.action]
            scope = Scope(source_ip=t.source_ip, provider=t.provider)
            doc = await self.controls.put(
                action,
                scope,
                reason=str(t.reply),
                origin=f"rule:{t.rule.name}",
                expires_in=t.rule.duration,
                factor=t.rule.factor if action is Action.SLOW else None,
                detail={"tenant": job.tenant, "action": t.rule.action.value},
            )
            event = Event.of(
                EventType.RULE_TRIGGERED,
                tenant=job.tenant,
                step=(control_id(action, scope), doc["created_at"].isoformat()),
                reply=t.reply,
                detail={
                    "rule": t.rule.name,
                    "action": t.rule.action.value,
                    "source_ip": t.source_ip,
                    "provider": t.provider,
                    "domain": job.domain,
                    "duration": t.rule.duration,
                },
            )
            await self.store.events.append([event])
            await self.timeline.publish([event])
            metrics.RULES_TRIGGERED.labels(t.rule.name, t.rule.action.value).inc()
            log.warning(
                "rule triggered",
                rule=t.rule.name,
                action=t.rule.action.value,
                source_ip=t.source_ip,
                provider=t.provider,
                duration=t.rule.duration,
            )
        if triggers:
            await self.refresh_controls()
            try:  # the other instances apply it at once, not at their next heartbeat
                await self.broker.publish(Changed(what=ChangeKind.QUEUE))
            except Exception as exc:
                log.warning("rule not announced", error=repr(exc))

    async def retry_now(self, scope: Scope, *, held_only: bool = False) -> int:
        """Send the jobs in ``scope`` waiting in retry queues (held or deferred; ``held_only``:
        those a suspension held) again now."""

        def match(message: object) -> bool:
            return isinstance(message, DeliveryJob) and Scope(scope.tenant, scope.domain).matches(
                tenant=message.tenant, domain=message.domain
            )

        delays = [self.hold_delay] if held_only else [*self.retry_delays, self.hold_delay]
        try:
            moved = await self.broker.sweep(delays, match)
        except Exception as exc:  # they come back at their time anyway
            log.warning("could not retry now", error=repr(exc))
            return 0
        log.info("retried now", scope=scope.describe(), jobs=moved)
        return moved

    @staticmethod
    def _job(delivery: Delivery) -> DeliveryJob:
        if not isinstance(delivery.message, DeliveryJob):
            raise Permanent(f"expected a delivery job, got {type(delivery.message).__name__}")
        return delivery.message

    # -- delivering ------------------------------------------------------------------------------

    async def deliver(self, member: Member, job: DeliveryJob, delivery: Delivery) -> None:
        hlog.bind(source_ip=member.ip, domain=job.domain)
        # The job's consumer span is this delivery attempt's span: a retry is a new one, and
        # consume() links it to the first attempt's.
        span = trace.get_current_span()
        if span.is_recording():
            span.update_name(f"deliver {job.domain}")
            span.set_attributes(
                {
                    "hato.domain": job.domain,
                    "hato.pool": job.pool,
                    "hato.source_ip": member.ip,
                    "network.local.address": member.ip,
                    "hato.attempt": delivery.attempt,
                }
            )
        pending = await self.pending(job, delivery.attempt)
        if not pending:
            log.info("nothing left to deliver")
            return
        with inner_span("mx lookup") as lookup:
            route = await self.mx.route(job.domain, job.tenant)
            if lookup.is_recording():
                lookup.set_attributes(_route_attributes(job.domain, route))
        mx_host = route.targets[0].host if route.targets else ""
        provider = metrics.provider_group(job.domain, mx_host)
        hold = self.control_set.hold(
            tenant=job.tenant,
            domain=job.domain,
            source_ip=member.ip,
            provider=pair_provider(provider, job.domain),
        ) or self.control_set.hold(
            tenant=job.tenant, domain=job.domain, source_ip=member.ip, provider=provider
        )
        if hold is not None and not self.too_old(job):
            why = scope_of(hold).describe()
            if self.waiting is not None:
                await self.waiting.mark_held([r.id for r in pending], why, member.ip)
            HELD.inc()
            raise Held(self.hold_delay, f"suspended: {why}")
        if hold is not None:
            # Suspended past its maximum age: it ends (expired, with why) instead of waiting
            # for ever; the sender sees it like any expiry.
            reply = Reply.of(451, "4.4.7", f"expired while suspended ({scope_of(hold).describe()})")
            results = [
                RecipientResult(
                    recipient_id=r.id,
                    address=r.address,
                    status=RecipientStatus.EXPIRED,
                    reply=reply,
                )
                for r in pending
            ]
            destination = "suspended"
        else:
            results, destination = await self.send(member, job, pending, route, delivery.payload)
            self.view.count(member.ip, len(pending))
        results = self.expire(job, results)
        delay = self.retry_delay(delivery.attempt)
        retry = any(r.status is RecipientStatus.DEFERRED for r in results)
        result = DeliveryResult(
            message_id=job.message_id,
            tenant=job.tenant,
            attempt=delivery.attempt,
            destination=destination,
            results=tuple(results),
            source_ip=member.ip,
            tags=job.tags,
            metadata=job.metadata,
        )
        # Deliveries and deferrals are written with their events here; bounces and expiries
        # go to the bounce service, which classifies them (and writes their events with the
        # reason) for the suppression list.
        mine = [r for r in results if r.status not in NEEDS_CLASSIFYING]
        theirs = tuple(r for r in results if r.status in NEEDS_CLASSIFYING)
        events = attempt_events(
            result.model_copy(update={"results": tuple(mine)}),
            retry_at=self.clock() + timedelta(seconds=delay) if retry else None,
        )
        await self.store.messages.record_attempt(results, events, source_ip=member.ip)
        publishes = [self.timeline.publish(events)]
        if theirs:
            publishes.append(self.broker.publish(result.model_copy(update={"results": theirs})))
        # Unavailable unless all are confirmed: the job comes back (pending, report_missed).
        await settle(*publishes)
        if theirs:
            await self.store.messages.results_reported([r.recipient_id for r in theirs])
        for r in results:
            DELIVERIES.labels(r.status.value).inc()
        metrics.attempt_outcomes(
            tenant=job.tenant,
            pool=job.pool,
            source_ip=member.ip,
            provider=metrics.provider_group(job.domain),
            created_at=job.created_at,
            results=results,
        )
        if span.is_recording():
            _describe_attempt(span, results, destination, retry=delay if retry else None)
        log.info(
            "attempted",
            destination=destination,
            # By recipient id: addresses stay out of logs at info level.
            outcome={r.recipient_id: r.status.value for r in results},
        )
        if retry:
            raise RetryLater(delay, "deferred recipients")

    async def pending(self, job: DeliveryJob, attempt: int) -> list[Recipient]:
        """The job's recipients still waiting. For those already final, what this attempt
        recorded but may not have published is published again (a job back after a failed
        publish or a crash): bounces and expiries the bounce service never got, and the
        attempt's stored events. Neither costs a database command while nobody is final."""
        found = await self.store.messages.pending_recipients(r.id for r in job.recipients)
        missed = {i[1:] for i in found if i.startswith("!")}
        waiting = found - {f"!{i}" for i in missed}
        if missed:
            await self.report_missed(job, missed)
        if len(waiting) < len(job.recipients):
            log.info(
                "not sending to recipients already final or without state",
                skipped=len(job.recipients) - len(waiting),
            )
            await self.republish(
                job, attempt, [r.id for r in job.recipients if r.id not in waiting]
            )
        return [r for r in job.recipients if r.id in waiting]

    async def republish(self, job: DeliveryJob, attempt: int, ids: list[str]) -> None:
        """Publish again the stored events of ``attempt`` of these recipients (same ids: a
        receiver that saw them drops them)."""
        events = await self.store.events.of_attempt(job.message_id, ids, attempt)
        if events:
            await self.timeline.publish(events)
            log.info("events published again", events=len(events), attempt=attempt)

    async def report_missed(self, job: DeliveryJob, ids: set[str]) -> None:
        """Publish again the bounces and expiries of this job that were written but never
        reached the bounce service (the first publish failed): their events and the
        suppression list would be lost otherwise. The bounce service takes a result twice
        without harm (its events and soft-bounce counts are keyed by what happened)."""
        docs = await self.store.messages.unreported_results(ids)
        results = tuple(
            RecipientResult(
                recipient_id=d["_id"],
                address=d["address"],
                status=RecipientStatus(d["status"]),
                reply=Reply(**d["reply"]),
                command=d.get("command"),
            )
            for d in docs
            if d.get("reply")
        )
        if not results:
            return
        await self.broker.publish(
            DeliveryResult(
                message_id=job.message_id,
                tenant=job.tenant,
                # The attempt that bounced (its events get the same ids as the first time).
                attempt=max(int(d.get("attempts") or 1) for d in docs),
                destination="",
                results=results,
                source_ip="",
                tags=job.tags,
                metadata=job.metadata,
            )
        )
        await self.store.messages.results_reported([r.recipient_id for r in results])
        log.info("results published again", recipients=len(results))

    async def send(
        self,
        member: Member,
        job: DeliveryJob,
        recipients: list[Recipient],
        route: Route,
        message: bytes,
    ) -> tuple[list[RecipientResult], str]:
        if route.failure is not None:
            return _all(recipients, route.failure), "dns"
        known = self.throttle.limits(job.domain, job.tenant)
        if too_big(len(message), known):
            return _all(recipients, size_refusal(len(message), job.domain, known.max_size)), ""
        results: list[RecipientResult] = []
        where = ""
        mx_host = route.targets[0].host if route.targets else ""
        provider = metrics.provider_group(job.domain, mx_host)
        waiting = time.monotonic()
        cap = min(
            self.control_set.slow(source_ip=member.ip, domain=job.domain, provider=provider),
            self.control_set.slow(
                source_ip=member.ip,
                domain=job.domain,
                provider=pair_provider(provider, job.domain),
            ),
        )
        async with self.throttle.slot(member.ip, job.domain, job.tenant, cap=cap) as limits:
            metrics.THROTTLED_SECONDS.labels(member.ip, provider).inc(time.monotonic() - waiting)
            for mail_from, group in self.transactions(job, recipients, limits.recipients):
                for target in route.targets:
                    started = time.monotonic()
                    attempt = await self.client.send(
                        target,
                        member,
                        job.domain,
                        mail_from,
                        group,
                        message,
                        max_messages=limits.per_connection,
                    )
                    metrics.transaction(job.pool, provider, time.monotonic() - started, attempt)
                    where = str(target)
                    if attempt.reached:
                        break
                results += attempt.results
        results = self.apply_verdicts(results, provider, job.domain)
        replies = [r.reply for r in results]
        await self.triggered(job, self.rules.observe(member.ip, job.domain, provider, replies))
        self.throttle.observe(member.ip, job.domain, job.tenant, replies)
        if any(slows_down(r) for r in replies):
            metrics.SLOWDOWNS.labels(member.ip, provider).inc()
        factor = min(self.throttle.factor(member.ip, job.domain, job.tenant), cap)
        metrics.PACE.labels(member.ip, provider).set(factor)
        return results, where

    def apply_verdicts(
        self, results: list[RecipientResult], provider: str, domain: str
    ) -> list[RecipientResult]:
        """What the rules say of each reply: a ``bounce`` rule bounces the recipient at once;
        a refusal that a ``move_ip`` or ``pause`` rule takes for the IP's, not the
        mailbox's, defers it (another IP or a later attempt will do)."""
        out = []
        for r in results:
            if r.status in (RecipientStatus.DELIVERED, RecipientStatus.EXPIRED):
                out.append(r)
                continue
            verdict = self.rules.verdict(r.reply, provider=provider, domain=domain)
            if verdict is RuleAction.BOUNCE:
                r = r.model_copy(update={"status": RecipientStatus.BOUNCED})
            elif verdict in (RuleAction.MOVE_IP, RuleAction.PAUSE):
                r = r.model_copy(update={"status": RecipientStatus.DEFERRED})
            out.append(r)
        return out

    def transactions(
        self, job: DeliveryJob, recipients: list[Recipient], per_transaction: int = 100
    ) -> list[tuple[str, list[Recipient]]]:
        """(envelope sender, recipients) of each SMTP transaction: one per recipient with
        per-recipient VERP, else one per ``per_transaction`` recipients (the destination's
        limit, Throttle.limits)."""
        domain = job.mail_from.rpartition("@")[2]
        if self.verp is None or not domain:
            sender = job.mail_from
        elif self.verp_mode is VerpMode.MESSAGE:
            sender = self.verp.for_message(job.message_id, domain)
        else:
            return [(self.verp.for_recipient(r.id, domain), [r]) for r in recipients]
        limit = Pace(recipients=per_transaction)
        return [(sender, group) for group in batches(recipients, limit)]

    def too_old(self, job: DeliveryJob) -> bool:
        """Whether the job is past its maximum age (the tenant's, capped by the service's)."""
        max_age = min(job.max_age or self.max_age, self.max_age)
        return (self.clock() - job.created_at).total_seconds() >= max_age

    def expire(self, job: DeliveryJob, results: list[RecipientResult]) -> list[RecipientResult]:
        """Deferred recipients older than ``max_age`` become ``expired``, keeping the last reply."""
        if not self.too_old(job):
            return results
        return [
            r.model_copy(update={"status": RecipientStatus.EXPIRED})
            if r.status is RecipientStatus.DEFERRED
            else r
            for r in results
        ]

    def retry_delay(self, attempt: int) -> float:
        return self.retry_delays[min(attempt, len(self.retry_delays)) - 1]


def _route_attributes(domain: str, route: Route) -> dict[str, str | int | list[str]]:
    attributes: dict[str, str | int | list[str]] = {"hato.domain": domain}
    if route.failure is not None:
        attributes["hato.route"] = "none"
        attributes["smtp.reply.code"] = route.failure.code
        attributes["smtp.reply.text"] = route.failure.text
        if route.failure.enhanced:
            attributes["smtp.reply.enhanced"] = route.failure.enhanced
    else:
        attributes["hato.route"] = "mx"
        attributes["hato.mx.hosts"] = list(dict.fromkeys(t.host for t in route.targets))
        attributes["hato.mx.targets"] = [str(t) for t in route.targets]
    return attributes


def _describe_attempt(
    span: trace.Span, results: Sequence[RecipientResult], destination: str, *, retry: float | None
) -> None:
    """The attempt's outcome on its span: where it went, the remote reply with its enhanced
    code (the first recipient's), the recipients by status, and when it is retried."""
    attributes: dict[str, str | int | float | list[str]] = {
        "hato.destination": destination,
        "hato.recipient_ids": [r.recipient_id for r in results],
    }
    if results:
        reply = results[0].reply
        attributes["smtp.reply.code"] = reply.code
        attributes["smtp.reply.text"] = reply.text[:500]
        if reply.enhanced:
            attributes["smtp.reply.enhanced"] = reply.enhanced
    for r in results:
        key = f"hato.recipients.{r.status.value}"
        attributes[key] = int(attributes.get(key, 0)) + 1
    if retry is not None:
        attributes["hato.retry_in"] = retry
    span.set_attributes(attributes)


def size_refusal(size: int, domain: str, limit: int) -> Reply:
    """The reply of a message bounced without being tried: bigger than ``domain`` takes."""
    return Reply(
        code=552,
        enhanced="5.3.4",
        text=f"Message size {size} bytes exceeds the {limit}-byte limit of {domain}; "
        "not sent (Hato's limit for this destination)",
    )


def _all(recipients: Sequence[Recipient], reply: Reply) -> list[RecipientResult]:
    return [
        RecipientResult(
            recipient_id=r.id, address=r.address, status=status_for(reply.code), reply=reply
        )
        for r in recipients
    ]


class Subscriptions:
    """Which queues this instance consumes: the queue of every pool it has a member IP of, and
    each of its own IPs' queues there. ``sync`` follows the pools as they are now, so a pool or
    member added while the instance runs is served without a restart, and one removed is let go.
    """

    def __init__(
        self, broker: Broker, view: PoolView, dispatcher: Dispatcher, *, handoff: float
    ) -> None:
        self.broker = broker
        self.view = view
        self.dispatcher = dispatcher
        self.handoff = handoff
        self._lock = asyncio.Lock()  # the heartbeat and an announced change may sync at once

    def wanted(self) -> dict[str, tuple[str, str | None]]:
        """queue → (pool, own member IP or None for the pool's own queue)."""
        out: dict[str, tuple[str, str | None]] = {}
        for pool in self.view.served():
            out[deliver_queue(pool)] = (pool, None)
            for member in self.view.pools[pool].members:
                if member.ip in self.view.own_ips:
                    out[ip_queue(pool, member.ip)] = (pool, member.ip)
        return out

    async def sync(self) -> None:
        async with self._lock:
            await self._sync()

    async def _sync(self) -> None:
        wanted = self.wanted()
        have = {q for q in self.broker.consuming() if q.startswith("deliver.")}
        for queue in sorted(set(wanted) - have):
            pool, ip = wanted[queue]
            if ip is None:
                await self.broker.declare_pool(pool)
                await self.broker.consume(queue, metrics.waits(self.dispatcher.route))
            else:
                await self.broker.declare_ip_queue(pool, ip, handoff=self.handoff)
                await self.broker.consume(queue, self.dispatcher.owned(ip))
            log.info("serving", queue=queue)
        for queue in sorted(have - set(wanted)):
            await self.broker.stop_consuming(queue)
            log.info("no longer serving", queue=queue)


class RulesWatch:
    """Reads the rules file again when it changed (checked at each heartbeat) or on SIGHUP;
    a file that no longer reads keeps the rules in force, and says why."""

    def __init__(self, settings: DispatcherSettings, rules: Rules) -> None:
        self.settings = settings
        self.rules = rules
        self.mtime = self._mtime()

    def _mtime(self) -> float:
        try:
            return os.stat(self.settings.rules_file).st_mtime if self.settings.rules_file else 0
        except OSError:
            return 0.0

    def check(self) -> None:
        if self.settings.rules_file and self._mtime() != self.mtime:
            self.reload()

    def reload(self) -> None:
        self.mtime = self._mtime()
        try:
            rules = self.settings.rule_set()
        except ValueError as exc:
            log.error("rules not reloaded; the rules in force stay", error=str(exc))
            return
        self.rules.replace(rules)
        log.info("rules reloaded", rules=[r.name for r in rules])


def check_bindable(ips: Sequence[str]) -> None:
    """Raise ConfigError unless every source IP is an address of this host. A pod scheduled
    onto a node that does not carry its map entry's addresses (yet) then stops at once and
    visibly, instead of announcing IPs whose every connection would fail."""
    for ip in ips:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((ip, 0))
            except OSError as exc:
                raise ConfigError(
                    f"source IP {ip} is not an address of this host ({exc.strerror}); "
                    "is the pod on the node HATO_DISPATCHER_SOURCE_IPS_BY_NODE gives it?"
                ) from None


async def run(settings: DispatcherSettings) -> None:
    routes, tenant_routes = settings.route_tables()  # checked when the settings were read
    throttle = Throttle(*settings.paces())
    client = SmtpClient(
        connect_timeout=settings.connect_timeout,
        max_messages=settings.max_messages_per_connection,
        idle_timeout=settings.idle_timeout,
        reuse=settings.reuse_connections,
        chunking=settings.chunking,
        tls_required=frozenset(d.lower() for d in settings.tls_required),
        command_timeout=settings.smtp_timeout,
        transaction_deadline=settings.transaction_deadline,
    )
    source_ips = settings.own_source_ips()
    if settings.source_ips_by_node:
        check_bindable(source_ips)
    verp = None
    if settings.verp.mode is not VerpMode.OFF:
        key = settings.verp.secret()
        if key:
            verp = Verp(key, settings.verp.label, settings.verp.ttl_days)
        else:
            log.warning("no VERP key (HATO_VERP_KEY_FILE): envelope senders stay as submitted")
    async with Runtime("dispatcher", settings) as rt:
        pools = rt.store.pools
        view = PoolView(
            pools,
            tuple(source_ips),
            settings.helo_name,
            settings.heartbeat_timeout,
            tuple(settings.pools),
        )
        await view.refresh()
        dispatcher = Dispatcher(
            rt.store,
            rt.broker,
            view,
            MxResolver(
                settings.dns,
                routes,
                port=settings.mx_port,
                tenant_routes=tenant_routes,
                egress=Egress.from_settings(settings.egress),
            ),
            client,
            throttle,
            retry_delays=settings.retry_delays,
            max_age=settings.max_age,
            verp=verp,
            verp_mode=settings.verp.mode,
            rules=Rules(settings.rule_set()),
            hold_delay=settings.hold_delay,
            controls=rt.store.controls,
            waiting=rt.store.waiting,
        )
        await dispatcher.refresh_controls()
        rules_watch = RulesWatch(settings, dispatcher.rules)
        subscriptions = Subscriptions(rt.broker, view, dispatcher, handoff=settings.handoff_ttl)
        await subscriptions.sync()
        await pools.beat(settings.instance, source_ips, view.served())

        async def heartbeat(_: Changed | None = None) -> None:
            await view.flush()
            await view.refresh()
            await subscriptions.sync()
            await pools.beat(settings.instance, source_ips, view.served())
            await dispatcher.refresh_controls()
            rules_watch.check()

        async def changed(change: Changed) -> None:
            if change.what is ChangeKind.QUEUE:
                await dispatcher.refresh_controls()
                scope = retry_requested(change.name)
                if scope is not None:
                    await dispatcher.retry_now(scope)
                return
            await heartbeat(change)

        await rt.broker.on_change(changed)  # a new pool or member is served at once
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, rules_watch.reload)
        rt.every(settings.heartbeat_interval, heartbeat)
        rt.every(settings.idle_timeout / 2, client.close_idle)

        async def warmup() -> None:
            metrics.warmup(view.pools.values(), source_ips, view.sent_today)

        retries = {metrics.retry_queue(d) for d in settings.retry_delays}
        rt.census(queues=[*sorted(retries), Queue.DEAD.value], collectors=[warmup])
        rt.serving()
        log.info("ready", pools=view.served(), source_ips=source_ips, ops_port=rt.ops.port)
        await rt.until_stopped()
        await pools.leave(settings.instance)  # the others stop routing to our IPs at once
        await view.flush()
        await client.close_idle(all_=True)

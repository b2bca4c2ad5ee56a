"""The signer service: sign each message once, then one delivery job per destination domain;
and, on a schedule, the DKIM key rotation of every domain. Replicas share the sign queue; the
rotation runs on one of them at a time, the holder of its lease in MongoDB.

A signing is its ``signed`` (or ``unsigned``) event, written, then published together with
the delivery jobs; the sign job is acked only when the broker confirmed all of them. A sign
job that comes back (a publish failed, the signer died) publishes the event it finds stored
(its first run's, same id) and its delivery jobs again: whether they left before the failure
is known nowhere, and writing it down would cost every mail a database command. That is the
one deliberate at-least-once point of the fan-out. A second delivery job sends nothing twice:
the dispatcher runs two copies of a job one after the other (``consume()``'s twin guard) and
sends only to recipients still waiting (its pending check); jobs whose recipients are all
final already (and reported) are not published again."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from opentelemetry import trace
from prometheus_client import Counter

from services.signer.dkim_sign import SigningError, sign_each
from services.signer.keys import Choice, KeyRing, load_key_files
from services.signer.settings import SignerSettings
from shared import dkim, metrics
from shared import logging as hlog
from shared.broker import ERRORS_HEADER, Broker, Delivery, Queue, deliver_queue, settle
from shared.errors import TRANSIENT_ERRORS, Permanent, Unavailable
from shared.events import event_of
from shared.ids import event_id
from shared.leases import Leases, holder_id
from shared.message import normalize_line_endings
from shared.provisioning import Provisioner
from shared.runtime import Runtime
from shared.schemas import (
    Changed,
    ChangeKind,
    DeliveryBatch,
    DeliveryJob,
    Event,
    EventType,
    Recipient,
    Reply,
    SignBatch,
    SignJob,
)
from shared.secrets import SecretBox
from shared.telemetry import inner_span
from shared.timeline import EventLog, Timeline
from shared.unsubscribe import Unsubscribe, without_fields

log = hlog.get_logger(__name__)

SIGNED = Counter(
    "hato_signer_messages_total", "Messages handled by the signer, by outcome.", ["outcome"]
)
INLINE_LIMIT = 256 * 1024  # larger messages are signed in a worker thread
DELIVERY_BATCH_BYTES = 1 << 20  # about the most signed messages one delivery batch carries
_LIST_FIELDS = frozenset({b"list-unsubscribe", b"list-unsubscribe-post"})


def _one(job: SignJob, recipient: Recipient) -> DeliveryJob:
    """The delivery job of one recipient's own copy (one with its own unsubscribe link)."""
    return fan_out(job.model_copy(update={"recipients": (recipient,)}), per_job=1)[0]


def fan_out(job: SignJob, *, per_job: int) -> list[DeliveryJob]:
    """One delivery job per destination domain, at most ``per_job`` recipients each."""
    by_domain: dict[str, list[Recipient]] = defaultdict(list)
    for r in job.recipients:
        by_domain[r.domain].append(r)
    jobs = []
    for domain, recipients in by_domain.items():
        it = iter(recipients)
        while chunk := tuple(islice(it, per_job)):
            jobs.append(
                DeliveryJob(
                    message_id=job.message_id,
                    tenant=job.tenant,
                    mail_from=job.mail_from,
                    domain=domain,
                    recipients=chunk,
                    pool=job.pool,
                    created_at=job.created_at,
                    max_age=job.max_age,
                    tags=job.tags,
                    metadata=job.metadata,
                )
            )
    return jobs


@dataclass(frozen=True, slots=True)
class _Signed:
    """One message signed: its ``signed`` (or ``unsigned``) event, ``first`` when this run
    made it (else its first run's, found stored), and the delivery jobs with their copies."""

    job: SignJob
    event: Event
    first: bool
    jobs: list[DeliveryJob]
    copies: list[bytes]
    problem: str | None
    choice: Choice


class SigningEvents(EventLog, Protocol):
    """The signer's part of the events collection (``shared.events.Events``)."""

    async def signing(self, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]: ...


class SigningMessages(Protocol):
    """The signer's part of the messages and recipients (``shared.messages.Messages``)."""

    async def pending_recipients(self, ids: Iterable[str]) -> set[str]: ...

    async def fail_message(self, message_id: str, reply: Reply) -> None: ...


class SigningRecords(Protocol):
    """What the signer's handler reads and writes in the database: the service passes its
    ``Store``; unit tests pass a small fake."""

    @property
    def events(self) -> SigningEvents: ...

    @property
    def messages(self) -> SigningMessages: ...


class Signer:
    def __init__(
        self,
        store: SigningRecords,
        broker: Broker,
        keys: KeyRing,
        *,
        settings: SignerSettings,
        unsubscribe: Unsubscribe | None = None,
    ) -> None:
        self.unsubscribe = unsubscribe
        self.store = store
        self.broker = broker
        self.keys = keys
        self.settings = settings
        self.timeline = Timeline(store.events, broker)

    async def handle(self, delivery: Delivery) -> None:
        message = delivery.message
        if isinstance(message, SignBatch):
            await self._batch(message.split(delivery.payload), redelivered=delivery.redelivered)
            return
        if not isinstance(message, SignJob):
            raise Permanent(f"expected a sign job, got {type(message).__name__}")
        signed = await self._sign_one(message, delivery.payload, redelivered=delivery.redelivered)
        await self._hand_on([signed] if signed else [])

    async def _batch(self, items: list[tuple[SignJob, bytes]], *, redelivered: bool) -> None:
        """The jobs of a sign batch, each as if it came alone, handed on together: their events
        in one write, their events and delivery jobs in one round of confirms. A batch whose
        handling fails for another reason than an absent store or broker (which the batch
        waits out whole) goes back on the sign queue as its single jobs, marked as having
        failed once: each then meets ``consume()``'s policy alone, and one message that cannot
        be signed does not hold up or fail the others."""
        try:
            signed = [await self._sign_one(job, raw, redelivered=redelivered) for job, raw in items]
            await self._hand_on([s for s in signed if s])
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:
            log.warning("a sign batch failed: its jobs go on one by one", error=repr(exc))
            SIGNED.labels("batch_split").inc(len(items))
            # Marked as come back (ERRORS_HEADER): what the batch's run recorded is found,
            # and its delivery jobs are published again only for recipients still waiting.
            await settle(
                *(self.broker.publish(job, raw, headers={ERRORS_HEADER: 1}) for job, raw in items)
            )

    async def _sign_one(self, job: SignJob, payload: bytes, *, redelivered: bool) -> _Signed | None:
        """Sign one message and make its event and delivery jobs; None when it is not sent
        (no key and the policy says fail: its recipients end ``failed`` here)."""
        choice = await self.keys.choose(job.tenant, job.from_domain)
        heads = self._unsubscribe_heads(job)
        size = len(payload)
        if heads is not None:  # Hato's fields replace any the message brought
            payload = without_fields(normalize_line_endings(payload), _LIST_FIELDS)
        signed: list[bytes] | None = None
        problem = None
        with inner_span("dkim sign") as span:
            if not choice.keys:
                problem = f"no usable DKIM key for {job.from_domain}"
            else:
                try:
                    started = time.perf_counter()
                    signed = await self._sign(payload, choice, heads or [b""])
                    metrics.SIGN_SECONDS.observe(time.perf_counter() - started)
                except SigningError as exc:
                    problem = str(exc)
            if span.is_recording():
                span.set_attributes(
                    {
                        "hato.dkim.domain": choice.domain or job.from_domain,
                        "hato.dkim.selectors": choice.selectors,
                        "hato.dkim.aligned": choice.aligned,
                        "hato.size": size,
                    }
                )
                if problem:
                    span.set_attribute("hato.dkim.problem", problem)
        if problem and self.settings.unsigned_policy == "fail":
            await self._fail(job, problem)
            return None
        if signed is None:  # sent unsigned
            signed = [payload] if heads is None else sign_each(payload, (), heads)

        stored = await self._stored(job) if redelivered else None
        if stored is not None:
            event = stored  # its first run's outcome, published again under the same id
        elif problem:
            event = self._event(job, EventType.UNSIGNED, {"reason": problem})
        else:
            detail: dict = {
                "domain": choice.domain,
                "selectors": choice.selectors,
                "aligned": choice.aligned,
            }
            if not choice.aligned:
                detail["note"] = (
                    f"signed with the tenant's fallback domain {choice.domain}: "
                    f"{job.from_domain} has no usable key (not DMARC-aligned)"
                )
            if heads is not None:  # each recipient's copy signed with its own link
                detail["unsubscribe_list"] = job.unsubscribe_list
            event = self._event(job, EventType.SIGNED, detail)
        if heads is None:
            jobs = fan_out(job, per_job=self.settings.max_recipients_per_job)
            copies = [signed[0]] * len(jobs)
        else:  # each recipient its own copy, so its own job
            jobs = [_one(job, r) for r in job.recipients]
            copies = signed
        if stored is not None:
            kept = {id(j) for j in await self._unfinished(jobs)}
            jobs, copies = (
                [j for j in jobs if id(j) in kept],
                [c for j, c in zip(jobs, copies, strict=True) if id(j) in kept],
            )
        return _Signed(job, event, stored is None, jobs, copies, problem, choice)

    async def _hand_on(self, signed: list[_Signed]) -> None:
        """Write the events of first runs, then publish every event and delivery job and wait
        for all their confirms (``Unavailable`` unless all came: the job comes back and
        publishes them again)."""
        # The event is the record of the signing (domain, selectors, alignment; see
        # Events.signing): the message document is not written, a database write a mail
        # less. A message without state (its acceptance failed) gets no document; the
        # dispatcher sends nothing for it.
        if first := [s.event for s in signed if s.first]:
            await self.store.events.append(first)
        jobs = [(j, c) for s in signed for j, c in zip(s.jobs, s.copies, strict=True)]
        await settle(
            self.timeline.publish([s.event for s in signed]),
            *(self.broker.publish(*batch) for batch in self._batches(jobs)),
        )
        span = trace.get_current_span()  # the sign job's consumer span
        if span.is_recording():
            span.set_attribute("hato.delivery_jobs", sum(len(s.jobs) for s in signed))
        for s in signed:
            ids = {"message_id": s.job.message_id, "tenant": s.job.tenant, "jobs": len(s.jobs)}
            if s.problem:
                SIGNED.labels("unsigned").inc()
                log.warning("sent unsigned", reason=s.problem, **ids)
            else:
                SIGNED.labels("signed" if s.choice.aligned else "signed_fallback").inc()
                log.info("signed", domain=s.choice.domain, selectors=s.choice.selectors, **ids)

    def _batches(
        self, jobs: list[tuple[DeliveryJob, bytes]]
    ) -> list[tuple[DeliveryJob | DeliveryBatch, bytes]]:
        """The broker messages of ``jobs``: those of one pool together, at most
        ``delivery_batch`` jobs and about ``DELIVERY_BATCH_BYTES`` of messages in one; a job
        alone as itself."""
        by_pool: dict[str, list[list[tuple[DeliveryJob, bytes]]]] = defaultdict(lambda: [[]])
        for job, copy in jobs:
            chunks = by_pool[job.pool]
            size = sum(len(c) for _, c in chunks[-1])
            if len(chunks[-1]) >= self.settings.delivery_batch or (
                chunks[-1] and size + len(copy) > DELIVERY_BATCH_BYTES
            ):
                chunks.append([])
            chunks[-1].append((job, copy))
        return [
            chunk[0] if len(chunk) == 1 else DeliveryBatch.of(chunk)
            for chunks in by_pool.values()
            for chunk in chunks
        ]

    async def _stored(self, job: SignJob) -> Event | None:
        """The ``signed`` or ``unsigned`` event a first run of this job wrote, if any."""
        doc = (await self.store.events.signing([job.message_id])).get(job.message_id)
        if doc is None or doc.get("_id") not in {
            event_id(t, job.message_id, None, "sign")
            for t in (EventType.SIGNED, EventType.UNSIGNED)
        }:
            return None
        return event_of(doc)

    async def _unfinished(self, jobs: list[DeliveryJob]) -> list[DeliveryJob]:
        """The delivery jobs of a sign job that came back, without those whose recipients are
        all final and reported (they would send nothing and publish nothing)."""
        pending = await self.store.messages.pending_recipients(
            r.id for j in jobs for r in j.recipients
        )
        return [
            j for j in jobs if any(r.id in pending or f"!{r.id}" in pending for r in j.recipients)
        ]

    async def _sign(self, payload: bytes, choice: Choice, heads: list[bytes]) -> list[bytes]:
        if len(payload) * len(heads) <= INLINE_LIMIT:
            return sign_each(payload, choice.keys, heads)
        return await asyncio.to_thread(sign_each, payload, choice.keys, heads)

    def _unsubscribe_heads(self, job: SignJob) -> list[bytes] | None:
        """Each recipient's List-Unsubscribe fields (in the order of ``job.recipients``) when
        the message is sent with one-click unsubscribe; None when it is not."""
        if not job.unsubscribe_list:
            return None
        if self.unsubscribe is None:
            log.warning("unsubscribe asked, but no HATO_UNSUBSCRIBE_KEY: sent without it")
            return None
        domain = job.mail_from.rpartition("@")[2] or job.from_domain
        return [
            self.unsubscribe.header_fields(
                tenant=job.tenant,
                list_=job.unsubscribe_list,
                address=r.address,
                recipient_id=r.id,
                domain=domain,
            )
            for r in job.recipients
        ]

    async def _fail(self, job: SignJob, reason: str) -> None:
        await self.store.messages.fail_message(
            job.message_id, Reply(code=554, enhanced="5.7.0", text=reason)
        )
        SIGNED.labels("failed").inc()
        log.warning("not sent: cannot sign", reason=reason)
        await self.timeline.record(
            [self._event(job, EventType.FAILED, {"reason": reason}, r) for r in job.recipients]
        )

    @staticmethod
    def _event(
        job: SignJob, type_: EventType, detail: dict, recipient: Recipient | None = None
    ) -> Event:
        return Event.of(
            type_,
            tenant=job.tenant,
            message_id=job.message_id,
            recipient_id=recipient.id if recipient else None,
            address=recipient.address if recipient else None,
            step=("sign",),  # a redelivered sign job records the same events, not new ones
            detail=detail,
            tags=job.tags,
            metadata=job.metadata,
        )


class Rotation:
    """Activates keys whose records appeared in DNS, and starts a rotation for keys older
    than ``rotate_after_days``; each step is announced as an event.

    The pass runs on one signer replica at a time (it holds the ``dkim-rotation`` lease):
    a pass reads a domain's keys, looks DNS up and writes the keys back, so two passes at
    once would each activate the same key (two events for one step) or each start a rotation
    of an old key (two pending keys, of which the tenant publishes one)."""

    def __init__(
        self, provisioner: Provisioner, timeline: Timeline, *, rotate_after_days: int
    ) -> None:
        self.provisioner = provisioner
        self.timeline = timeline
        self.broker = timeline.broker
        self.rotate_after_days = rotate_after_days

    async def run(self) -> None:
        events = []
        for change in await self.provisioner.rotation_pass(self.rotate_after_days):
            events.append(change.event())
            log.info(
                "dkim rotation", kind=change.kind, domain=change.domain, selector=change.selector
            )
        if events:
            try:
                await self.timeline.record(events)
            except Unavailable:
                # Written and acted on; the next pass does not make them again. Stored, they
                # still reach webhooks' replays and the API; the change is announced anyway.
                log.warning("dkim rotation events written but not published", events=len(events))
            for domain in sorted({str(e.detail["domain"]) for e in events}):
                await self.broker.publish(Changed(what=ChangeKind.DOMAINS, name=domain))


async def run(settings: SignerSettings) -> None:
    box = SecretBox.from_settings(settings.secrets)
    files = load_key_files(settings.keys_dir)
    async with Runtime("signer", settings, pools=settings.pools) as rt:
        keys = KeyRing(rt.store.directory, box, ttl=settings.key_cache_seconds, files=files)
        signer = Signer(
            rt.store, rt.broker, keys, settings=settings, unsubscribe=settings.unsubscribe.make()
        )
        await rt.broker.consume(Queue.SIGN, metrics.waits(signer.handle))

        async def apply(change: Changed) -> None:
            if change.what is not ChangeKind.QUEUE:  # queue controls are the dispatchers'
                keys.forget()

        await rt.broker.on_change(apply)
        rotation = Rotation(
            Provisioner(rt.store.directory, rt.store.pools, box, settings.dns),
            signer.timeline,
            rotate_after_days=settings.rotate_after_days,
        )
        leases = Leases(rt.store.db, holder=holder_id("signer"), ttl=settings.lease_ttl)
        await leases.ensure_indexes()
        leases.lease("dkim-rotation").every(rt, settings.rotation_interval, rotation.run)

        async def dkim_keys() -> None:
            await metrics.dkim_keys(
                rt.store.directory, rotate_after_days=settings.rotate_after_days
            )

        rt.census(queues=[deliver_queue(p) for p in settings.pools], collectors=[dkim_keys])

        async def keys_open() -> str:
            """Every live stored key opens with this master key: one that does not would
            dead-letter its mail (said at start and in /readyz until it is fixed)."""
            problems = dkim.unopenable_keys(await rt.store.directory.domains(), box)
            return "; ".join(problems[:5]) + (
                f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
            )

        rt.require("dkim_keys", keys_open)
        if problem := await keys_open():
            log.error(
                "DKIM keys that do not open: mail from their domains is not signed", problem=problem
            )
        rt.serving()
        log.info("ready", ops_port=rt.ops.port)
        await rt.until_stopped()
        # Released, the lease passes to another replica at once instead of after its TTL.
        # Half of what is left of the one shutdown grace; the broker's drain gets the rest.
        await leases.close(rt.grace_left() / 2)

"""Accepting a submission, the same for every front door: make it durable, then hand it on.

The order is the promise: the message and recipient documents (and the events of the
acceptance) are written, then the sign job and the events are published together and
confirmed; only then does the caller hear "accepted". So a crash after the answer loses no
event, and no database write marks them published (the answer is the outbox's ack). If a
step fails the caller hears ``Unavailable`` and the written documents are removed (best
effort; a dispatcher meeting recipients without their documents sends nothing rather than
what the client was told failed). A listener may then have seen ``accepted`` events of a
mail the client was told to send again: the retry is a new message, with new ids.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import email.utils
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from services.ingest.sign_jobs import SignJobs
from shared import logging as hlog
from shared import metrics, unsubscribe
from shared.broker import Broker, settle
from shared.directory import Identity
from shared.errors import TRANSIENT_ERRORS, HatoError, Unavailable
from shared.ids import new_id
from shared.message import normalize_line_endings
from shared.schemas import (
    Event,
    EventType,
    MessageStage,
    Recipient,
    RecipientStatus,
    Reply,
    SignJob,
    utcnow,
)
from shared.telemetry import inner_span, trace_id, traceparent
from shared.timeline import EventLog, Timeline

log = hlog.get_logger(__name__)

ACCEPTED = Counter(
    "hato_ingest_accepted_total", "Messages accepted, by front door and tenant.", ["door", "tenant"]
)
NOT_ACCEPTED = Counter(
    "hato_ingest_unavailable_total", "Messages refused because state could not be made durable."
)


SANDBOXED = "sandbox mode: accepted, checked and recorded; not sent"


class FrontDoor(StrEnum):
    """The front door a submission came through."""

    SMTP = "smtp"
    HTTP = "http"
    AMQP = "amqp"


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """The few header fields ingest keeps about a message."""

    from_address: str | None
    from_domain: str | None
    subject: str | None
    message_id: str | None
    from_name: str | None = None  # the From display name as written (RFC 2047 words kept)
    unsubscribe: str | None = None  # the X-Hato-Unsubscribe field: a list name or "off"
    list_unsubscribe: bool = False  # the message has a List-Unsubscribe field of its own


def summarize_headers(raw: bytes) -> HeaderSummary:
    """Parse only the header block of ``raw`` (never the body, which can be 25 MB)."""
    end = len(raw)
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i != -1:
            end = min(end, i + len(sep))
    headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:end])
    from_address = from_name = None
    from_values = headers.get_all("From") or []
    if from_values:
        from_name, from_address = email.utils.parseaddr(str(from_values[0]))
    from_domain = None
    if from_address and "@" in from_address:
        from_domain = from_address.rpartition("@")[2].strip().lower() or None

    def text(name: str) -> str | None:
        value = headers.get(name)
        return str(value)[:998] if value is not None else None

    asked = headers.get(unsubscribe.CONTROL_HEADER)
    return HeaderSummary(
        from_address or None,
        from_domain,
        text("Subject"),
        text("Message-ID"),
        from_name[:998] if from_name else None,
        str(asked).strip() if asked is not None else None,
        headers.get("List-Unsubscribe") is not None,
    )


@dataclass(frozen=True, slots=True)
class Submission:
    """A message a front door wants accepted, on behalf of an authenticated identity."""

    identity: Identity
    mail_from: str
    recipients: tuple[str, ...]
    raw: bytes
    headers: HeaderSummary
    door: FrontDoor
    client: str  # peer address, API key prefix, ...
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    pool: str | None = None  # a pool the message names (checked by the door)
    sandbox: bool = False  # test mode: checked and recorded as sandboxed, never sent
    send_at: datetime | None = None  # held until then (shared/schedule.py) when in the future
    received_from: str = ""  # the Received field's "from" (SMTP: HELO name and address)
    protocol: str = ""  # its "with": ESMTPSA, HTTP ... (default: the door's name)
    # Events to add for every recipient at acceptance: what the door changed (charset_fallback).
    notices: tuple[tuple[EventType, dict[str, str]], ...] = ()
    # One-click unsubscribe: the list the door's own field names, "" when it says no; None
    # when it says nothing (then the X-Hato-Unsubscribe field, then the tenant's default).
    unsubscribe: str | None = None


def unsubscribe_list(sub: Submission) -> str | None:
    """The list a submission is sent to with one-click unsubscribe, None for none: the door's
    field, else the message's ``X-Hato-Unsubscribe`` field (``off``: none), else the tenant's
    default — unless the message brings a ``List-Unsubscribe`` of its own, which then stays."""
    if sub.unsubscribe is not None:
        return sub.unsubscribe or None
    asked = sub.headers.unsubscribe
    if asked is not None:
        return None if asked.lower() == unsubscribe.OFF else asked
    if sub.headers.list_unsubscribe:
        return None
    return sub.identity.limits.unsubscribe_list or None


@dataclass(frozen=True, slots=True)
class Accepted:
    message_id: str
    recipients: tuple[Recipient, ...]
    suppressed: frozenset[str] = frozenset()  # recipient ids not sent to
    sandbox: bool = False
    scheduled: bool = False

    def status_of(self, recipient: Recipient) -> RecipientStatus:
        if recipient.id in self.suppressed:
            return RecipientStatus.SUPPRESSED
        if self.sandbox:
            return RecipientStatus.SANDBOXED
        return RecipientStatus.SCHEDULED if self.scheduled else RecipientStatus.QUEUED


_CONTROL = frozenset({unsubscribe.CONTROL_HEADER.lower().encode()})


class RateLimited(HatoError):
    """Raised when a tenant has reached its messages-per-hour limit."""


class AcceptCounts(Protocol):
    """The tenants' hourly counts (``shared.rates.HourlyCounts``)."""

    async def count(self, tenant: str, n: int = 1) -> int: ...


class AcceptSuppressions(Protocol):
    """The suppression list, read (``shared.suppressions.Suppressions``)."""

    async def suppressed(
        self, tenant: str, addresses: Iterable[str], *, scopes: Iterable[str] = ()
    ) -> set[str]: ...


class AcceptMessages(Protocol):
    """Where an accepted message becomes durable (``shared.messages.Messages``)."""

    async def insert_message(
        self,
        message: dict[str, Any],
        recipients: Sequence[dict[str, Any]],
        events: Sequence[Event] = (),
    ) -> None: ...

    async def discard_message(self, message_id: str) -> None: ...


class AcceptSchedules(Protocol):
    """Where a message sent later waits (``shared.schedule.Schedules``)."""

    async def hold(self, job: SignJob, raw: bytes, send_at: datetime) -> None: ...

    async def forget(self, message_id: str) -> None: ...


class AcceptRecords(Protocol):
    """What accepting reads and writes in the database: the service passes its ``Store``;
    unit tests pass a small fake."""

    @property
    def hourly(self) -> AcceptCounts: ...

    @property
    def suppressions(self) -> AcceptSuppressions: ...

    @property
    def messages(self) -> AcceptMessages: ...

    @property
    def schedules(self) -> AcceptSchedules: ...

    @property
    def events(self) -> EventLog: ...


class Acceptor:
    """Turns a Submission into durable state plus a confirmed sign job."""

    def __init__(
        self,
        store: AcceptRecords,
        broker: Broker,
        *,
        hostname: str = "hato.localhost",
        sign_batch: int = 32,
    ) -> None:
        self.store = store
        self.broker = broker
        # Sign jobs of acceptances that finish together leave in one broker message.
        self.sign_jobs = SignJobs(broker, max_jobs=sign_batch)
        self.hostname = hostname  # in the Received field Hato adds
        self.timeline = Timeline(store.events, broker)
        self._in_flight: set[asyncio.Task[Accepted]] = set()

    async def accept(self, submission: Submission) -> Accepted:
        """Raises Unavailable when the message could not be made durable and handed on, and
        RateLimited when the tenant's hourly limit is reached."""
        # Shielded: a client hanging up mid-accept must not leave half-written state.
        task = asyncio.create_task(self._accept(submission))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        started = time.perf_counter()
        accepted = await asyncio.shield(task)
        metrics.ACCEPT_SECONDS.labels(submission.door).observe(time.perf_counter() - started)
        return accepted

    async def drain(self, grace: float) -> None:
        """Wait for accepts in progress (at shutdown)."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace)

    async def _accept(self, sub: Submission) -> Accepted:
        # A child of the request's span (HTTP, SMTP DATA, the submit queue's consumer): the
        # first span of the mail's own story, whose traceparent the message record keeps (the
        # request's own when no span is exported: the same trace either way).
        with inner_span(
            "accept",
            kind=SpanKind.INTERNAL,
            attributes={"hato.tenant": sub.identity.tenant, "hato.door": sub.door},
        ) as span:
            accepted = await self._durable(sub)
            if span.is_recording():
                span.set_attributes(
                    {
                        "hato.message_id": accepted.message_id,
                        "hato.recipients": len(accepted.recipients),
                        "hato.suppressed": len(accepted.suppressed),
                    }
                )
            return accepted

    def _received(self, sub: Submission, message_id: str) -> bytes:
        """The Received field of this hop (RFC 5321 4.4): where the message came from, how,
        and under which id Hato knows it. Its count stops mail loops (content.MAX_HOPS)."""
        source = sub.received_from or f"{sub.door} ({sub.client})"
        protocol = sub.protocol or sub.door.upper()
        date = email.utils.formatdate(usegmt=True)
        line = (
            f"Received: from {source}\r\n\tby {self.hostname} (Hato) with {protocol}"
            f" id {message_id};\r\n\t{date}\r\n"
        )
        return line.encode("ascii", "replace")

    async def _check_limits(self, sub: Submission, list_: str | None) -> set[str]:
        """Enforce the hourly limit; return the suppressed recipient addresses."""
        hourly = self.store.hourly
        tenant = sub.identity.tenant
        try:
            limit = sub.identity.limits.messages_per_hour
            if limit and await hourly.count(tenant) > limit:
                await hourly.count(tenant, -1)
                raise RateLimited(f"{tenant} reached {limit} messages per hour")
            # Left lists and tags: this message's list, and every tag it carries.
            scopes = {f"{unsubscribe.TAG}{t}" for t in sub.tags}
            if list_:
                scopes.add(unsubscribe.scope_of(list_))
            return await self.store.suppressions.suppressed(tenant, sub.recipients, scopes=scopes)
        except TRANSIENT_ERRORS as exc:
            NOT_ACCEPTED.inc()
            log.warning("store unavailable; not accepting", error=repr(exc))
            raise Unavailable("store unavailable") from exc

    async def _durable(self, sub: Submission) -> Accepted:
        tenant, pool = sub.identity.tenant, sub.pool or sub.identity.pool
        message_id = new_id()
        hlog.bind(message_id=message_id, tenant=tenant)
        list_ = unsubscribe_list(sub)
        suppressed_addresses = await self._check_limits(sub, list_)
        raw = normalize_line_endings(sub.raw)
        if sub.headers.unsubscribe is not None:  # a word to Hato, not part of the message
            raw = unsubscribe.without_fields(raw, _CONTROL)
        raw = self._received(sub, message_id) + raw
        fate = Fate.of(sub, suppressed_addresses, utcnow())
        events = acceptance_events(sub, fate, message_id)
        try:
            await self.store.messages.insert_message(
                message_document(sub, fate, message_id, pool, list_, len(raw)),
                recipient_documents(fate, message_id, tenant),
                events,
            )
        except TRANSIENT_ERRORS as exc:
            NOT_ACCEPTED.inc()
            log.warning("store unavailable; not accepting", error=repr(exc))
            raise Unavailable("store unavailable") from exc
        except Exception as exc:  # e.g. a write error after a partial write
            NOT_ACCEPTED.inc()
            log.exception("store refused the message; not accepting")
            await self._discard(message_id)
            raise Unavailable("store refused the message") from exc
        await self._pass_on(sub, fate, message_id, pool, list_, raw, events)
        ACCEPTED.labels(sub.door, tenant).inc()
        for r in fate.suppressed:
            metrics.OUTCOMES.labels(tenant, metrics.provider_group(r.domain), "suppressed").inc()
        log.info(
            "accepted",
            recipients=len(fate.recipients),
            suppressed=len(fate.suppressed),
            size=len(raw),
            door=sub.door,
        )
        return Accepted(
            message_id,
            fate.recipients,
            frozenset(r.id for r in fate.suppressed),
            sandbox=sub.sandbox,
            scheduled=fate.held,
        )

    async def _pass_on(
        self,
        sub: Submission,
        fate: Fate,
        message_id: str,
        pool: str,
        list_: str | None,
        raw: bytes,
        events: list[Event],
    ) -> None:
        """Publish the stored events, and the sign job of the recipients to send to — or keep
        the job until its time (``send_at``); on a failure the message is discarded and
        Unavailable raised (the client tries again)."""
        publishes = [self.timeline.publish(events)]
        if fate.to_send:
            job = SignJob(
                message_id=message_id,
                tenant=sub.identity.tenant,
                mail_from=sub.mail_from,
                from_domain=fate.from_domain,
                recipients=fate.to_send,
                pool=pool,
                created_at=fate.at,
                max_age=sub.identity.limits.max_age,
                tags=sub.tags,
                metadata=sub.metadata,
                unsubscribe_list=list_,
            )
            if fate.held:
                assert sub.send_at is not None
                try:
                    await self.store.schedules.hold(job, raw, sub.send_at)
                except Exception as exc:
                    NOT_ACCEPTED.inc()
                    log.warning("store unavailable; not accepting", error=repr(exc))
                    await self._discard(message_id)
                    raise Unavailable("store unavailable") from exc
            else:
                publishes.append(self.sign_jobs.publish(job, raw))
        try:
            # Together: their confirms arrive in one round trip.
            await settle(*publishes)
        except Unavailable:
            NOT_ACCEPTED.inc()
            log.warning("broker unavailable; not accepting")
            await self._discard(message_id)
            raise

    async def _discard(self, message_id: str) -> None:
        try:
            await self.store.messages.discard_message(message_id)
            await self.store.schedules.forget(message_id)
        except Exception:
            log.warning("could not discard the unaccepted message's state")


SUPPRESSED_REPLY = Reply.of(550, "5.7.1", "address is on the suppression list; not sent")
SANDBOX_REPLY = Reply.of(250, "2.0.0", SANDBOXED)


@dataclass(frozen=True, slots=True)
class Fate:
    """What acceptance does with each recipient of a submission at ``at``: suppressed (on
    the tenant's list), sandboxed (sandbox mode: recorded, never sent), or to send — now, or
    ``held`` until the submission's ``send_at``."""

    at: datetime
    recipients: tuple[Recipient, ...]
    suppressed: tuple[Recipient, ...]
    sandboxed: tuple[Recipient, ...]
    to_send: tuple[Recipient, ...]
    held: bool
    from_domain: str

    @classmethod
    def of(cls, sub: Submission, suppressed_addresses: set[str], at: datetime) -> Fate:
        recipients = tuple(Recipient(id=new_id(), address=a) for a in sub.recipients)
        suppressed = tuple(r for r in recipients if r.address.lower() in suppressed_addresses)
        kept = tuple(r for r in recipients if r.address.lower() not in suppressed_addresses)
        to_send = () if sub.sandbox else kept
        return cls(
            at=at,
            recipients=recipients,
            suppressed=suppressed,
            sandboxed=kept if sub.sandbox else (),
            to_send=to_send,
            held=bool(to_send) and sub.send_at is not None and sub.send_at > at,
            from_domain=sub.headers.from_domain or sub.mail_from.rpartition("@")[2].lower(),
        )

    @property
    def stage(self) -> MessageStage:
        if self.held:
            return MessageStage.SCHEDULED
        if self.to_send:
            return MessageStage.ACCEPTED
        return MessageStage.SANDBOXED if self.sandboxed else MessageStage.SUPPRESSED


def message_document(
    sub: Submission, fate: Fate, message_id: str, pool: str, list_: str | None, size: int
) -> dict[str, Any]:
    """The ``messages`` document of an accepted submission."""
    doc: dict[str, Any] = {
        "_id": message_id,
        "tenant": sub.identity.tenant,
        "status": fate.stage,
        "door": sub.door,
        "client": sub.client,
        "credential": sub.identity.credential,
        "mail_from": sub.mail_from,
        "header_from": sub.headers.from_address,
        **({"from_name": sub.headers.from_name} if sub.headers.from_name else {}),
        "from_domain": fate.from_domain,
        "subject": sub.headers.subject,
        "message_id_header": sub.headers.message_id,
        "size": size,
        "pool": pool,
        "recipient_count": len(fate.recipients),
        "tags": list(sub.tags),
        "metadata": dict(sub.metadata),
        "created_at": fate.at,
    }
    if fate.held:
        doc["send_at"] = sub.send_at
    if list_:
        doc["unsubscribe_list"] = list_
    tid = trace_id()
    if tid is not None:
        # Kept so that the mail's trace can be found from the message, and continued by what
        # happens to it later without a broker message to carry the context (an asynchronous
        # bounce or complaint).
        doc["trace_id"] = tid
        doc["traceparent"] = traceparent()
    return doc


def recipient_documents(fate: Fate, message_id: str, tenant: str) -> list[dict[str, Any]]:
    """The ``recipients`` documents: queued, scheduled, or already final (suppressed or
    sandboxed, with the reply that says why)."""

    def state(r: Recipient) -> dict[str, Any]:
        if r in fate.suppressed:
            final = (RecipientStatus.SUPPRESSED, SUPPRESSED_REPLY)
        elif r in fate.sandboxed:
            final = (RecipientStatus.SANDBOXED, SANDBOX_REPLY)
        elif fate.held:
            return {"status": RecipientStatus.SCHEDULED.value}
        else:
            return {}
        return {"status": final[0].value, "reply": final[1].model_dump(), "finished_at": fate.at}

    return [
        {
            "_id": r.id,
            "message_id": message_id,
            "tenant": tenant,
            "address": r.address,
            "domain": r.domain,
            "status": RecipientStatus.QUEUED.value,
            "attempts": 0,
            "created_at": fate.at,
            "updated_at": fate.at,
        }
        | state(r)
        for r in fate.recipients
    ]


def acceptance_events(sub: Submission, fate: Fate, message_id: str) -> list[Event]:
    """The events of acceptance: ``accepted`` for every recipient, ``suppressed`` /
    ``sandboxed`` / ``scheduled`` for those it applies to, and what the door changed in the
    message (``sub.notices``) for every recipient."""
    door = {"door": sub.door, "client": sub.client, "credential": sub.identity.credential}

    def event(
        type_: EventType, r: Recipient, reply: Reply | None = None, detail: dict | None = None
    ) -> Event:
        return Event.of(
            type_,
            tenant=sub.identity.tenant,
            message_id=message_id,
            recipient_id=r.id,
            address=r.address,
            reply=reply,
            detail=door if detail is None else detail,
            at=fate.at,
            tags=sub.tags,
            metadata=sub.metadata,
        )

    events = (
        [event(EventType.ACCEPTED, r) for r in fate.recipients]
        + [event(EventType.SUPPRESSED, r, SUPPRESSED_REPLY) for r in fate.suppressed]
        + [event(EventType.SANDBOXED, r, SANDBOX_REPLY) for r in fate.sandboxed]
    )
    if fate.held:
        assert sub.send_at is not None
        scheduled = {"send_at": sub.send_at.isoformat()}
        events += [event(EventType.SCHEDULED, r, detail=scheduled) for r in fate.to_send]
    for type_, said in sub.notices:
        events += [event(type_, r, detail={**door, **said}) for r in fate.recipients]
    return events

"""Dead letters, a part of ``Broker``: the events of jobs RabbitMQ dead-lettered itself, and
what operators list, retry and drop.

RabbitMQ dead-letters a job itself when a quorum queue's delivery limit is reached (below), or
an operator's TTL or length policy says so: such a job reaches ``dead`` with ``x-death`` and no
``x-hato-reason``, and no ``consume()`` saw it die. The ``dead`` exchange also puts a copy of
every dead letter into ``dead.watch``; the bounce service consumes it and, for a job RabbitMQ
dead-lettered, publishes the ``dead_lettered`` event ``consume()`` would have (same id from the
queue and the body, so a copy the broker delivered twice is one event; reason "handed out N
times without an ack (delivery limit of <queue>)"). The job itself stays in ``dead`` like any
other: listed, retried or dropped by operators, its recipients ``failed`` meanwhile. A copy
``consume()`` dead-lettered (``x-hato-reason``) had its event already and is only acked. A copy
is never dead-lettered again (the job is in ``dead``); past the delivery limit it is dropped.
The per-IP queues dead-letter to the pool's queue, not to ``dead``: the dispatcher refuses a
job that came back past an IP queue's limit (``Permanent``), and ``consume()`` dead-letters it
with its event.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
)

from shared import logging as hlog
from shared import schemas
from shared.broker.topology import (
    ATTEMPT_HEADER,
    ERRORS_HEADER,
    FAILED_AT_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    SEAL_HEADER,
    SEALED,
    TRANSIENT_HEADER,
    Queue,
    retry_name,
)
from shared.errors import (
    CodecError,
)

log = hlog.get_logger(__name__)


def broker_death(headers: Mapping[str, Any], *, ignore: str = "") -> tuple[str, str] | None:
    """The queue and reason of the last dead-lettering RabbitMQ itself did (``x-death``,
    latest first) of a message, if any: a job past its queue's delivery limit, say; with
    ``ignore``, deaths in queues whose name starts with it are passed over."""

    def text(value: object) -> str:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")

    for death in headers.get("x-death") or []:
        if not isinstance(death, Mapping):
            return None
        queue = text(death.get("queue"))
        if not (ignore and queue.startswith(ignore)):
            return queue, text(death.get("reason"))
    return None


# Headers a retried dead letter leaves behind: it starts afresh in the queue it died in.
RETRY_DROPS = (
    ATTEMPT_HEADER,
    ERRORS_HEADER,
    TRANSIENT_HEADER,
    REASON_HEADER,
    QUEUE_HEADER,
    FAILED_AT_HEADER,
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    "x-delivery-count",
)


def dead_lettered_event(
    queue: str, job: object, body: bytes, reason: str, amqp_message_id: str | None
) -> schemas.Event | None:
    """The ``dead_lettered`` event of a job (a sign or delivery job, a result) that died in
    ``queue`` (its full name), None for anything else. Its id comes from the message, the
    queue and the body: the same death told twice is one event. A report job's event names
    no tenant (whose report it is was not read) but the report, kept in ``reports``."""
    if isinstance(job, schemas.ReportJob):
        return schemas.Event.of(
            schemas.EventType.DEAD_LETTERED,
            tenant="",
            step=(queue, job.report_id),
            detail={
                "queue": queue,
                "reason": reason[:1000],
                "report_id": job.report_id,
                "amqp_message_id": amqp_message_id or "",
            },
        )
    if not isinstance(job, schemas.SignJob | schemas.DeliveryJob | schemas.DeliveryResult):
        return None
    return schemas.Event.of(
        schemas.EventType.DEAD_LETTERED,
        tenant=job.tenant,
        message_id=job.message_id,
        step=(queue, hashlib.sha256(body).hexdigest()[:16]),
        detail={
            "queue": queue,
            "reason": reason[:1000],
            "recipients": ",".join(_recipient_ids(job)),
            "amqp_message_id": amqp_message_id or "",
        },
        tags=job.tags,
        metadata=job.metadata,
    )


def dead_lettered_events(
    queue: str, job: object, body: bytes, reason: str, amqp_message_id: str | None
) -> list[schemas.Event]:
    """The ``dead_lettered`` events of what died in ``queue``: one per message of a
    batch (each names its own recipients), else ``dead_lettered_event``'s one, if any."""
    if isinstance(job, schemas.BATCHES):
        return [
            e
            for j in job.jobs
            if (e := dead_lettered_event(queue, j, body, reason, amqp_message_id)) is not None
        ]
    event = dead_lettered_event(queue, job, body, reason, amqp_message_id)
    return [] if event is None else [event]


def _death_time(headers: Mapping[str, Any]) -> str:
    deaths = headers.get("x-death") or []
    at = deaths[0].get("time") if deaths and isinstance(deaths[0], Mapping) else None
    return at.isoformat() if isinstance(at, datetime) else str(at or "")


def _recipient_ids(job: object) -> list[str]:
    if isinstance(job, schemas.DeliveryResult):
        return [r.recipient_id for r in job.results]
    if isinstance(job, schemas.BATCHES):
        return [r.id for j in job.jobs for r in j.recipients]
    return [r.id for r in getattr(job, "recipients", ())]


def _dead_entry(
    message: AbstractIncomingMessage,
    headers: dict[str, Any],
    describe: Callable[[str, str], str],
) -> dict[str, Any]:
    """What an operator needs to know of a dead-lettered job (never its payload);
    ``describe`` words the reason of a job RabbitMQ itself dead-lettered."""

    def text(name: str) -> str:
        value = headers.get(name, "")
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    entry: dict[str, Any] = {
        # The body's hash: the jobs of one message (one per domain) share its message id.
        "id": hashlib.sha256(message.body).hexdigest()[:16],
        "queue": text(QUEUE_HEADER),
        "reason": text(REASON_HEADER),
        "failed_at": text(FAILED_AT_HEADER),
    }
    if REASON_HEADER not in headers and (death := broker_death(headers)):
        # Dead-lettered by RabbitMQ itself (past a quorum queue's x-delivery-limit).
        entry["queue"], entry["reason"] = death[0], describe(*death)
        entry["failed_at"] = _death_time(headers)
    try:
        job, payload = schemas.decode(message.body)
    except Exception:
        entry["kind"] = "undecodable"
        return entry
    entry["kind"] = getattr(job, "kind", type(job).__name__)
    entry["message_id"] = getattr(job, "message_id", None)
    entry["tenant"] = getattr(job, "tenant", None)
    if isinstance(job, schemas.BATCHES):  # several messages, of one tenant or more
        entry["messages"] = [
            {"message_id": j.message_id, "recipients": _recipient_ids(j)} for j in job.jobs
        ]
        entry["tenant"] = ",".join(sorted({j.tenant for j in job.jobs}))
    entry["recipients"] = _recipient_ids(job)
    entry["size"] = len(payload)
    if isinstance(job, schemas.ReportJob):
        entry["report_id"] = job.report_id  # the report itself is in `reports`
    return entry


def dead_messages(entry: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """The messages of a dead-letter entry (``dead_letters()``'s; a batch's several) with
    their recipient ids: whose recipients a retry of the job makes wait again."""
    return [
        (m["message_id"], m["recipients"])
        for m in entry.get("messages") or [entry]
        if m.get("message_id") and m.get("recipients")
    ]


def dead_reply(queue: str, reason: str) -> schemas.Reply:
    """The reply a recipient of a dead-lettered job ends ``failed`` with."""
    return schemas.Reply(
        code=554, enhanced="5.3.0", text=f"not sent: its job failed in {queue}: {reason[:300]}"
    )


class DeadRecipients(Protocol):
    """The recipients of dead jobs (``shared.messages.Messages``)."""

    async def revive_dead_lettered(self, message_id: str, recipient_ids: list[str]) -> int: ...

    async def fail_dead_lettered(
        self, message_id: str, recipient_ids: list[str], reply: schemas.Reply
    ) -> list[dict[str, Any]]: ...


class Revival:
    """What retrying a dead job does to its recipients: they wait again before the job is
    put back (a signer or dispatcher that took it first would find them failed, leave them,
    and they would wait for ever), and end failed as before if it could not be put back."""

    def __init__(self, recipients: DeadRecipients) -> None:
        self.recipients = recipients

    async def revive(self, entry: Mapping[str, Any]) -> None:
        for message_id, ids in dead_messages(entry):
            await self.recipients.revive_dead_lettered(message_id, ids)

    async def fail_again(self, entry: Mapping[str, Any]) -> None:
        reply = dead_reply(str(entry.get("queue", "")), str(entry.get("reason", "")))
        for message_id, ids in dead_messages(entry):
            await self.recipients.fail_dead_lettered(message_id, ids, reply)


# Fields of a JSON message (the AMQP door's submissions) that hold a credential: a dead letter
# keeps what identifies it (an API key's public prefix), never the secret itself.
SECRET_FIELDS = ("api_key", "password", "token", "secret")


def scrubbed(body: bytes) -> bytes:
    """``body`` with the credentials of a JSON object masked; any other body as it is."""
    if not body.startswith(b"{") or len(body) > 64 * 1024 * 1024:
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return body  # a job: a JSON line and its payload, no credentials
    if not isinstance(doc, dict) or not any(f in doc for f in SECRET_FIELDS):
        return body
    for name in SECRET_FIELDS:
        if isinstance(doc.get(name), str):
            public, _, _ = doc[name].rpartition("_")  # hato_<prefix>_<secret> → hato_<prefix>
            doc[name] = f"{public}_<removed>" if public else "<removed>"
    return json.dumps(doc, separators=(",", ":")).encode()


class DeadLetters:
    """The dead letters, for the bounce service (the ``dead_lettered`` event of a job RabbitMQ
    dead-lettered itself) and for operators (list, retry, drop; sweep the retry queues). A
    mixin of ``Broker``."""

    def death_reason(self, queue: str, reason: str) -> str:
        """Why RabbitMQ itself dead-lettered a job from ``queue`` (``x-death``), in words."""
        if reason == "delivery_limit":
            limit = self.settings.delivery_limit
            handed = f"handed out {limit + 1} times" if limit else "handed out too often"
            return f"{handed} without an ack (delivery limit of {queue})"
        return f"dead-lettered by RabbitMQ from {queue}: {reason}"

    def broker_dead_letter(
        self, body: bytes, headers: Mapping[str, Any], amqp_message_id: str | None = None
    ) -> list[schemas.Event]:
        """The ``dead_lettered`` events of a copy from ``dead.watch`` that RabbitMQ itself
        dead-lettered, as ``consume()`` makes them for its own (same ids; one per message of a
        batch); none for a copy
        ``consume()`` dead-lettered (it published its event), one without ``x-death`` (put
        into ``dead`` by hand), one that is no job of a Hato service (a submission: it has no
        state yet), or one not sealed by a Hato service (it could fail another tenant's
        mail)."""
        if REASON_HEADER in headers:
            return []
        # This copy's own retries (consume()'s, through retry.<ms>) are deaths too.
        death = broker_death(headers, ignore=self.full("retry."))
        if death is None:
            return []
        try:
            job, _ = schemas.decode(body)
        except CodecError:
            return []
        if (
            self.seal_key is not None
            and isinstance(job, SEALED)
            and not self._sealed(body, headers.get(SEAL_HEADER))
        ):
            log.warning("a dead letter not sealed by a Hato service: no event", queue=death[0])
            return []
        return dead_lettered_events(death[0], job, body, self.death_reason(*death), amqp_message_id)

    async def dead_letters(
        self,
        *,
        limit: int = 100,
        act: Callable[[AbstractIncomingMessage], Awaitable[str | None]] | None = None,
        revival: Revival | None = None,
    ) -> list[dict[str, Any]]:
        """The jobs in the dead-letter queue (oldest first, up to ``limit``), each as a dict;
        with ``act``, called for each: "drop" acks it away, "retry" puts it back into the
        queue it died in (attempts counted afresh; ``revival`` makes its recipients wait
        again first), None leaves it. Works on a channel of its own: what is left is returned
        to the queue when it closes."""
        assert self._connection is not None
        channel = await self._connection.channel()
        listed: list[dict[str, Any]] = []
        try:
            dead = await channel.get_queue(self.full(Queue.DEAD))
            for _ in range(limit):
                message = await dead.get(fail=False, no_ack=False)
                if message is None:
                    break
                headers = dict(message.headers or {})
                entry = _dead_entry(message, headers, self.death_reason)
                decision = await act(message) if act is not None else None
                if decision == "retry":
                    # A fresh start: its deaths go too (the dispatcher refuses a job whose
                    # last death is an IP queue's delivery limit, and the job retried must
                    # not look dead-lettered when it dies again).
                    for name in RETRY_DROPS:
                        headers.pop(name, None)
                    if revival is not None:
                        await revival.revive(entry)
                    try:
                        await self._publish(
                            self._channel().default_exchange,
                            entry["queue"],
                            message.body,
                            headers=headers,
                            message_id=message.message_id,
                        )
                    except BaseException:
                        if revival is not None:  # the job stays dead: so do its recipients
                            with contextlib.suppress(Exception):
                                await revival.fail_again(entry)
                        raise
                if decision in ("retry", "drop"):
                    await message.ack()
                entry["done"] = decision or ""
                listed.append(entry)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return listed

    async def sweep(
        self,
        delays: Iterable[float],
        match: Callable[[schemas.BrokerMessage], bool],
        *,
        limit: int = 10_000,
    ) -> int:
        """Send the jobs waiting in the ``retry.<ms>`` queues of ``delays`` that ``match``
        back to their queue now (an operator's retry, a resumed suspension); returns how
        many. The others stay where they were, with their expiry (they are returned unacked
        when the sweep's channel closes)."""
        assert self._connection is not None
        moved = 0
        for delay in sorted(set(delays)):
            channel = await self._connection.channel()
            try:
                try:
                    queue = await channel.declare_queue(self.full(retry_name(delay)), passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    continue
                for _ in range(limit):
                    message = await queue.get(fail=False, no_ack=False)
                    if message is None:
                        break
                    try:
                        job, _ = schemas.decode(message.body)
                    except CodecError:
                        continue
                    if not match(job) or not message.routing_key:
                        continue
                    await self._publish(
                        self._channel().default_exchange,
                        message.routing_key,
                        message.body,
                        headers=dict(message.headers or {}),
                        message_id=message.message_id,
                    )
                    await message.ack()
                    moved += 1
            finally:
                with contextlib.suppress(Exception):
                    await channel.close()
        return moved

"""``consume()``, a part of ``Broker``.

``consume()`` owns the ack policy: a handler returns (ack), raises ``RetryLater``
(republished to a TTL retry queue, attempt + 1), ``Permanent`` or fails to decode
(dead-lettered with the reason and, when the message names one, a
``dead_lettered`` event), or hits a transient error (retried after a back-off);
any other exception is retried ``max_redeliveries`` times, then dead-lettered.
Two copies of one job (at-least-once makes them) never run at once in a process.
A delivery batch (``schemas.DeliveryBatch``) is handled job by job, all at once, each under
that policy as if it came alone (a job retried or dead-lettered is published as itself); the
batch is acked once all are settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
)

from shared import logging as hlog
from shared import schemas
from shared.broker.dead_letters import dead_lettered_events, scrubbed
from shared.broker.topology import (
    ATTEMPT_HEADER,
    ERRORS_HEADER,
    FAILED_AT_HEADER,
    FIRST_ATTEMPT_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    SEAL_HEADER,
    SEALED,
    TRANSIENT_HEADER,
    Exchange,
    Queue,
)
from shared.errors import (
    TRANSIENT_ERRORS,
    CodecError,
    Permanent,
    RetryLater,
    Unavailable,
)
from shared.ids import new_id
from shared.telemetry import CONSUMED, HANDLE_SECONDS, consumer_span, traceparent

log = hlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a handler gets: the decoded message, its payload, where it stands, and the AMQP
    properties a publisher may have set (message id, reply-to, correlation id)."""

    message: Any  # a schemas.BrokerMessage, or what the queue's own decoder makes
    payload: bytes
    attempt: int
    queue: str
    headers: Mapping[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    # The job came back: the broker redelivered it (its consumer died or lost its channel),
    # or consume() retried it. What its first run recorded may be in the database already,
    # published or not: a handler publishes again what it finds (the job is the outbox).
    redelivered: bool = False


@dataclass(eq=False, slots=True)
class _Unit:
    """What ``consume()`` settles: a whole message, or one job of a batch (``item``), whose
    outcome the batch's ack or nack waits for. ``body`` and ``headers`` are its own: a batch's
    job is retried or dead-lettered as itself, sealed anew."""

    message: AbstractIncomingMessage
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    item: bool = False
    outcome: str | None = None  # an item's: "ack" or "nack"; None while it is not settled

    async def ack(self) -> None:
        if self.item:
            self.outcome = "ack"
        else:
            await Consuming._ack(self.message)

    async def nack(self) -> None:
        if self.item:
            self.outcome = "nack"
        else:
            await Consuming._nack(self.message)


Decoder = Callable[[bytes], tuple[Any, bytes]]


def undecoded(body: bytes) -> tuple[bytes, bytes]:
    """A decoder that leaves the body as it is (the handler decodes what it needs)."""
    return body, b""


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass(eq=False)
class _Subscription:
    """A consumer the process keeps: started by ``consume()``/``on_change()`` and again on
    every new connection."""

    queue: str  # without the prefix
    start: Callable[[AbstractChannel], Awaitable[tuple[AbstractQueue, str]]]
    active: tuple[AbstractQueue, str] | None = None
    generation: int = -1  # the connection ``active`` belongs to


def _channel_lost(message: AbstractIncomingMessage) -> bool:
    """True when the channel a message came on is gone: the broker redelivers the message,
    so settling it (a retry or dead-letter copy) would only make a second one."""
    try:
        return message.channel.is_closed
    except aio_pika.exceptions.ChannelInvalidStateError:
        return True


class Consuming:
    """``consume()`` and what settles each message: the ack policy (the package's docstring).
    A mixin of ``Broker``: it works with the connection, channels and publishing the broker
    keeps."""

    async def consume(
        self, queue: str, handler: Handler, *, decode: Decoder = schemas.decode
    ) -> None:
        """Start handling ``queue`` with ``handler``, under the policy in the module docstring,
        on this connection and every later one. ``decode`` turns the body into the handler's
        message (raising CodecError if it can't)."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._run(self._handle(queue, handler, message, decode))

        async def start(channel: AbstractChannel) -> tuple[AbstractQueue, str]:
            q = await channel.get_queue(self.full(queue), ensure=True)
            return q, await q.consume(on_message)

        await self._subscribe(_Subscription(queue, start))

    async def on_change(self, handler: Callable[[schemas.Changed], Awaitable[None]]) -> None:
        """Call ``handler`` with every configuration change announced while this process runs,
        through an exclusive queue of its own (gone with the connection; a new one on the next).
        A handler that fails is logged and the change acked: the services' periodic refreshes
        catch up anyway, also on what was announced while the connection was down."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                change, _ = schemas.decode(message.body)
                if isinstance(change, schemas.Changed):
                    await handler(change)
            except Exception:
                log.exception("configuration change not applied")
            await self._ack(message)

        async def start(channel: AbstractChannel) -> tuple[AbstractQueue, str]:
            # Classic even where the durable queues are quorum (which refuse exclusive and
            # auto-delete queues), and said so: a vhost's default queue type must not apply.
            queue = await channel.declare_queue(
                self.full(f"control.{self.name}.{new_id()[-12:]}"),
                exclusive=True,
                auto_delete=True,
                arguments={"x-queue-type": "classic"},
            )
            await queue.bind(self.full(Exchange.CONTROL))
            return queue, await queue.consume(on_message)

        await self._subscribe(_Subscription(f"control.{self.name}", start))

    async def _subscribe(self, sub: _Subscription) -> None:
        """Consume now, or, while the connection is down (lost since ``connect()``, say while
        a service starts), as soon as it is back: the recovery starts every subscription."""
        if self.is_connected:
            await self._start_unless_lost(sub)
        self._subscriptions.append(sub)
        if self.is_connected and sub.generation != self._generation:
            # A recovery ran while this one was starting, and did not know of it yet.
            await self._start_unless_lost(sub)

    async def _start_unless_lost(self, sub: _Subscription) -> None:
        """Start ``sub``; a failure is the caller's only while the connection holds (a
        refusal), not when the connection was lost: the recovery starts it again."""
        try:
            await self._start(sub)
        except Exception:
            if self.is_connected:
                raise

    async def _start(self, sub: _Subscription) -> None:
        channel, generation = self._consume_channel, self._generation
        if channel is None or channel.is_closed:
            raise Unavailable("broker connection is down")
        sub.active, sub.generation = await sub.start(channel), generation

    async def _cancel(self, sub: _Subscription) -> None:
        active, sub.active = sub.active, None
        if active is not None and sub.generation == self._generation:
            queue, tag = active
            with contextlib.suppress(Exception):
                await queue.cancel(tag)

    async def _run(self, handling: Awaitable[None]) -> None:
        # The handler runs in a task of its own, shielded: losing the channel cancels the
        # consumer's task, and a handler cut off between sending a mail and recording it would
        # send it again when the job is redelivered. Reconnecting waits for these tasks.
        task = asyncio.ensure_future(handling)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        await asyncio.shield(task)

    async def _handle(
        self, queue: str, handler: Handler, message: AbstractIncomingMessage, decode: Decoder
    ) -> None:
        headers = dict(message.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 1) or 1)
        hlog.clear()
        hlog.bind(queue=queue, amqp_message_id=message.message_id, attempt=attempt)
        first = headers.get(FIRST_ATTEMPT_HEADER)
        if isinstance(first, bytes):
            first = first.decode(errors="replace")
        with (
            consumer_span(
                f"{self.full(queue)} process",
                headers,
                first,
                {"messaging.destination.name": self.full(queue)},
            ) as span,
            HANDLE_SECONDS.labels(queue).time(),
        ):
            decoded: schemas.BrokerMessage | None = None
            try:
                decoded, payload = decode(message.body)
                if (
                    self.seal_key is not None
                    and isinstance(decoded, SEALED)
                    and not self._sealed(message.body, headers.get(SEAL_HEADER))
                ):
                    raise Permanent("not sealed by a Hato service (x-hato-seal): refused")
                if hasattr(decoded, "message_id"):
                    hlog.bind(message_id=decoded.message_id, tenant=decoded.tenant)
                    if span.is_recording() and decoded.message_id:
                        span.set_attributes(
                            {
                                "messaging.system": "rabbitmq",
                                "hato.message_id": decoded.message_id,
                                "hato.tenant": decoded.tenant,
                                "hato.attempt": attempt,
                            }
                        )
                if isinstance(decoded, schemas.DeliveryBatch):
                    await self._handle_batch(
                        queue, handler, message, headers, attempt, decoded.split(payload)
                    )
                    return
                async with self._alone(queue, decoded, message.body, payload):
                    await handler(_delivery(queue, message, headers, attempt, decoded, payload))
            except Exception as exc:
                whole = _Unit(
                    message, message.body, dict(message.headers or {}), message.message_id
                )
                await self._settle_failure(queue, whole, headers, attempt, decoded, exc)
            else:
                await self._ack(message)
                CONSUMED.labels(queue, "ack").inc()

    async def _handle_batch(
        self,
        queue: str,
        handler: Handler,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        attempt: int,
        items: list[tuple[Any, bytes]],
    ) -> None:
        """Each job of a batch handled at once, as if it came alone, and settled on its own
        (a job to retry or dead-letter is published as itself); the batch is acked once every
        job is settled, and handed out again (nacked) when one could not be. A job the batch's
        first run already did is found done the second time (the handlers' pending checks)."""

        async def one(job: Any, payload: bytes) -> _Unit:
            body = schemas.encode(job, payload)
            own = {k: v for k, v in headers.items() if k != SEAL_HEADER}
            if self.seal_key is not None:
                own[SEAL_HEADER] = self._seal(body)
            unit = _Unit(message, body, dict(own), job.message_id, item=True)
            hlog.bind(message_id=job.message_id, tenant=job.tenant)
            try:
                async with self._alone(queue, job, body, payload):
                    delivery = _delivery(queue, message, own, attempt, job, payload)
                    await handler(replace(delivery, message_id=job.message_id))
            except Exception as exc:
                await self._settle_failure(queue, unit, own, attempt, job, exc)
            else:
                unit.outcome = "ack"
                CONSUMED.labels(queue, "ack").inc()
            return unit

        units = await asyncio.gather(*(one(job, payload) for job, payload in items))
        if all(u.outcome == "ack" for u in units):
            await self._ack(message)
        elif not _channel_lost(message):
            log.warning("a job of a batch could not be settled: the batch is handed out again")
            await self._nack(message)

    async def _settle_failure(
        self,
        queue: str,
        unit: _Unit,
        headers: dict[str, Any],
        attempt: int,
        decoded: schemas.BrokerMessage | None,
        exc: Exception,
    ) -> None:
        """The ack policy for a message whose handling raised ``exc`` (called in its
        ``except``): dead-lettered, retried later as the next attempt, held as the same one,
        or backed off."""
        match exc:
            case CodecError():
                await self._settle_dead(queue, unit, decoded, f"undecodable: {exc}")
            case Permanent():
                await self._settle_dead(queue, unit, decoded, exc.reason)
            case RetryLater() if not exc.counts:  # held: waits as the same attempt
                await self._settle_retry(queue, unit, headers, exc.delay, "held", exc.reason)
            case RetryLater() if attempt >= self.settings.max_attempts:  # nothing retries for ever
                reason = f"gave up after {attempt} attempts: {exc.reason}"
                await self._settle_dead(queue, unit, decoded, reason)
            case RetryLater():
                headers[ATTEMPT_HEADER] = attempt + 1
                await self._settle_retry(queue, unit, headers, exc.delay, "retry", exc.reason)
            case _ if isinstance(exc, TRANSIENT_ERRORS):
                # The store or broker is away: back off (doubling up to 5 minutes), and give
                # the job up after max_transient_retries — a final state, not a loop.
                tries = int(headers.get(TRANSIENT_HEADER, 0) or 0) + 1
                if tries > self.settings.max_transient_retries:
                    reason = f"gave up after {tries - 1} retries: {exc!r}"
                    await self._settle_dead(queue, unit, decoded, reason)
                else:
                    headers[TRANSIENT_HEADER] = tries
                    delay = min(self.settings.error_backoff * 2 ** (tries - 1), 300.0)
                    await self._settle_retry(queue, unit, headers, delay, "transient", repr(exc))
            case _:
                errors = int(headers.get(ERRORS_HEADER, 0) or 0) + 1
                log.exception("handler failed", errors=errors)
                if errors > self.settings.max_redeliveries:
                    reason = f"handler failed {errors} times: {exc!r}"
                    await self._settle_dead(queue, unit, decoded, reason)
                else:
                    headers[ERRORS_HEADER] = errors
                    delay = self.settings.error_backoff * errors
                    await self._settle_retry(queue, unit, headers, delay, "error", repr(exc))

    def _seal(self, body: bytes) -> str:
        assert self.seal_key is not None
        return hmac.new(self.seal_key, body, hashlib.sha256).hexdigest()

    def _sealed(self, body: bytes, seal: object) -> bool:
        if isinstance(seal, bytes):
            seal = seal.decode("ascii", "replace")
        return isinstance(seal, str) and hmac.compare_digest(seal, self._seal(body))

    @contextlib.asynccontextmanager
    async def _alone(
        self, queue: str, decoded: object, body: bytes, payload: bytes
    ) -> AsyncIterator[None]:
        """Run a job only when no copy of it runs in this process. Copies come from
        at-least-once: a job redelivered after a lost connection while its first handler still
        runs, or published twice because the ack of what made it was lost (a sign job
        redelivered to the signer makes its delivery jobs again). Run together, both would
        find the recipient still waiting and send it twice; one after the other, the second
        finds what the first recorded. A copy is the same envelope (the payload can differ:
        a DKIM signature carries its time)."""
        if not isinstance(
            decoded,
            schemas.SignJob | schemas.SignBatch | schemas.DeliveryJob | schemas.DeliveryResult,
        ):
            yield
            return
        key = (queue, body[: len(body) - len(payload)])
        entry = self._twins.setdefault(key, (asyncio.Lock(), [0]))
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if not entry[1][0]:
                del self._twins[key]

    async def _settle_retry(
        self,
        queue: str,
        unit: _Unit,
        headers: dict[str, Any],
        delay: float,
        outcome: str,
        reason: str,
    ) -> None:
        log.info("retrying later", delay=delay, outcome=outcome, reason=reason)
        first = traceparent()  # this attempt's span, unless an earlier one is named already
        if first and FIRST_ATTEMPT_HEADER not in headers:
            headers[FIRST_ATTEMPT_HEADER] = first
        if _channel_lost(unit.message):
            log.info("channel lost: the broker redelivers the message instead")
            CONSUMED.labels(queue, "redelivered").inc()
            return
        try:
            exchange = await self._retry_exchange(delay)
            await self._publish(
                exchange,
                self.full(queue),
                unit.body,
                headers=headers,
                message_id=unit.message_id,
            )
        except Exception as exc:  # the broker itself is failing: let it redeliver
            log.warning("could not schedule retry; requeueing", error=repr(exc))
            await unit.nack()
            CONSUMED.labels(queue, "requeued").inc()
            return
        await unit.ack()
        CONSUMED.labels(queue, outcome).inc()

    async def _settle_dead(
        self,
        queue: str,
        unit: _Unit,
        decoded: schemas.BrokerMessage | None,
        reason: str,
    ) -> None:
        if _channel_lost(unit.message):
            log.error("dead-lettering", reason=reason)
            log.info("channel lost: the broker redelivers the message instead")
            CONSUMED.labels(queue, "redelivered").inc()
            return
        if queue == Queue.DEAD_WATCH:
            # A copy of a job that is in `dead` already: a second one there would list it twice.
            log.error("dropping a dead letter's copy; the job stays in dead", reason=reason)
            await unit.ack()
            CONSUMED.labels(queue, "dropped").inc()
            return
        log.error("dead-lettering", reason=reason)
        headers = dict(unit.headers)
        headers.update(
            {
                REASON_HEADER: reason[:1000],
                QUEUE_HEADER: self.full(queue),
                FAILED_AT_HEADER: datetime.now(UTC).isoformat(),
            }
        )
        try:
            await self._publish(
                self._exchange(Exchange.DEAD),
                self.full(queue),
                scrubbed(unit.body),
                headers=headers,
                message_id=unit.message_id,
            )
            # The bounce service records them and ends the job's recipients in `failed`
            # (the bounce service's EventRecorder): no mail stays in limbo.
            await self.emit(
                dead_lettered_events(self.full(queue), decoded, unit.body, reason, unit.message_id)
            )
        except Exception as exc:
            log.warning("could not dead-letter; requeueing", error=repr(exc))
            await unit.nack()
            CONSUMED.labels(queue, "requeued").inc()
            return
        await unit.ack()
        CONSUMED.labels(queue, "dead").inc()

    @staticmethod
    async def _ack(message: AbstractIncomingMessage) -> None:
        # A lost channel means the broker redelivers; nothing more to do here.
        with contextlib.suppress(Exception):
            await message.ack()

    @staticmethod
    async def _nack(message: AbstractIncomingMessage) -> None:
        with contextlib.suppress(Exception):
            await message.nack(requeue=True)

    async def drain(self, grace: float) -> None:
        """Stop taking messages, then give in-flight handlers ``grace`` seconds to finish.
        Whatever is still unacked afterwards is redelivered by the broker."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for sub in subscriptions:
            await self._cancel(sub)
        if self._in_flight:
            log.info("draining", in_flight=len(self._in_flight))
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()


def _delivery(
    queue: str,
    message: AbstractIncomingMessage,
    headers: dict[str, Any],
    attempt: int,
    decoded: schemas.BrokerMessage,
    payload: bytes,
) -> Delivery:
    """What a handler gets for ``message``: redelivered when anything says it ran before."""
    return Delivery(
        decoded,
        payload,
        attempt,
        queue,
        headers,
        message_id=message.message_id,
        reply_to=message.reply_to,
        correlation_id=message.correlation_id,
        redelivered=bool(
            message.redelivered
            or attempt > 1
            or headers.get(TRANSIENT_HEADER)
            or headers.get(ERRORS_HEADER)
        ),
    )

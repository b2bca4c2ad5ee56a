"""The broker, in one place: names, topology, publishing with confirms, and ``consume()``.

Topology (every name carries the ``HATO_AMQP_PREFIX``, default ``hato``)::

    submit   (fanout)  ------------->  submit           platform teams → ingest (JSON, README)
    work     (direct)  --sign-------->  sign             ingest → signer
                       --results----->  results          dispatcher → bounce
    deliver  (direct)  --<pool>------>  deliver.<pool>   signer → dispatcher
    events   (topic)   --<tenant>.<type>-> any queue a platform team binds;
                       --#.dead_lettered-> events.store  (consume() has no store: bounce
                                                         writes these for it)
                       --<tenant>.<type>-> webhooks      bound by the bounce service for what
                                                         tenants' webhooks subscribed to
    retry.<ms> (fanout) ->  retry.<ms>  TTL <ms>, then dead-lettered through the default
                                        exchange back to the queue named by the routing key
    dead     (fanout)  ------------->  dead             what no consumer could process
    control  (fanout)  ------------->  control.<service>.<id>  configuration changed: one
                                                         exclusive queue per running process

``consume()`` owns the ack policy: a handler returns (ack), raises ``RetryLater``
(republished to a TTL retry queue, attempt + 1), ``Permanent`` or fails to decode
(dead-lettered with the reason and, when the message names one, a
``dead_lettered`` event), or hits a transient error (retried after a back-off);
any other exception is retried ``max_redeliveries`` times, then dead-lettered.

A delivery job for a pool whose queue does not exist yet (a pool created after the signer
started) declares that queue and is published again: its mail waits there durably for a
dispatcher of the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ExchangeType,
)
from opentelemetry.trace import SpanKind

from shared import logging as hlog
from shared import schemas
from shared.errors import (
    TRANSIENT_ERRORS,
    CodecError,
    Permanent,
    RetryLater,
    Unavailable,
)
from shared.ids import new_id
from shared.settings import BrokerSettings
from shared.telemetry import (
    CONSUMED,
    HANDLE_SECONDS,
    PUBLISH_FAILURES,
    PUBLISHED,
    extract_context,
    inject_headers,
    tracer,
)

log = hlog.get_logger(__name__)

ATTEMPT_HEADER = "x-hato-attempt"
ERRORS_HEADER = "x-hato-errors"
REASON_HEADER = "x-hato-reason"
QUEUE_HEADER = "x-hato-queue"
FAILED_AT_HEADER = "x-hato-failed-at"


class Exchange(StrEnum):
    SUBMIT = "submit"
    WORK = "work"
    DELIVER = "deliver"
    EVENTS = "events"
    DEAD = "dead"
    CONTROL = "control"


class Queue(StrEnum):
    SUBMIT = "submit"
    SIGN = "sign"
    RESULTS = "results"
    EVENTS_STORE = "events.store"
    WEBHOOKS = "webhooks"
    DEAD = "dead"


def deliver_queue(pool: str) -> str:
    """The queue of an IP pool's delivery jobs (before the prefix)."""
    return f"deliver.{pool}"


def ip_queue(pool: str, ip: str) -> str:
    """The queue of the jobs a pool's member IP was chosen for (before the prefix)."""
    return f"deliver.{pool}.ip.{ip}"


def route(message: schemas.BrokerMessage) -> tuple[Exchange, str]:
    """Where a message is published: the exchange and the routing key."""
    match message:
        case schemas.SignJob():
            return Exchange.WORK, Queue.SIGN.value
        case schemas.DeliveryJob():
            return Exchange.DELIVER, message.pool
        case schemas.DeliveryResult():
            return Exchange.WORK, Queue.RESULTS.value
        case schemas.Event():
            return Exchange.EVENTS, f"{message.tenant}.{message.type.value}"
        case schemas.Changed():
            return Exchange.CONTROL, ""
    raise TypeError(f"no route for {type(message).__name__}")


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


Decoder = Callable[[bytes], tuple[Any, bytes]]


Handler = Callable[[Delivery], Awaitable[None]]

NO_ROUTE = 312  # AMQP 0-9-1 reply code of a mandatory message no queue was bound for
DEAD_LETTERED = f"#.{schemas.EventType.DEAD_LETTERED.value}"


class NoRoute(Unavailable):
    """Raised when the broker returned a mandatory message: no queue is bound for its
    routing key (a pool's delivery queue that was never declared, say)."""


class Broker:
    """A connection to RabbitMQ with the topology declared, a confirming publisher and consumers."""

    def __init__(self, settings: BrokerSettings, *, name: str, pools: Iterable[str] = ()) -> None:
        self.settings = settings
        self.name = name
        self.pools = tuple(pools)
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consume_channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._queues: dict[str, AbstractQueue] = {}
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._declare_lock = asyncio.Lock()

    def full(self, name: str) -> str:
        return f"{self.settings.prefix}.{name}"

    # -- lifecycle -----------------------------------------------------------------

    async def connect(self, *, topology: bool = True) -> None:
        """Connect (raising Unavailable when the server cannot be reached) and declare the
        exchanges and, with ``topology``, the queues (the admin command declares no queues:
        their arguments are the services' settings)."""
        try:
            self._connection = await aio_pika.connect_robust(
                self.settings.url,
                timeout=self.settings.connect_timeout,
                client_properties={"connection_name": f"hato-{self.name}"},
            )
            self._publish_channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._consume_channel = await self._connection.channel()
            await self._consume_channel.set_qos(prefetch_count=self.settings.prefetch)
            await (self.declare() if topology else self.declare_exchanges())
        except TRANSIENT_ERRORS as exc:
            await self.close()
            raise Unavailable(f"broker unreachable: {exc!r}") from exc

    async def declare_exchanges(self) -> None:
        ch = self._publish_channel
        assert ch is not None
        for ex, kind in (
            (Exchange.SUBMIT, ExchangeType.FANOUT),
            (Exchange.WORK, ExchangeType.DIRECT),
            (Exchange.DELIVER, ExchangeType.DIRECT),
            (Exchange.EVENTS, ExchangeType.TOPIC),
            (Exchange.DEAD, ExchangeType.FANOUT),
            (Exchange.CONTROL, ExchangeType.FANOUT),
        ):
            self._exchanges[ex] = await ch.declare_exchange(self.full(ex), kind, durable=True)

    async def declare(self) -> None:
        """Declare every queue (the exchanges first); the same call from every service."""
        await self.declare_exchanges()
        await self._declare_queue(Queue.DEAD, Exchange.DEAD, "", dead_letter=False)
        await self._declare_queue(Queue.SUBMIT, Exchange.SUBMIT, "")
        await self._declare_queue(Queue.SIGN, Exchange.WORK, Queue.SIGN)
        await self._declare_queue(Queue.RESULTS, Exchange.WORK, Queue.RESULTS)
        # Services write their own events; the store queue takes only what consume()
        # publishes without a store, and the webhook queue what bounce binds for tenants.
        # Both were bound to every event before: that binding goes.
        store = await self._declare_queue(Queue.EVENTS_STORE, Exchange.EVENTS, DEAD_LETTERED)
        webhooks = await self._declare_queue(Queue.WEBHOOKS, Exchange.EVENTS, None)
        for queue in (store, webhooks):
            await queue.unbind(self._exchanges[Exchange.EVENTS], routing_key="#")
        for pool in self.pools:
            await self._declare_queue(deliver_queue(pool), Exchange.DELIVER, pool)

    async def _declare_queue(
        self, name: str, exchange: Exchange, key: str | None, *, dead_letter: bool = True
    ) -> AbstractQueue:
        assert self._publish_channel is not None
        args: dict[str, Any] = {"x-queue-type": self.settings.queue_type, **self._expires()}
        if dead_letter:
            args["x-dead-letter-exchange"] = self.full(Exchange.DEAD)
        queue = await self._publish_channel.declare_queue(
            self.full(name), durable=True, arguments=args
        )
        if key is not None:
            await queue.bind(self._exchanges[exchange], routing_key=key)
        self._queues[name] = queue
        return queue

    async def bind_events(self, queue: Queue, keys: Iterable[str], *, bound: bool = True) -> None:
        """Bind ``queue`` to the events exchange with each routing key (or unbind them)."""
        q = self._queues[queue]
        exchange = self._exchanges[Exchange.EVENTS]
        for key in keys:
            await (q.bind(exchange, routing_key=key) if bound else q.unbind(exchange, key))

    def _expires(self) -> dict[str, int]:
        return {"x-expires": self.settings.queue_expires} if self.settings.queue_expires else {}

    async def _retry_exchange(self, delay: float) -> AbstractExchange:
        ms = max(100, round(delay * 10) * 100)
        name = self.full(f"retry.{ms}")
        if name in self._exchanges:
            return self._exchanges[name]
        async with self._declare_lock:
            if name not in self._exchanges:
                assert self._publish_channel is not None
                exchange = await self._publish_channel.declare_exchange(
                    name, ExchangeType.FANOUT, durable=True
                )
                queue = await self._publish_channel.declare_queue(
                    name,
                    durable=True,
                    arguments={
                        "x-queue-type": self.settings.queue_type,
                        "x-message-ttl": ms,
                        # Expired messages go back through the default exchange to the
                        # queue their routing key names.
                        "x-dead-letter-exchange": "",
                        **self._expires(),
                    },
                )
                await queue.bind(exchange)
                self._exchanges[name] = exchange
        return self._exchanges[name]

    async def declare_pool(self, pool: str) -> str:
        """The queue of a pool's delivery jobs, declared and bound."""
        await self._declare_queue(deliver_queue(pool), Exchange.DELIVER, pool)
        return deliver_queue(pool)

    async def declare_ip_queue(self, pool: str, ip: str, *, handoff: float) -> str:
        """The queue of ``ip``'s jobs in ``pool``. A job waiting there longer than
        ``handoff`` seconds (its dispatcher is gone) goes back to the pool's queue."""
        assert self._publish_channel is not None
        name = ip_queue(pool, ip)
        queue = await self._publish_channel.declare_queue(
            self.full(name),
            durable=True,
            arguments={
                "x-queue-type": self.settings.queue_type,
                "x-message-ttl": int(handoff * 1000),
                "x-dead-letter-exchange": self.full(Exchange.DELIVER),
                "x-dead-letter-routing-key": pool,
                **self._expires(),
            },
        )
        self._queues[name] = queue
        return name

    async def stop_consuming(self, queue: str) -> None:
        """Stop taking messages from ``queue`` (a pool this instance no longer serves)."""
        full = self.full(queue)
        for q, tag in [c for c in self._consumers if c[0].name == full]:
            with contextlib.suppress(Exception):
                await q.cancel(tag)
            self._consumers.remove((q, tag))

    def consuming(self) -> set[str]:
        """The queues (without the prefix) this process consumes."""
        cut = len(self.settings.prefix) + 1
        return {q.name[cut:] for q, _ in self._consumers}

    async def depth(self, queue: str) -> int | None:
        """Messages ready in ``queue``; None when it does not exist."""
        assert self._connection is not None
        # A passive declare of a missing queue closes its channel: use a throwaway one.
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(self.full(queue), passive=True)
            return declared.declaration_result.message_count
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def forward(
        self, queue: str, body: bytes, headers: Mapping[str, Any], message_id: str | None
    ) -> None:
        """Put a message as it is into another queue (confirmed)."""
        assert self._publish_channel is not None
        await self._publish(
            self._publish_channel.default_exchange,
            self.full(queue),
            body,
            headers=headers,
            message_id=message_id,
        )

    @property
    def is_connected(self) -> bool:
        return (
            self._connection is not None
            and not self._connection.is_closed
            and self._publish_channel is not None
            and not self._publish_channel.is_closed
        )

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = None

    # -- publishing ----------------------------------------------------------------

    async def publish(
        self,
        message: schemas.BrokerMessage,
        payload: bytes = b"",
        *,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        """Publish persistently and wait for the broker's confirm; raises Unavailable otherwise."""
        exchange, key = route(message)
        body = schemas.encode(message, payload)
        # Nobody may listen to an event or a configuration change; that is no failure.
        mandatory = not isinstance(message, schemas.Changed | schemas.Event)
        for first in (True, False):
            try:
                await self._publish(
                    self._exchanges[exchange],
                    key,
                    body,
                    headers=inject_headers(dict(headers or {})),
                    message_id=getattr(message, "message_id", None),
                    mandatory=mandatory,
                )
                return
            except NoRoute:
                if not (first and isinstance(message, schemas.DeliveryJob)):
                    raise
                log.info("declaring the queue of a new pool", pool=message.pool)
                await self.declare_pool(message.pool)

    async def reply(self, to: str, body: bytes, *, correlation_id: str | None) -> None:
        """Answer a publisher on its reply-to queue (through the default exchange)."""
        assert self._publish_channel is not None
        await self._publish(
            self._publish_channel.default_exchange,
            to,
            body,
            headers={},
            message_id=None,
            correlation_id=correlation_id,
            content_type="application/json",
        )

    async def emit(self, events: Iterable[schemas.Event]) -> None:
        """Publish events concurrently (their confirms arrive together)."""
        await asyncio.gather(*(self.publish(e) for e in events))

    async def _publish(
        self,
        exchange: AbstractExchange,
        routing_key: str,
        body: bytes,
        *,
        headers: Mapping[str, Any],
        message_id: str | None,
        correlation_id: str | None = None,
        content_type: str = schemas.CONTENT_TYPE,
        mandatory: bool = True,
    ) -> None:
        if not self.is_connected:
            PUBLISH_FAILURES.labels(exchange.name).inc()
            raise Unavailable("broker connection is down")
        msg = aio_pika.Message(
            body,
            headers=dict(headers),
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
        )
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                await exchange.publish(msg, routing_key=routing_key, mandatory=mandatory)
        except aio_pika.exceptions.PublishError as exc:
            PUBLISH_FAILURES.labels(exchange.name).inc()
            if getattr(exc.frame, "reply_code", None) == NO_ROUTE:
                raise NoRoute(
                    f"no queue for {routing_key!r} on {exchange.name!r}: the message was returned"
                ) from exc
            raise Unavailable(f"publish to {exchange.name!r} not confirmed: {exc!r}") from exc
        except (
            *TRANSIENT_ERRORS,
            aio_pika.exceptions.DeliveryError,
            aio_pika.exceptions.ChannelInvalidStateError,
            RuntimeError,
        ) as exc:
            PUBLISH_FAILURES.labels(exchange.name).inc()
            raise Unavailable(f"publish to {exchange.name!r} not confirmed: {exc!r}") from exc
        PUBLISHED.labels(exchange.name).inc()

    # -- consuming -----------------------------------------------------------------

    async def consume(
        self, queue: str, handler: Handler, *, decode: Decoder = schemas.decode
    ) -> None:
        """Start handling ``queue`` with ``handler``, under the policy in the module docstring.
        ``decode`` turns the body into the handler's message (raising CodecError if it can't)."""
        assert self._consume_channel is not None
        q = await self._consume_channel.get_queue(self.full(queue), ensure=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                await self._handle(queue, handler, message, decode)
            finally:
                self._in_flight.discard(task)

        tag = await q.consume(on_message)
        self._consumers.append((q, tag))

    async def on_change(self, handler: Callable[[schemas.Changed], Awaitable[None]]) -> None:
        """Call ``handler`` with every configuration change announced while this process runs,
        through an exclusive queue of its own (gone with the connection). A handler that fails
        is logged and the change acked: the services' periodic refreshes catch up anyway."""
        assert self._consume_channel is not None
        queue = await self._consume_channel.declare_queue(
            self.full(f"control.{self.name}.{new_id()[-12:]}"), exclusive=True, auto_delete=True
        )
        await queue.bind(self.full(Exchange.CONTROL))

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                change, _ = schemas.decode(message.body)
                if isinstance(change, schemas.Changed):
                    await handler(change)
            except Exception:
                log.exception("configuration change not applied")
            await self._ack(message)

        tag = await queue.consume(on_message)
        self._consumers.append((queue, tag))

    async def _handle(
        self, queue: str, handler: Handler, message: AbstractIncomingMessage, decode: Decoder
    ) -> None:
        headers = dict(message.headers or {})
        attempt = int(headers.get(ATTEMPT_HEADER, 1) or 1)
        hlog.clear()
        hlog.bind(queue=queue, amqp_message_id=message.message_id, attempt=attempt)
        with (
            tracer.start_as_current_span(
                f"{self.full(queue)} process",
                context=extract_context(headers),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.destination.name": self.full(queue)},
            ),
            HANDLE_SECONDS.labels(queue).time(),
        ):
            decoded: schemas.BrokerMessage | None = None
            try:
                decoded, payload = decode(message.body)
                if hasattr(decoded, "message_id"):
                    hlog.bind(message_id=decoded.message_id)
                await handler(
                    Delivery(
                        decoded,
                        payload,
                        attempt,
                        queue,
                        headers,
                        message_id=message.message_id,
                        reply_to=message.reply_to,
                        correlation_id=message.correlation_id,
                    )
                )
            except CodecError as exc:
                await self._settle_dead(queue, message, decoded, f"undecodable: {exc}")
            except Permanent as exc:
                await self._settle_dead(queue, message, decoded, exc.reason)
            except RetryLater as exc:
                headers[ATTEMPT_HEADER] = attempt + 1
                await self._settle_retry(queue, message, headers, exc.delay, "retry", exc.reason)
            except TRANSIENT_ERRORS as exc:
                await self._settle_retry(
                    queue, message, headers, self.settings.error_backoff, "transient", repr(exc)
                )
            except Exception as exc:
                errors = int(headers.get(ERRORS_HEADER, 0) or 0) + 1
                log.exception("handler failed", errors=errors)
                if errors > self.settings.max_redeliveries:
                    await self._settle_dead(
                        queue, message, decoded, f"handler failed {errors} times: {exc!r}"
                    )
                else:
                    headers[ERRORS_HEADER] = errors
                    await self._settle_retry(
                        queue,
                        message,
                        headers,
                        self.settings.error_backoff * errors,
                        "error",
                        repr(exc),
                    )
            else:
                await self._ack(message)
                CONSUMED.labels(queue, "ack").inc()

    async def _settle_retry(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        delay: float,
        outcome: str,
        reason: str,
    ) -> None:
        log.info("retrying later", delay=delay, outcome=outcome, reason=reason)
        try:
            exchange = await self._retry_exchange(delay)
            await self._publish(
                exchange,
                self.full(queue),
                message.body,
                headers=headers,
                message_id=message.message_id,
            )
        except Exception as exc:  # the broker itself is failing: let it redeliver
            log.warning("could not schedule retry; requeueing", error=repr(exc))
            await self._nack(message)
            CONSUMED.labels(queue, "requeued").inc()
            return
        await self._ack(message)
        CONSUMED.labels(queue, outcome).inc()

    async def _settle_dead(
        self,
        queue: str,
        message: AbstractIncomingMessage,
        decoded: schemas.BrokerMessage | None,
        reason: str,
    ) -> None:
        log.error("dead-lettering", reason=reason)
        headers = dict(message.headers or {})
        headers.update(
            {
                REASON_HEADER: reason[:1000],
                QUEUE_HEADER: self.full(queue),
                FAILED_AT_HEADER: datetime.now(UTC).isoformat(),
            }
        )
        try:
            await self._publish(
                self._exchanges[Exchange.DEAD],
                self.full(queue),
                message.body,
                headers=headers,
                message_id=message.message_id,
            )
            if isinstance(decoded, schemas.SignJob | schemas.DeliveryJob | schemas.DeliveryResult):
                await self.publish(
                    schemas.Event(
                        id=new_id(),
                        type=schemas.EventType.DEAD_LETTERED,
                        message_id=decoded.message_id,
                        tenant=decoded.tenant,
                        detail={"queue": self.full(queue), "reason": reason[:1000]},
                    )
                )
        except Exception as exc:
            log.warning("could not dead-letter; requeueing", error=repr(exc))
            await self._nack(message)
            CONSUMED.labels(queue, "requeued").inc()
            return
        await self._ack(message)
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
        for q, tag in self._consumers:
            with contextlib.suppress(Exception):
                await q.cancel(tag)
        self._consumers.clear()
        if self._in_flight:
            log.info("draining", in_flight=len(self._in_flight))
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()

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
                       ------------->  dead.watch       a copy of each, for the bounce service:
                                                         the dead_lettered event of a job
                                                         RabbitMQ itself dead-lettered
    control  (fanout)  ------------->  control.<service>.<id>  configuration changed: one
                                                         exclusive queue per running process

``consume()`` owns the ack policy: a handler returns (ack), raises ``RetryLater``
(republished to a TTL retry queue, attempt + 1), ``Permanent`` or fails to decode
(dead-lettered with the reason and, when the message names one, a
``dead_lettered`` event), or hits a transient error (retried after a back-off);
any other exception is retried ``max_redeliveries`` times, then dead-lettered.
Two copies of one job (at-least-once makes them) never run at once in a process.

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

A delivery job for a pool whose queue does not exist yet (a pool created after the signer
started) declares that queue and is published again: its mail waits there durably for a
dispatcher of the pool.

Queues (``HATO_AMQP_QUEUE_TYPE``): every durable queue gets the configured ``x-queue-type``;
the control queues stay classic (exclusive and auto-delete, which quorum queues refuse). A
quorum queue that dead-letters (``retry.<ms>`` and the per-IP queues hand jobs back to work
queues by dead-lettering; the others dead-letter to ``dead`` past their delivery limit, or if
an operator's policy rejects or limits) does it ``at-least-once`` (``x-dead-letter-strategy``,
which needs ``x-overflow: reject-publish``): the broker keeps a dead-lettered job until a
target queue confirmed it, where ``at-most-once`` would lose mail whenever the target is
unavailable.
The quorum queues that services consume have ``x-delivery-limit``
(``HATO_AMQP_DELIVERY_LIMIT``): a job handed out that many times without an ack (a job that
kills its consumer) is dead-lettered instead of looping; ``consume()``'s own retries are new
messages and do not count. ``dead`` (listed by operators, each listing hands its jobs out
again) and the unconsumed ``retry.<ms>`` queues have none; ``dead.watch`` has one and no
dead-lettering (a copy that kills its consumer is dropped, the job itself stays in ``dead``).
At-least-once may put a job into ``dead`` twice: it is listed twice, and retrying both runs it
twice, which every consumer takes (a redelivered job).

Failover (``HATO_AMQP_URL`` lists one URL per node, comma-separated): ``connect()`` takes the
first URL that answers. When the connection or one of its channels is lost, publishing fails
at once with ``Unavailable`` (callers retry; ingest answers ``451 4.3.0``) while a task
reconnects, the next URL first, round after round with a back-off; then it declares the
topology again (with the pools, IP queues and event bindings declared since), waits for
handlers still running from the lost connection (``handler_grace``: the broker redelivers
their messages, and a job must not run twice at once) and consumes again. A handler is never
cancelled by a lost channel, and does not republish a message the broker will redeliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    ExchangeType,
)
from aiormq import spec as amqp_spec
from opentelemetry.trace import SpanKind
from yarl import URL

from shared import amqp_writes, schemas
from shared import logging as hlog
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
    links_to,
    traceparent,
    tracer,
)

log = hlog.get_logger(__name__)

ATTEMPT_HEADER = "x-hato-attempt"
ERRORS_HEADER = "x-hato-errors"
TRANSIENT_HEADER = "x-hato-transient"  # retries after the store or the broker failed
REASON_HEADER = "x-hato-reason"
QUEUE_HEADER = "x-hato-queue"
FAILED_AT_HEADER = "x-hato-failed-at"
# The traceparent of a job's first attempt: every retry's span links to it (span links, not
# parenthood: a retry is caused by the producer's publish like the first attempt was).
FIRST_ATTEMPT_HEADER = "x-hato-first-attempt"
# HMAC-SHA256 of the body under the seal key: what one Hato service hands another (jobs,
# results, events) is refused unless a holder of the key published it. A platform team that may
# publish to the broker cannot forge a sign job (and get mail signed with another tenant's
# key), a delivery job (and relay from the pool IPs), a result (and suppress a recipient) or
# an event (and reach a tenant's webhooks).
SEAL_HEADER = "x-hato-seal"
SEALED = (
    schemas.SignJob,
    schemas.DeliveryJob,
    schemas.DeliveryResult,
    schemas.Event,
    schemas.ReportJob,
)


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
    REPORTS = "reports"
    EVENTS_STORE = "events.store"
    WEBHOOKS = "webhooks"
    DEAD = "dead"
    DEAD_WATCH = "dead.watch"


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
        case schemas.ReportJob():
            return Exchange.WORK, Queue.REPORTS.value
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
    # The job came back: the broker redelivered it (its consumer died or lost its channel),
    # or consume() retried it. What its first run recorded may be in the database already,
    # published or not: a handler publishes again what it finds (the job is the outbox).
    redelivered: bool = False


Decoder = Callable[[bytes], tuple[Any, bytes]]


def undecoded(body: bytes) -> tuple[bytes, bytes]:
    """A decoder that leaves the body as it is (the handler decodes what it needs)."""
    return body, b""


Handler = Callable[[Delivery], Awaitable[None]]

NO_ROUTE = 312  # AMQP 0-9-1 reply code of a mandatory message no queue was bound for
DEAD_LETTERED = f"#.{schemas.EventType.DEAD_LETTERED.value}"
RECONNECT_CAP = 30.0  # seconds: the longest pause between two rounds over the broker URLs
RENEW_PAUSE = 0.5  # seconds between a nacked publish and a new publishing channel


class NoRoute(Unavailable):
    """Raised when the broker returned a mandatory message: no queue is bound for its
    routing key (a pool's delivery queue that was never declared, say)."""


@dataclass(eq=False)
class _Subscription:
    """A consumer the process keeps: started by ``consume()``/``on_change()`` and again on
    every new connection."""

    queue: str  # without the prefix
    start: Callable[[AbstractChannel], Awaitable[tuple[AbstractQueue, str]]]
    active: tuple[AbstractQueue, str] | None = None
    generation: int = -1  # the connection ``active`` belongs to


def redact(url: str) -> str:
    """A broker URL fit for logs: the password masked."""
    parsed = URL(url)
    return str(parsed.with_password("******")) if parsed.password else url


def _channel_lost(message: AbstractIncomingMessage) -> bool:
    """True when the channel a message came on is gone: the broker redelivers the message,
    so settling it (a retry or dead-letter copy) would only make a second one."""
    try:
        return message.channel.is_closed
    except aio_pika.exceptions.ChannelInvalidStateError:
        return True


class Broker:
    """A connection to RabbitMQ with the topology declared, a confirming publisher and consumers;
    reconnects by itself (see the module docstring)."""

    def __init__(self, settings: BrokerSettings, *, name: str, pools: Iterable[str] = ()) -> None:
        amqp_writes.install()  # frames ready together leave in one write
        self.settings = settings
        self.name = name
        self.seal_key: bytes | None = None  # Runtime sets it (settings, or the master key)
        self.pools = tuple(pools)
        self._urls = settings.urls() or ["amqp://guest:guest@127.0.0.1:5672/"]
        self._url_index = 0  # the URL of the current (or the last) connection
        self._topology = True
        self._connection: AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._consume_channel: AbstractChannel | None = None
        # Rebuilt for every connection (exchange and queue objects belong to its channels).
        self._exchanges: dict[str, AbstractExchange] = {}
        self._queues: dict[str, AbstractQueue] = {}
        # What was declared or bound after start-up, declared again on a new connection.
        self._pools_declared: set[str] = set()
        self._ip_queues: dict[str, tuple[str, str, float]] = {}
        self._event_keys: dict[Queue, set[str]] = {}
        self._subscriptions: list[_Subscription] = []
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._declare_lock = asyncio.Lock()
        self._generation = 0  # bumped by every connection and every loss of one
        self._ready = False  # connected and the topology declared
        self._closing = False
        self._recovery: asyncio.Task[None] | None = None
        self._renewing: asyncio.Task[None] | None = None
        self._chores: set[asyncio.Future[None]] = set()
        self._twins: dict[tuple[str, bytes], tuple[asyncio.Lock, list[int]]] = {}

    def full(self, name: str) -> str:
        return f"{self.settings.prefix}.{name}"

    @property
    def url(self) -> str:
        """The URL of the current (or the last) connection, password masked."""
        return redact(self._urls[self._url_index])

    # -- lifecycle -----------------------------------------------------------------

    async def connect(self, *, topology: bool = True) -> None:
        """Connect to the first broker URL that answers (raising Unavailable when none does)
        and declare the exchanges and, with ``topology``, the queues (the admin command
        declares no queues: their arguments are the services' settings). From then on a lost
        connection is replaced by itself."""
        self._topology = topology
        self._closing = False
        errors: list[str] = []
        for index in self._order(0):
            try:
                await self._open(index)
                return
            except TRANSIENT_ERRORS as exc:
                errors.append(f"{redact(self._urls[index])}: {exc!r}")
                await self._discard()
            except BaseException:
                await self._discard()
                raise
        raise Unavailable(f"broker unreachable: {'; '.join(errors)}")

    def _order(self, start: int) -> list[int]:
        n = len(self._urls)
        return [(start + i) % n for i in range(n)]

    async def _open(self, index: int) -> None:
        """Connect to URL ``index``, open the channels and declare what this process uses."""
        connection = await aio_pika.connect(
            self._urls[index],
            timeout=self.settings.connect_timeout,
            client_properties={"connection_name": f"hato-{self.name}"},
        )
        self._generation += 1
        generation = self._generation
        self._connection, self._url_index = connection, index
        self._exchanges, self._queues = {}, {}

        def lost(_sender: object, exc: BaseException | None = None, *_: object) -> None:
            self._lost(generation, exc)

        connection.close_callbacks.add(lost)
        self._publish_channel = await self._publisher(connection, generation)
        self._consume_channel = await connection.channel()
        self._watch(self._consume_channel, generation)
        await self._consume_channel.set_qos(prefetch_count=self.settings.prefetch)
        if self._topology:
            await self.declare()
            await self._declare_since()
        else:
            await self.declare_exchanges()
        self._ready = True

    async def _publisher(self, connection: AbstractConnection, generation: int) -> AbstractChannel:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._watch(channel, generation)
        return channel

    def _watch(self, channel: AbstractChannel, generation: int) -> None:
        """A channel the broker closed (a channel error: a publish over its size limit, say)
        is replaced: the publishing one alone, the consuming one with the whole connection
        (its consumers and unacked messages go with it). A lost connection closes its
        channels too; its own callback handles that."""

        def closed(_sender: object, exc: BaseException | None = None, *_: object) -> None:
            if channel is self._publish_channel:
                self._renew_publisher_soon(channel, pause=0)
            elif channel is self._consume_channel:
                self._lost(generation, exc)

        channel.close_callbacks.add(closed)

    def _renew_publisher_soon(self, channel: object, *, pause: float = RENEW_PAUSE) -> None:
        if channel is not self._publish_channel or self._renewing:
            return
        self._renewing = asyncio.create_task(self._renew_publisher(self._publish_channel, pause))
        self._chores.add(self._renewing)
        self._renewing.add_done_callback(self._chores.discard)

    async def _renew_publisher(self, channel: AbstractChannel, pause: float) -> None:
        """Publish on a new channel: after the broker closed the old one, or after a nack.
        RabbitMQ 3.10 nacks every publish to a quorum queue on a channel opened while that
        queue elected its leader (one opened when reconnecting after a node died, say), for as
        long as the channel lives; a new channel finds the leader. Other nacks (a queue
        without a majority) cost a channel now and then."""
        try:
            # One new channel per pause at most, however many publishes fail meanwhile.
            await asyncio.sleep(pause)
            connection, generation = self._connection, self._generation
            if channel is not self._publish_channel or connection is None or not self._ready:
                return  # renewed already, or reconnecting
            new = await self._publisher(connection, generation)
            exchanges = {
                key: await new.get_exchange(ex.name, ensure=False)
                for key, ex in self._exchanges.items()
            }
            queues = {
                key: await new.get_queue(q.name, ensure=False) for key, q in self._queues.items()
            }
            if channel is not self._publish_channel or generation != self._generation:
                await new.close()
                return
            self._publish_channel, self._exchanges, self._queues = new, exchanges, queues
            log.warning("publishing on a new channel", url=self.url, closed=channel.is_closed)
            self._background(self._close_later(channel))
        except Exception as exc:  # a lost connection is handled by its own callback
            log.warning("could not open a new publishing channel", error=repr(exc))
        finally:
            self._renewing = None

    async def _close_later(self, channel: AbstractChannel) -> None:
        # Confirms still due on the old channel get their time before it closes.
        await asyncio.sleep(self.settings.publish_timeout)
        with contextlib.suppress(Exception):
            await channel.close()

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _declare_since(self) -> None:
        """What this process declared or bound after start-up, on a new connection."""
        for pool in sorted(self._pools_declared - set(self.pools)):
            await self._declare_queue(deliver_queue(pool), Exchange.DELIVER, pool)
        for pool, ip, handoff in list(self._ip_queues.values()):
            await self._declare_ip_queue(pool, ip, handoff)
        for queue, keys in list(self._event_keys.items()):
            await self._bind_events(queue, sorted(keys), bound=True)

    def _lost(self, generation: int, exc: BaseException | None) -> None:
        """A close callback of the connection or a channel: start reconnecting, once."""
        if generation != self._generation or self._closing or not self._ready:
            # An older connection, one closed on purpose, or one still being opened (its
            # opener gets the error and tries the next URL).
            return
        self._generation += 1
        self._ready = False
        if self._recovery is not None and not self._recovery.done():
            return  # the running recovery notices the loss in what it awaits
        log.warning(
            "broker connection lost; reconnecting",
            url=self.url,
            error=repr(exc),
            in_flight=len(self._in_flight),
        )
        self._recovery = asyncio.create_task(self._recover(set(self._in_flight)))

    async def _recover(self, stale: set[asyncio.Task[Any]]) -> None:
        """Reconnect (the next URL first), wait for the lost connection's handlers, consume
        again; round after round until it holds or the broker is closed."""
        delay = self.settings.reconnect_interval
        start = self._url_index + 1
        while not self._closing:
            await self._discard()
            errors: list[str] = []
            for index in self._order(start):
                try:
                    await self._open(index)
                    break
                except Exception as exc:  # any failure: try the next URL
                    errors.append(f"{redact(self._urls[index])}: {exc!r}")
                    await self._discard()
            else:
                log.warning("no broker answered; retrying", errors=errors, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_CAP)
                continue
            try:
                if stale and self.settings.handler_grace:
                    # Their messages are redelivered to whoever consumes them next: this
                    # process too, and running a delivery job twice at once sends it twice.
                    await asyncio.wait(stale, timeout=self.settings.handler_grace)
                stale = set()
                await self._resubscribe()
            except Exception as exc:  # lost again: another round
                log.warning("reconnected broker failed again", error=repr(exc))
                start = self._url_index + 1
                await asyncio.sleep(delay)
                continue
            if self.is_connected:  # no await since: a loss after this starts a new recovery
                log.info("broker reconnected", url=self.url, consumers=len(self._subscriptions))
                return
            start = self._url_index + 1

    async def _resubscribe(self) -> None:
        for sub in list(self._subscriptions):
            if sub.generation != self._generation and sub in self._subscriptions:
                await self._start(sub)

    async def _discard(self) -> None:
        """Close the current connection, if any, without treating it as lost."""
        self._ready = False
        self._generation += 1
        connection, self._connection = self._connection, None
        self._publish_channel = self._consume_channel = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    def _channel(self) -> AbstractChannel:
        """The publishing channel, or Unavailable while there is none."""
        if not self.is_connected:
            self._down()
        assert self._publish_channel is not None
        return self._publish_channel

    def _down(self) -> NoReturn:
        if self._ready and self._publish_channel is not None and self._publish_channel.is_closed:
            self._renew_publisher_soon(self._publish_channel, pause=0)  # if no one did yet
        raise Unavailable("broker connection is down")

    def _exchange(self, name: str) -> AbstractExchange:
        self._channel()
        try:
            return self._exchanges[name]
        except KeyError:  # declared by the connection being replaced, not this one yet
            raise Unavailable("broker connection is down") from None

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
        await self._declare_queue(Queue.DEAD, Exchange.DEAD, "", dead_letter=False, consumed=False)
        # A copy of every dead letter: the bounce service publishes the events of those
        # RabbitMQ dead-lettered itself (module docstring).
        await self._declare_queue(Queue.DEAD_WATCH, Exchange.DEAD, "", dead_letter=False)
        await self._declare_queue(Queue.SUBMIT, Exchange.SUBMIT, "")
        await self._declare_queue(Queue.SIGN, Exchange.WORK, Queue.SIGN)
        await self._declare_queue(Queue.RESULTS, Exchange.WORK, Queue.RESULTS)
        await self._declare_queue(Queue.REPORTS, Exchange.WORK, Queue.REPORTS)
        # Services write their own events; the store queue takes only what consume()
        # publishes without a store, and the webhook queue what bounce binds for tenants.
        # Both were bound to every event before: that binding goes.
        store = await self._declare_queue(Queue.EVENTS_STORE, Exchange.EVENTS, DEAD_LETTERED)
        webhooks = await self._declare_queue(Queue.WEBHOOKS, Exchange.EVENTS, None)
        for queue in (store, webhooks):
            await queue.unbind(self._exchanges[Exchange.EVENTS], routing_key="#")
        for pool in self.pools:
            await self._declare_queue(deliver_queue(pool), Exchange.DELIVER, pool)

    def arguments(
        self,
        *,
        dead_letter_exchange: str | None,
        dead_letter_key: str | None = None,
        ttl_ms: int | None = None,
        consumed: bool = False,
    ) -> dict[str, Any]:
        """The arguments of a durable queue: its type, and its TTL and dead-lettering. On a
        quorum queue dead-lettering is at-least-once: a job handed back by dead-lettering
        (a retry, a per-IP queue's handoff) must not be dropped when its target is down; and
        a ``consumed`` one has a delivery limit (past it, a job is dead-lettered, or dropped
        where the queue does not dead-letter: ``dead.watch``, whose jobs are copies)."""
        args: dict[str, Any] = {"x-queue-type": self.settings.queue_type, **self._expires()}
        if ttl_ms is not None:
            args["x-message-ttl"] = ttl_ms
        if dead_letter_exchange is not None:
            args["x-dead-letter-exchange"] = dead_letter_exchange
            if dead_letter_key is not None:
                args["x-dead-letter-routing-key"] = dead_letter_key
            if self.settings.queue_type == "quorum":
                args["x-dead-letter-strategy"] = "at-least-once"
                args["x-overflow"] = "reject-publish"  # at-least-once needs it
        if consumed and self.settings.queue_type == "quorum" and self.settings.delivery_limit:
            args["x-delivery-limit"] = self.settings.delivery_limit
        return args

    async def _declare_queue(
        self,
        name: str,
        exchange: Exchange,
        key: str | None,
        *,
        dead_letter: bool = True,
        consumed: bool = True,
    ) -> AbstractQueue:
        channel, queues = self._publish_channel, self._queues
        assert channel is not None
        dlx = self.full(Exchange.DEAD) if dead_letter else None
        queue = await channel.declare_queue(
            self.full(name),
            durable=True,
            arguments=self.arguments(dead_letter_exchange=dlx, consumed=consumed),
        )
        if key is not None:
            await queue.bind(self._exchanges[exchange], routing_key=key)
        queues[name] = queue
        return queue

    async def bind_events(self, queue: Queue, keys: Iterable[str], *, bound: bool = True) -> None:
        """Bind ``queue`` to the events exchange with each routing key (or unbind them)."""
        keys = list(keys)
        wanted = self._event_keys.setdefault(queue, set())
        (wanted.update if bound else wanted.difference_update)(keys)
        self._channel()  # Unavailable now; bound on the next connection
        await self._bind_events(queue, keys, bound=bound)

    async def _bind_events(self, queue: Queue, keys: list[str], *, bound: bool) -> None:
        q = self._queues[queue]
        exchange = self._exchanges[Exchange.EVENTS]
        for key in keys:
            await (q.bind(exchange, routing_key=key) if bound else q.unbind(exchange, key))

    def _expires(self) -> dict[str, int]:
        return {"x-expires": self.settings.queue_expires} if self.settings.queue_expires else {}

    async def _retry_exchange(self, delay: float) -> AbstractExchange:
        ms = max(100, round(delay * 10) * 100)
        name = self.full(f"retry.{ms}")
        channel, exchanges = self._channel(), self._exchanges
        if name in exchanges:
            return exchanges[name]
        async with self._declare_lock:
            if name not in exchanges:
                exchange = await channel.declare_exchange(name, ExchangeType.FANOUT, durable=True)
                # Expired messages go back through the default exchange to the queue their
                # routing key names.
                queue = await channel.declare_queue(
                    name,
                    durable=True,
                    arguments=self.arguments(dead_letter_exchange="", ttl_ms=ms),
                )
                await queue.bind(exchange)
                exchanges[name] = exchange
        return exchanges[name]

    async def declare_pool(self, pool: str) -> str:
        """The queue of a pool's delivery jobs, declared and bound."""
        self._pools_declared.add(pool)
        self._channel()
        await self._declare_queue(deliver_queue(pool), Exchange.DELIVER, pool)
        return deliver_queue(pool)

    async def declare_ip_queue(self, pool: str, ip: str, *, handoff: float) -> str:
        """The queue of ``ip``'s jobs in ``pool``. A job waiting there longer than
        ``handoff`` seconds (its dispatcher is gone) goes back to the pool's queue."""
        self._ip_queues[ip_queue(pool, ip)] = (pool, ip, handoff)
        self._channel()  # Unavailable now; declared on the next connection
        return await self._declare_ip_queue(pool, ip, handoff)

    async def _declare_ip_queue(self, pool: str, ip: str, handoff: float) -> str:
        name = ip_queue(pool, ip)
        channel = self._publish_channel
        assert channel is not None
        queue = await channel.declare_queue(
            self.full(name),
            durable=True,
            arguments=self.arguments(
                dead_letter_exchange=self.full(Exchange.DELIVER),
                dead_letter_key=pool,
                ttl_ms=int(handoff * 1000),
                consumed=True,
            ),
        )
        self._queues[name] = queue
        return name

    async def stop_consuming(self, queue: str) -> None:
        """Stop taking messages from ``queue`` (a pool this instance no longer serves)."""
        for sub in [s for s in self._subscriptions if s.queue == queue]:
            self._subscriptions.remove(sub)
            await self._cancel(sub)

    def consuming(self) -> set[str]:
        """The queues (without the prefix) this process consumes, or will again once
        reconnected."""
        return {s.queue for s in self._subscriptions}

    async def depth(self, queue: str) -> int | None:
        """Messages ready in ``queue``; None when it does not exist."""
        self._channel()
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
        """Put a message as it is into another queue (confirmed); its consumer's span is a
        child of the current one."""
        await self._publish(
            self._channel().default_exchange,
            self.full(queue),
            body,
            headers=inject_headers(dict(headers)),
            message_id=message_id,
        )

    @property
    def is_connected(self) -> bool:
        return (
            self._ready
            and self._connection is not None
            and not self._connection.is_closed
            and self._publish_channel is not None
            and not self._publish_channel.is_closed
        )

    async def close(self) -> None:
        self._closing = True
        tasks = [t for t in (self._recovery, *self._chores) if t is not None]
        self._recovery = None
        for task in tasks:
            if task is not asyncio.current_task():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._discard()

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
        if self.seal_key is not None and isinstance(message, SEALED):
            headers = {**(headers or {}), SEAL_HEADER: self._seal(body)}
        # Nobody may listen to an event or a configuration change; that is no failure.
        mandatory = not isinstance(message, schemas.Changed | schemas.Event)
        for first in (True, False):
            try:
                await self._publish(
                    self._exchange(exchange),
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
        await self._publish(
            self._channel().default_exchange,
            to,
            body,
            headers={},
            message_id=None,
            correlation_id=correlation_id,
            content_type="application/json",
        )

    async def emit(self, events: Iterable[schemas.Event]) -> None:
        """Publish events concurrently (their confirms arrive together); raises the first
        failure once every publish has finished, so none is left running unobserved."""
        await settle(*(self.publish(e) for e in events))

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
            self._down()
        properties = amqp_spec.Basic.Properties(
            headers=dict(headers),
            content_type=content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            message_id=message_id,
            correlation_id=correlation_id,
        )
        try:
            async with asyncio.timeout(self.settings.publish_timeout):
                # Through aiormq itself, without waiting for the frame to reach the socket
                # before the channel takes the next one (aio-pika always waits): publishes
                # of one turn of the event loop then leave in one write (amqp_writes). The
                # broker's confirm is awaited as before, so nothing returns before it.
                channel = await exchange.channel.get_underlay_channel()
                await channel.basic_publish(
                    body,
                    exchange=exchange.name,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=mandatory,
                    wait=False,
                )
        except aio_pika.exceptions.PublishError as exc:
            PUBLISH_FAILURES.labels(exchange.name).inc()
            if getattr(exc.frame, "reply_code", None) == NO_ROUTE:
                raise NoRoute(
                    f"no queue for {routing_key!r} on {exchange.name!r}: the message was returned"
                ) from exc
            raise Unavailable(f"publish to {exchange.name!r} not confirmed: {exc!r}") from exc
        except aio_pika.exceptions.DeliveryError as exc:  # nacked
            PUBLISH_FAILURES.labels(exchange.name).inc()
            self._renew_publisher_soon(getattr(exchange, "channel", None))
            raise Unavailable(f"publish to {exchange.name!r} not confirmed: {exc!r}") from exc
        except (
            *TRANSIENT_ERRORS,
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
        if not self.is_connected:
            raise Unavailable("broker connection is down")
        await self._start(sub)
        self._subscriptions.append(sub)

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
            tracer.start_as_current_span(
                f"{self.full(queue)} process",
                context=extract_context(headers),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.destination.name": self.full(queue)},
                links=links_to(first, **{"hato.link": "first attempt"}) if first else None,
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
                async with self._alone(queue, decoded, message.body, payload):
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
                            redelivered=bool(
                                message.redelivered
                                or attempt > 1
                                or headers.get(TRANSIENT_HEADER)
                                or headers.get(ERRORS_HEADER)
                            ),
                        )
                    )
            except CodecError as exc:
                await self._settle_dead(queue, message, decoded, f"undecodable: {exc}")
            except Permanent as exc:
                await self._settle_dead(queue, message, decoded, exc.reason)
            except RetryLater as exc:
                if attempt >= self.settings.max_attempts:  # nothing retries for ever
                    await self._settle_dead(
                        queue, message, decoded, f"gave up after {attempt} attempts: {exc.reason}"
                    )
                else:
                    headers[ATTEMPT_HEADER] = attempt + 1
                    await self._settle_retry(
                        queue, message, headers, exc.delay, "retry", exc.reason
                    )
            except TRANSIENT_ERRORS as exc:
                # The store or broker is away: back off (doubling up to 5 minutes), and give
                # the job up after max_transient_retries — a final state, not a loop.
                tries = int(headers.get(TRANSIENT_HEADER, 0) or 0) + 1
                if tries > self.settings.max_transient_retries:
                    await self._settle_dead(
                        queue, message, decoded, f"gave up after {tries - 1} retries: {exc!r}"
                    )
                else:
                    headers[TRANSIENT_HEADER] = tries
                    delay = min(self.settings.error_backoff * 2 ** (tries - 1), 300.0)
                    await self._settle_retry(queue, message, headers, delay, "transient", repr(exc))
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
        if not isinstance(decoded, schemas.SignJob | schemas.DeliveryJob | schemas.DeliveryResult):
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
        message: AbstractIncomingMessage,
        headers: dict[str, Any],
        delay: float,
        outcome: str,
        reason: str,
    ) -> None:
        log.info("retrying later", delay=delay, outcome=outcome, reason=reason)
        first = traceparent()  # this attempt's span, unless an earlier one is named already
        if first and FIRST_ATTEMPT_HEADER not in headers:
            headers[FIRST_ATTEMPT_HEADER] = first
        if _channel_lost(message):
            log.info("channel lost: the broker redelivers the message instead")
            CONSUMED.labels(queue, "redelivered").inc()
            return
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
        if _channel_lost(message):
            log.error("dead-lettering", reason=reason)
            log.info("channel lost: the broker redelivers the message instead")
            CONSUMED.labels(queue, "redelivered").inc()
            return
        if queue == Queue.DEAD_WATCH:
            # A copy of a job that is in `dead` already: a second one there would list it twice.
            log.error("dropping a dead letter's copy; the job stays in dead", reason=reason)
            await self._ack(message)
            CONSUMED.labels(queue, "dropped").inc()
            return
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
                self._exchange(Exchange.DEAD),
                self.full(queue),
                scrubbed(message.body),
                headers=headers,
                message_id=message.message_id,
            )
            event = dead_lettered_event(
                self.full(queue), decoded, message.body, reason, message.message_id
            )
            if event is not None:
                # The bounce service records it and ends the job's recipients in `failed`
                # (the bounce service's EventRecorder): no mail stays in limbo.
                await self.publish(event)
        except Exception as exc:
            log.warning("could not dead-letter; requeueing", error=repr(exc))
            await self._nack(message)
            CONSUMED.labels(queue, "requeued").inc()
            return
        await self._ack(message)
        CONSUMED.labels(queue, "dead").inc()

    def death_reason(self, queue: str, reason: str) -> str:
        """Why RabbitMQ itself dead-lettered a job from ``queue`` (``x-death``), in words."""
        if reason == "delivery_limit":
            limit = self.settings.delivery_limit
            handed = f"handed out {limit + 1} times" if limit else "handed out too often"
            return f"{handed} without an ack (delivery limit of {queue})"
        return f"dead-lettered by RabbitMQ from {queue}: {reason}"

    def broker_dead_letter(
        self, body: bytes, headers: Mapping[str, Any], amqp_message_id: str | None = None
    ) -> schemas.Event | None:
        """The ``dead_lettered`` event of a copy from ``dead.watch`` that RabbitMQ itself
        dead-lettered, as ``consume()`` makes it for its own (same id); None for a copy
        ``consume()`` dead-lettered (it published its event), one without ``x-death`` (put
        into ``dead`` by hand), one that is no job of a Hato service (a submission: it has no
        state yet), or one not sealed by a Hato service (it could fail another tenant's
        mail)."""
        if REASON_HEADER in headers:
            return None
        # This copy's own retries (consume()'s, through retry.<ms>) are deaths too.
        death = broker_death(headers, ignore=self.full("retry."))
        if death is None:
            return None
        try:
            job, _ = schemas.decode(body)
        except CodecError:
            return None
        if (
            self.seal_key is not None
            and isinstance(job, SEALED)
            and not self._sealed(body, headers.get(SEAL_HEADER))
        ):
            log.warning("a dead letter not sealed by a Hato service: no event", queue=death[0])
            return None
        return dead_lettered_event(death[0], job, body, self.death_reason(*death), amqp_message_id)

    # -- dead letters, for operators ---------------------------------------------

    async def dead_letters(
        self,
        *,
        limit: int = 100,
        act: Callable[[AbstractIncomingMessage], Awaitable[str | None]] | None = None,
    ) -> list[dict[str, Any]]:
        """The jobs in the dead-letter queue (oldest first, up to ``limit``), each as a dict;
        with ``act``, called for each: "drop" acks it away, "retry" puts it back into the
        queue it died in (attempts counted afresh), None leaves it. Works on a channel of its
        own: what is left is returned to the queue when it closes."""
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
                    await self._publish(
                        self._channel().default_exchange,
                        entry["queue"],
                        message.body,
                        headers=headers,
                        message_id=message.message_id,
                    )
                if decision in ("retry", "drop"):
                    await message.ack()
                entry["done"] = decision or ""
                listed.append(entry)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return listed

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


async def settle(*publishes: Awaitable[None]) -> None:
    """Await ``publishes`` together; when any failed, raise the first failure after all of
    them have finished (``asyncio.gather`` would raise at once and leave the rest running)."""
    for outcome in await asyncio.gather(*publishes, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome


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


def _death_time(headers: Mapping[str, Any]) -> str:
    deaths = headers.get("x-death") or []
    at = deaths[0].get("time") if deaths and isinstance(deaths[0], Mapping) else None
    return at.isoformat() if isinstance(at, datetime) else str(at or "")


def _recipient_ids(job: object) -> list[str]:
    if isinstance(job, schemas.DeliveryResult):
        return [r.recipient_id for r in job.results]
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
    entry["recipients"] = _recipient_ids(job)
    entry["size"] = len(payload)
    if isinstance(job, schemas.ReportJob):
        entry["report_id"] = job.report_id  # the report itself is in `reports`
    return entry


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

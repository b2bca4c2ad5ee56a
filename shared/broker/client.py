"""``Broker``: the connection to RabbitMQ, declaring the topology, publishing with confirms,
and failing over.

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
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, NoReturn

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    ExchangeType,
)
from aiormq import spec as amqp_spec
from yarl import URL

from shared import amqp_writes, schemas
from shared import logging as hlog
from shared.broker.consuming import Consuming, _Subscription
from shared.broker.dead_letters import DeadLetters
from shared.broker.topology import (
    DEAD_LETTERED,
    NO_ROUTE,
    SEAL_HEADER,
    SEALED,
    Exchange,
    NoRoute,
    Queue,
    deliver_queue,
    ip_queue,
    retry_ms,
    retry_name,
    route,
)
from shared.errors import (
    TRANSIENT_ERRORS,
    Unavailable,
)
from shared.settings import BrokerSettings
from shared.telemetry import (
    PUBLISH_FAILURES,
    PUBLISHED,
    inject_headers,
)

log = hlog.get_logger(__name__)


RECONNECT_CAP = 30.0  # seconds: the longest pause between two rounds over the broker URLs


RENEW_PAUSE = 0.5  # seconds between a nacked publish and a new publishing channel


def redact(url: str) -> str:
    """A broker URL fit for logs: the password masked."""
    parsed = URL(url)
    return str(parsed.with_password("******")) if parsed.password else url


class Broker(Consuming, DeadLetters):
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
        name = self.full(retry_name(delay))
        ms = retry_ms(delay)
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
                if not (first and isinstance(message, schemas.DeliveryJob | schemas.DeliveryBatch)):
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


async def settle(*publishes: Awaitable[None]) -> None:
    """Await ``publishes`` together; when any failed, raise the first failure after all of
    them have finished (``asyncio.gather`` would raise at once and leave the rest running)."""
    for outcome in await asyncio.gather(*publishes, return_exceptions=True):
        if isinstance(outcome, BaseException):
            raise outcome

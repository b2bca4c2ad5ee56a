"""consume() on the real RabbitMQ: ack, retry through TTL queues, dead-letter with a reason,
transient errors, trace context, confirms and draining; reconnecting through another URL when
the connection is lost (cut by a proxy); quorum queue arguments. tests/cluster/ does the same
on a real three-node cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from yarl import URL

from shared.broker import (
    QUEUE_HEADER,
    REASON_HEADER,
    SEAL_HEADER,
    Broker,
    Delivery,
    NoRoute,
    Queue,
    deliver_queue,
    redact,
)
from shared.errors import Permanent, RetryLater, Unavailable
from shared.schemas import (
    Changed,
    ChangeKind,
    DeliveryBatch,
    DeliveryJob,
    Event,
    EventType,
    Recipient,
    SignJob,
    decode,
    encode,
)
from shared.settings import BrokerSettings
from shared.testing import TcpProxy
from tests.conftest import AMQP_URL
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def broker(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    b = Broker(
        broker_settings.model_copy(update={"max_redeliveries": 2}), name="test", pools=["default"]
    )
    await b.connect()
    yield b
    await b.drain(5)
    await b.close()


def job(message_id: str = "m1") -> SignJob:
    return SignJob(
        message_id=message_id,
        tenant="acme",
        mail_from="a@shop.test",
        from_domain="shop.test",
        recipients=(Recipient(id="r1", address="b@ok.test"),),
        pool="default",
    )


async def take(broker: Broker, queue: str):
    """One message from a queue, or None (basic.get on the consuming channel)."""
    q = await broker._publish_channel.get_queue(broker.full(queue))
    return await q.get(fail=False, no_ack=True)


async def count(broker: Broker, queue: str) -> int:
    """Messages ready in a queue, asked on a connection of its own."""
    connection = await aio_pika.connect(broker.settings.url)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(broker.full(queue), passive=True)
        return q.declaration_result.message_count


async def test_a_handled_message_is_acked(broker: Broker) -> None:
    """The handler gets the decoded job and payload; returning acks it."""
    seen: list[Delivery] = []

    async def handler(d: Delivery) -> None:
        seen.append(d)

    await broker.consume(Queue.SIGN, handler)
    await broker.publish(job(), b"raw bytes\r\n")
    await eventually(lambda: asyncio.sleep(0, seen), until=bool)
    assert seen[0].message == job().model_copy(update={"created_at": seen[0].message.created_at})
    assert (seen[0].payload, seen[0].attempt) == (b"raw bytes\r\n", 1)
    await broker.drain(5)
    assert await count(broker, Queue.SIGN) == 0


async def test_retry_later_comes_back_after_the_delay_with_the_next_attempt(
    broker: Broker,
) -> None:
    """RetryLater(0.5) parks the message in a TTL queue; it returns as attempt 2."""
    attempts: list[tuple[int, float]] = []
    loop = asyncio.get_running_loop()

    async def handler(d: Delivery) -> None:
        attempts.append((d.attempt, loop.time()))
        if d.attempt == 1:
            raise RetryLater(0.5)

    await broker.consume(Queue.SIGN, handler)
    await broker.publish(job())
    await eventually(lambda: asyncio.sleep(0, attempts), until=lambda a: len(a) == 2)
    assert [a for a, _ in attempts] == [1, 2]
    assert attempts[1][1] - attempts[0][1] >= 0.45


async def test_permanent_failures_are_dead_lettered_with_reason_and_an_event(
    broker: Broker,
) -> None:
    """Permanent(reason) → the dead queue, with the reason and queue in headers, and a
    dead_lettered event for the message."""

    async def handler(d: Delivery) -> None:
        raise Permanent("no such tenant")

    await broker.consume(Queue.SIGN, handler)
    await broker.publish(job("m-dead"), b"payload")
    dead = await eventually(lambda: take(broker, Queue.DEAD), until=lambda m: m is not None)
    assert dead.headers[REASON_HEADER] == "no such tenant"
    assert dead.headers[QUEUE_HEADER] == broker.full(Queue.SIGN)
    assert decode(dead.body)[1] == b"payload"
    stored = await eventually(lambda: take(broker, Queue.EVENTS_STORE), until=lambda m: m)
    event, _ = decode(stored.body)
    assert isinstance(event, Event)
    assert (event.type, event.message_id) == (EventType.DEAD_LETTERED, "m-dead")
    assert event.detail["recipients"] == "r1"  # what the bounce service ends in `failed`


async def test_unexpected_errors_are_retried_then_dead_lettered(broker: Broker) -> None:
    """A handler that keeps failing is tried 1 + max_redeliveries times, then dead-lettered."""
    calls = 0

    async def handler(d: Delivery) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("bug")

    await broker.consume(Queue.SIGN, handler)
    await broker.publish(job())
    dead = await eventually(
        lambda: take(broker, Queue.DEAD), until=lambda m: m is not None, timeout=15
    )
    assert calls == 3
    assert "handler failed 3 times" in dead.headers[REASON_HEADER]
    assert "ValueError('bug')" in dead.headers[REASON_HEADER]


async def test_transient_errors_retry_without_dead_lettering(broker: Broker) -> None:
    """Unavailable (a dependency down) is retried however often, never dead-lettered, and does
    not count as an attempt."""
    seen: list[int] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.attempt)
        if len(seen) <= 4:
            raise Unavailable("store down")

    await broker.consume(Queue.SIGN, handler)
    await broker.publish(job())
    await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: len(s) == 5, timeout=15)
    assert seen == [1, 1, 1, 1, 1]
    assert await count(broker, Queue.DEAD) == 0


async def test_trace_context_rides_in_amqp_headers(broker: Broker) -> None:
    """The consumer's span continues the producer's trace (W3C traceparent header)."""
    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("test")
    consumer_trace: list[int] = []

    async def handler(d: Delivery) -> None:
        assert "traceparent" in d.headers
        consumer_trace.append(trace.get_current_span().get_span_context().trace_id)

    await broker.consume(Queue.SIGN, handler)
    with tracer.start_as_current_span("submit") as span:
        producer_trace = span.get_span_context().trace_id
        await broker.publish(job())
    await eventually(lambda: asyncio.sleep(0, consumer_trace), until=bool)
    assert consumer_trace == [producer_trace]


async def test_a_job_for_a_pool_without_a_queue_waits_in_a_new_one(broker: Broker) -> None:
    """A pool made after the publisher started has no queue yet: the broker returns the job,
    the publisher declares the pool's queue and publishes again, and the job waits there."""
    new_pool = DeliveryJob(
        message_id="m",
        tenant="t",
        mail_from="a@shop.test",
        domain="ok.test",
        recipients=(Recipient(id="r", address="b@ok.test"),),
        pool="made-later",
        created_at=job().created_at,
    )
    assert await broker.depth("deliver.made-later") is None
    await broker.publish(new_pool)
    assert await broker.depth("deliver.made-later") == 1


async def test_an_unroutable_publish_is_not_confirmed(broker: Broker) -> None:
    """What no queue takes is returned by the broker: NoRoute (an Unavailable), not silence."""
    with pytest.raises(NoRoute, match="returned"):
        await broker.forward("no-such-queue", b"{}\n", {}, "m")


async def test_configuration_changes_reach_every_listener(broker: Broker, broker_settings) -> None:
    """A change published on the control exchange reaches each process listening (its own
    queue each); published with nobody listening, it is no error."""
    await broker.publish(Changed(what=ChangeKind.POOLS, name="nobody-listens"))
    others = [Broker(broker_settings, name=f"listener{i}") for i in range(2)]
    heard: list[list[Changed]] = [[], []]
    try:
        for other, log in zip(others, heard, strict=True):
            await other.connect()
            await other.on_change(lambda c, log=log: asyncio.sleep(0, log.append(c)))
        await broker.publish(Changed(what=ChangeKind.DOMAINS, name="shop.test"))
        await eventually(lambda: asyncio.sleep(0, heard), until=lambda h: all(h))
        assert heard == [[Changed(what=ChangeKind.DOMAINS, name="shop.test")]] * 2
    finally:
        for other in others:
            await other.close()


async def test_drain_lets_in_flight_work_finish(broker: Broker) -> None:
    """drain() stops consuming and waits for the handler in progress, which then acks."""
    started, finished = asyncio.Event(), asyncio.Event()

    async def handler(d: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.set()

    await broker.consume(Queue.SIGN, handler)
    await broker.publish(job())
    await asyncio.wait_for(started.wait(), 10)
    await broker.drain(5)
    assert finished.is_set()
    assert await count(broker, Queue.SIGN) == 0
    await broker.publish(job())  # nobody consumes any more
    await asyncio.sleep(0.3)
    assert await count(broker, Queue.SIGN) == 1


async def test_copies_of_one_job_run_one_after_another(broker: Broker) -> None:
    """Two copies of one job (at-least-once makes them) never run at once in a process: the
    second starts when the first ended; different jobs still run side by side."""
    spans: dict[str, list[tuple[float, float]]] = {}
    loop = asyncio.get_running_loop()

    async def handler(d: Delivery) -> None:
        start = loop.time()
        await asyncio.sleep(0.3)
        spans.setdefault(d.message.message_id, []).append((start, loop.time()))

    await broker.consume(Queue.SIGN, handler)
    twin = job("twin")
    await asyncio.gather(broker.publish(twin), broker.publish(twin))
    await broker.publish(job("other"))
    await eventually(lambda: asyncio.sleep(0, spans), until=lambda s: len(s.get("twin", [])) == 2)
    (a_start, a_end), (b_start, _) = sorted(spans["twin"])
    assert b_start >= a_end
    ((o_start, o_end),) = spans["other"]
    assert o_start < a_end and a_start < o_end  # the other job overlapped the first copy


@pytest.fixture
async def proxies() -> AsyncIterator[list[TcpProxy]]:
    """Two ways to the broker, each of which a test can cut: two "nodes" of one broker."""
    host, port = URL(AMQP_URL).host, URL(AMQP_URL).port
    pair = [TcpProxy(host, port), TcpProxy(host, port)]
    for proxy in pair:
        await proxy.start()
    yield pair
    for proxy in pair:
        await proxy.cut()


def via(proxy: TcpProxy) -> str:
    return str(URL(AMQP_URL).with_host(proxy.host).with_port(proxy.port))


async def test_a_lost_connection_moves_to_the_next_url_and_consumes_again(
    broker_settings: BrokerSettings, proxies: list[TcpProxy]
) -> None:
    """With several URLs, losing the connection reconnects by itself through the next one:
    the topology is declared again, consumers consume again, publishing works again."""
    first, second = proxies
    settings = broker_settings.model_copy(
        update={"url": f"{via(first)}, {via(second)}", "reconnect_interval": 0.2}
    )
    b = Broker(settings, name="failover", pools=["default"])
    await b.connect()
    seen: list[str] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.message.message_id)

    try:
        await b.consume(Queue.SIGN, handler)
        await b.publish(job("before"))
        await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: s == ["before"])
        assert b.url == redact(via(first))

        await first.cut()
        with pytest.raises(Unavailable):  # at once, while it reconnects
            await b.publish(job("during"))
        await eventually(lambda: asyncio.sleep(0, b.is_connected), timeout=10)
        assert b.url == redact(via(second))
        assert b.consuming() == {"sign"}
        await b.publish(job("after"))
        await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: "after" in s)
    finally:
        await b.close()


async def test_a_consumer_asked_for_while_the_connection_is_lost_starts_once_it_is_back(
    broker_settings: BrokerSettings, proxies: list[TcpProxy]
) -> None:
    """A service that asks to consume (and to hear of changes) just after its connection was
    lost, as it starts, is not refused: both start when the connection is back, and a job
    published then reaches the handler."""
    first = proxies[0]
    settings = broker_settings.model_copy(update={"url": via(first), "reconnect_interval": 0.1})
    b = Broker(settings, name="late-consumer", pools=["default"])
    await b.connect()
    seen: list[str] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.message.message_id)

    async def changed(_change: object) -> None:
        return None

    try:
        await first.cut()
        await eventually(lambda: asyncio.sleep(0, b.is_connected), until=lambda up: not up)
        await b.consume(Queue.SIGN, handler)  # refused with Unavailable before
        await b.on_change(changed)
        await first.restore()
        await eventually(lambda: asyncio.sleep(0, b.is_connected), timeout=10)
        assert b.consuming() >= {"sign"}
        await b.publish(job("after"))
        await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: s == ["after"])
    finally:
        await b.close()


async def test_with_no_broker_reachable_it_keeps_trying(
    broker_settings: BrokerSettings, proxies: list[TcpProxy]
) -> None:
    """When no URL answers, publishing fails fast (Unavailable) and the broker tries again,
    round after round, until one answers."""
    first, second = proxies
    settings = broker_settings.model_copy(
        update={"url": f"{via(first)},{via(second)}", "reconnect_interval": 0.1}
    )
    b = Broker(settings, name="failover")
    await b.connect()
    try:
        await first.cut()
        await second.cut()
        await asyncio.sleep(0.5)  # several rounds find nobody
        assert not b.is_connected
        with pytest.raises(Unavailable, match="down"):
            await b.publish(job())
        await first.restore()
        await eventually(lambda: asyncio.sleep(0, b.is_connected), timeout=10)
        await b.publish(job())
    finally:
        await b.close()


async def test_a_handler_cut_off_by_a_lost_connection_finishes_before_its_copy_runs(
    broker_settings: BrokerSettings, proxies: list[TcpProxy]
) -> None:
    """A handler running when the connection drops is not cancelled; the broker redelivers
    its message, and the copy runs only after the first handler has finished (a delivery
    job run twice at once would mail its recipients twice)."""
    first, second = proxies
    settings = broker_settings.model_copy(
        update={"url": f"{via(first)},{via(second)}", "reconnect_interval": 0.1}
    )
    b = Broker(settings, name="failover")
    await b.connect()
    loop = asyncio.get_running_loop()
    runs: list[dict[str, float]] = []
    started = asyncio.Event()

    async def handler(d: Delivery) -> None:
        run = {"start": loop.time()}
        runs.append(run)
        started.set()
        await asyncio.sleep(1.0 if len(runs) == 1 else 0)
        run["end"] = loop.time()

    try:
        await b.consume(Queue.SIGN, handler)
        await b.publish(job("cut-off"))
        await asyncio.wait_for(started.wait(), 10)
        await first.cut()
        await eventually(lambda: asyncio.sleep(0, runs), until=lambda r: len(r) == 2, timeout=10)
        assert "end" in runs[0]  # ran to its end, not cancelled
        assert runs[1]["start"] >= runs[0]["end"]  # the redelivered copy started afterwards
    finally:
        await b.close()


async def test_quorum_queues_dead_letter_at_least_once_and_control_stays_classic(
    broker_settings: BrokerSettings,
) -> None:
    """With queue_type=quorum every durable queue is a quorum queue, those that dead-letter do
    it at-least-once (with reject-publish overflow, which it needs), the retry flow still
    returns a job, and the per-process control queue stays a classic exclusive queue."""
    settings = broker_settings.model_copy(update={"queue_type": "quorum"})
    b = Broker(settings, name="quorum", pools=["default"])
    await b.connect()
    try:
        args = b.arguments(dead_letter_exchange="", ttl_ms=100)
        assert args["x-queue-type"] == "quorum"
        assert args["x-dead-letter-strategy"] == "at-least-once"
        assert args["x-overflow"] == "reject-publish"
        assert "x-dead-letter-strategy" not in b.arguments(dead_letter_exchange=None)
        classic = Broker(broker_settings, name="classic")
        assert "x-dead-letter-strategy" not in classic.arguments(dead_letter_exchange="x")

        attempts: list[int] = []

        async def handler(d: Delivery) -> None:
            attempts.append(d.attempt)
            if d.attempt == 1:
                raise RetryLater(0.2)

        await b.consume(Queue.SIGN, handler)
        await b.on_change(lambda c: asyncio.sleep(0))
        await b.declare_ip_queue("default", "192.0.2.9", handoff=1)
        await b.publish(job())
        await eventually(lambda: asyncio.sleep(0, attempts), until=lambda a: a == [1, 2])
        control = next(q for q in b.consuming() if q.startswith("control."))
        assert control == "control.quorum"
    finally:
        await b.close()


async def queue_arguments(settings: BrokerSettings, name: str) -> dict:
    """A queue's arguments as RabbitMQ keeps them (its management API)."""
    import httpx

    from hato.amqp_users import endpoint

    where = endpoint(settings)
    async with httpx.AsyncClient(auth=(where.user, where.password), timeout=5) as http:
        try:
            answer = await http.get(f"{where.base}/api/queues/%2F/{name}")
        except httpx.HTTPError as exc:
            pytest.skip(f"no RabbitMQ management API: {exc!r}")
    answer.raise_for_status()
    return answer.json()["arguments"]


async def test_quorum_queues_have_a_delivery_limit_and_dead_letter_past_it(
    broker_settings: BrokerSettings,
) -> None:
    """With queue_type=quorum the consumed queues carry x-delivery-limit (with at-least-once
    dead-lettering and reject-publish), RabbitMQ accepts them, and a job handed out past the
    limit without an ack (its consumer dies each time) goes to the dead-letter queue; the
    dead-letter and retry queues have no limit, the dead letters' copies one without
    dead-lettering."""
    settings = broker_settings.model_copy(update={"queue_type": "quorum", "delivery_limit": 2})
    b = Broker(settings, name="quorum-limit", pools=["default"])
    await b.connect()
    try:
        await b.declare_ip_queue("default", "192.0.2.9", handoff=60)
        await b._retry_exchange(1)
        shown = {
            q: await queue_arguments(settings, b.full(q))
            for q in ("sign", "results", "deliver.default", "deliver.default.ip.192.0.2.9")
        }
        print("arguments as RabbitMQ shows them:", json.dumps(shown, indent=1, sort_keys=True))
        for args in shown.values():
            assert args["x-queue-type"] == "quorum"
            assert args["x-delivery-limit"] == 2
            assert args["x-dead-letter-strategy"] == "at-least-once"
            assert args["x-overflow"] == "reject-publish"
        assert "x-delivery-limit" not in await queue_arguments(settings, b.full("dead"))
        # The dead letters' copies for the bounce service: a limit, no dead-lettering.
        watch = await queue_arguments(settings, b.full("dead.watch"))
        assert watch["x-delivery-limit"] == 2 and "x-dead-letter-exchange" not in watch
        assert "x-delivery-limit" not in await queue_arguments(settings, b.full("retry.1000"))
        assert "x-delivery-limit" not in Broker(broker_settings, name="classic").arguments(
            dead_letter_exchange="x", consumed=True
        )

        await b.publish(job("poison"))
        handed_out = 0
        connection = await aio_pika.connect(settings.url)
        async with connection:
            for _ in range(10):
                channel = await connection.channel()
                q = await channel.get_queue(b.full(Queue.SIGN))
                message = await q.get(fail=False, no_ack=False)
                await channel.close()  # never acked: back to the queue, one delivery more
                if message is None:
                    break
                handed_out += 1
        listed = await eventually(b.dead_letters, until=lambda entries: entries)
        assert handed_out == 3  # the limit, then one more: it is dead-lettered on that return
        # hato dead list names the queue and the broker's reason, in words.
        assert [(e["message_id"], e["queue"], e["reason"]) for e in listed] == [
            (
                "poison",
                b.full(Queue.SIGN),
                f"handed out 3 times without an ack (delivery limit of {b.full(Queue.SIGN)})",
            )
        ]
        assert listed[0]["failed_at"].startswith("20")
    finally:
        await b.close()


async def test_jobs_are_sealed_and_a_forged_one_is_refused(broker_settings: BrokerSettings) -> None:
    """With a seal key, what a service publishes carries its HMAC; a consumer with the key
    handles a sealed job and dead-letters one published without the key (a platform team
    with broker access forging a sign job) or with another body under a copied seal."""
    hato = Broker(broker_settings, name="sealed", pools=["default"])
    hato.seal_key = b"k" * 32
    outsider = Broker(broker_settings, name="outsider", pools=["default"])
    await hato.connect()
    await outsider.connect()
    seen: list[str] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.message.message_id)

    try:
        await hato.consume(Queue.SIGN, handler)
        await hato.publish(job("genuine"), b"body")
        await outsider.publish(job("forged"), b"body")
        sealed = hato._seal(encode(job("genuine"), b"body"))
        await outsider.publish(job("copied"), b"other body", headers={SEAL_HEADER: sealed})
        dead = []
        for _ in range(2):
            dead.append(await eventually(lambda: take(hato, Queue.DEAD), until=lambda m: m))
        assert seen == ["genuine"]
        assert sorted(decode(d.body)[0].message_id for d in dead) == ["copied", "forged"]
        assert all("not sealed" in d.headers[REASON_HEADER] for d in dead)
    finally:
        await hato.drain(5)
        await hato.close()
        await outsider.close()


async def test_a_dead_lettered_submission_keeps_no_api_key(broker: Broker) -> None:
    """A JSON submission that dies (the AMQP door's) reaches the dead-letter queue with its
    API key's public prefix only."""

    async def handler(d: Delivery) -> None:
        raise Permanent("invalid message")

    def as_json(body: bytes):
        return json.loads(body), b""

    await broker.consume(Queue.SUBMIT, handler, decode=as_json)
    body = json.dumps({"api_key": "hato_1a2b3c4d_s3cr3tpart", "message": {"to": []}}).encode()
    await broker.forward(Queue.SUBMIT, body, {}, "sub-1")
    dead = await eventually(lambda: take(broker, Queue.DEAD), until=lambda m: m is not None)
    assert b"s3cr3tpart" not in dead.body
    assert json.loads(dead.body)["api_key"] == "hato_1a2b3c4d_<removed>"


async def test_nothing_retries_for_ever(broker_settings: BrokerSettings) -> None:
    """A handler that keeps asking to be retried, or whose store keeps failing, gets a final
    answer: the job is dead-lettered after max_attempts / max_transient_retries."""
    capped = Broker(
        broker_settings.model_copy(
            update={"max_attempts": 3, "max_transient_retries": 2, "error_backoff": 0.05}
        ),
        name="capped",
        pools=["default"],
    )
    await capped.connect()
    calls: dict[str, int] = {}

    async def handler(d: Delivery) -> None:
        calls[d.message.message_id] = calls.get(d.message.message_id, 0) + 1
        if d.message.message_id == "later":
            raise RetryLater(0.05, "rate limited")
        raise ConnectionError("the store is away")

    try:
        await capped.consume(Queue.SIGN, handler)
        await capped.publish(job("later"))
        await capped.publish(job("transient"))
        dead = [await eventually(lambda: take(capped, Queue.DEAD), until=lambda m: m, timeout=20)]
        dead.append(await eventually(lambda: take(capped, Queue.DEAD), until=lambda m: m))
        reasons = {decode(d.body)[0].message_id: d.headers[REASON_HEADER] for d in dead}
        assert reasons["later"].startswith("gave up after 3 attempts")
        assert reasons["transient"].startswith("gave up after 2 retries")
        assert calls == {"later": 3, "transient": 3}
    finally:
        await capped.drain(5)
        await capped.close()


def delivery_job(message_id: str) -> DeliveryJob:
    return DeliveryJob(
        message_id=message_id,
        tenant="acme",
        mail_from="a@shop.test",
        domain="ok.test",
        recipients=(Recipient(id=f"r-{message_id}", address=f"{message_id}@ok.test"),),
        pool="default",
    )


async def test_each_job_of_a_batch_is_handled_and_settled_as_itself(
    broker_settings: BrokerSettings,
) -> None:
    """A delivery batch: the handler gets each job with its own message, at once; a job that
    must wait is retried alone (as attempt 2), one that cannot succeed is dead-lettered alone,
    sealed anew, with an event naming it only; the batch itself is acked."""
    hato = Broker(broker_settings, name="batches", pools=["default"])
    hato.seal_key = b"k" * 32
    await hato.connect()
    seen: list[tuple[str, int, bytes]] = []

    async def handler(d: Delivery) -> None:
        seen.append((d.message.message_id, d.attempt, d.payload))
        if d.message.message_id == "later" and d.attempt == 1:
            raise RetryLater(0.3)
        if d.message.message_id == "dead":
            raise Permanent("no such domain")

    try:
        await hato.consume(deliver_queue("default"), handler)
        items = [(delivery_job(m), f"message {m}\r\n".encode()) for m in ("ok", "later", "dead")]
        await hato.publish(*DeliveryBatch.of(items))
        await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: len(s) == 4)
        assert sorted(seen) == [
            ("dead", 1, b"message dead\r\n"),
            ("later", 1, b"message later\r\n"),
            ("later", 2, b"message later\r\n"),
            ("ok", 1, b"message ok\r\n"),
        ]
        dead = await eventually(lambda: take(hato, Queue.DEAD), until=lambda m: m)
        dead_job, dead_payload = decode(dead.body)
        assert isinstance(dead_job, DeliveryJob)  # the job alone, not its batch
        assert (dead_job.message_id, dead_payload) == ("dead", b"message dead\r\n")
        assert dead.headers[REASON_HEADER] == "no such domain"
        assert hato._sealed(dead.body, dead.headers[SEAL_HEADER])
        stored = await eventually(lambda: take(hato, Queue.EVENTS_STORE), until=lambda m: m)
        event, _ = decode(stored.body)
        assert (event.message_id, event.detail["recipients"]) == ("dead", "r-dead")
        await hato.drain(5)
        assert await count(hato, deliver_queue("default")) == 0
        assert await take(hato, Queue.DEAD) is None
    finally:
        await hato.close()

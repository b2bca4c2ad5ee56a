"""Hato on the production broker topology: a three-node RabbitMQ cluster with quorum queues.
A node dies under a steady flow of mail and comes back; the services move to the surviving
nodes by themselves and every accepted mail is delivered exactly once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from services.ingest import replies
from shared.broker import Broker, Delivery, Queue, redact
from shared.errors import Unavailable
from shared.schemas import Recipient, SignJob
from shared.settings import BrokerSettings, StoreSettings
from shared.store import Store
from shared.testing import SERVICES, Stack, free_port
from tests.conftest import MONGODB_URL, provision, unique
from tests.helpers.rabbit_cluster import MAX_MESSAGE_SIZE, RabbitCluster
from tests.helpers.sinks import Sink
from tests.helpers.smtp import make_message, send
from tests.helpers.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RATE = 20  # mails per second, each in an SMTP session of its own
SECONDS = 16
KILL_AT = 5.0  # seconds into the flow
RESTART_AT = 9.0
LOST, BACK = "broker connection lost; reconnecting", "broker reconnected"  # shared.broker's logs


@dataclass
class Sent:
    n: int
    at: float
    code: int | None = None  # None: the session itself failed
    error: str = ""

    @property
    def address(self) -> str:
        return f"m{self.n}@ok.test"


async def test_quorum_dead_letters_wait_until_a_queue_takes_them(cluster: RabbitCluster) -> None:
    """A job handed back from an IP queue while its pool has no queue is not dropped
    (at-least-once dead-lettering): it waits in the IP queue and arrives once the pool's queue
    exists."""
    settings = BrokerSettings(url=cluster.urls, prefix=unique("dl"), queue_type="quorum")
    broker = Broker(settings, name="test")
    await broker.connect()
    try:
        await broker.declare_ip_queue("later", "192.0.2.1", handoff=0.2)
        await broker.forward("deliver.later.ip.192.0.2.1", b"{}\n", {}, "m-held")
        await eventually(lambda: broker.depth("deliver.later.ip.192.0.2.1"), until=lambda d: d == 0)
        await asyncio.sleep(1.5)  # expired and dead-lettered with nowhere to go, and retried
        await broker.declare_pool("later")
        assert await eventually(
            lambda: broker.depth("deliver.later"), until=lambda d: d == 1, timeout=20
        )
    finally:
        await broker.close()


async def test_a_message_over_the_broker_size_limit_fails_and_publishing_goes_on(
    cluster: RabbitCluster,
) -> None:
    """RabbitMQ refuses a message over its max_message_size by closing the channel: the
    publish fails as Unavailable (ingest would answer 451), a new publishing channel takes
    over, and consuming goes on on the same connection."""
    settings = BrokerSettings(url=cluster.urls, prefix=unique("big"), queue_type="quorum")
    broker = Broker(settings, name="test")
    await broker.connect()
    seen: list[str] = []

    async def handler(d: Delivery) -> None:
        seen.append(d.message.message_id)

    try:
        await broker.consume(Queue.SIGN, handler)
        with pytest.raises(Unavailable):
            await broker.publish(sign_job("big"), b"x" * MAX_MESSAGE_SIZE)
        await eventually(lambda: asyncio.sleep(0, broker.is_connected), timeout=10)
        await broker.publish(sign_job("small"), b"x")
        await eventually(lambda: asyncio.sleep(0, seen), until=lambda s: s == ["small"])
        assert broker.url == redact(cluster.nodes[0].url)  # no reconnection
    finally:
        await broker.close()


def sign_job(message_id: str) -> SignJob:
    return SignJob(
        message_id=message_id,
        tenant="acme",
        mail_from="a@shop.test",
        from_domain="shop.test",
        recipients=(Recipient(id="r1", address="b@ok.test"),),
        pool="default",
    )


async def test_a_node_dies_mid_flow_and_every_accepted_mail_arrives_once(
    cluster: RabbitCluster, tmp_path, master_key, dkim_key
) -> None:
    """SIGKILL the node every service is connected to while mail flows, and start it again:
    the services reconnect to the surviving nodes by themselves (mail is accepted again within
    seconds), and every mail that got a 250 reaches the sink exactly once."""
    database = unique("cluster")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    sink = await Sink(host="127.0.0.1").start()
    smtp_port = free_port()
    stack = Stack(
        env={
            "HATO_AMQP_URL": cluster.urls,
            "HATO_AMQP_QUEUE_TYPE": "quorum",
            "HATO_AMQP_PREFIX": unique("cl"),
            "HATO_AMQP_RECONNECT_INTERVAL": "0.5",
            "HATO_AMQP_ERROR_BACKOFF": "0.5",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(free_port()),
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_DISPATCHER_RETRY_DELAYS": "1",
        },
        log_dir=tmp_path,
    )
    first = cluster.nodes[0]
    try:
        await stack.start_all()
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent: list[Sent] = []

        async def one(n: int) -> None:
            record = Sent(n, loop.time() - start)
            sent.append(record)
            try:
                data = make_message(to=record.address, subject=f"mail {n}")
                outcome = await send(smtp_port, rcpts=(record.address,), data=data)
                record.code = outcome.code
            except Exception as exc:  # a session cut off: no answer, so not accepted
                record.error = repr(exc)

        async def crash_and_return() -> None:
            await asyncio.sleep(KILL_AT)
            cluster.kill(first)
            await asyncio.sleep(RESTART_AT - KILL_AT)
            await cluster.restart(first)

        chaos = asyncio.create_task(crash_and_return())
        senders = []
        for n in range(RATE * SECONDS):
            await asyncio.sleep(max(0.0, start + n / RATE - loop.time()))
            senders.append(asyncio.create_task(one(n)))
        await asyncio.gather(*senders)
        await asyncio.wait_for(chaos, 120)
        await cluster.await_members(3)

        accepted = {s.address for s in sent if s.code == 250}
        refused = [s for s in sent if s.code != 250]
        # Refused mail got the temporary failure a client retries, never a permanent one.
        assert all(s.code in (None, replies.NOT_DURABLE.code) for s in refused), refused
        after = [s for s in sent if s.at > KILL_AT + 3 and s.code == 250]
        assert len(after) > RATE * (SECONDS - KILL_AT - 3) * 0.9, "mail not accepted again"

        await eventually(
            lambda: asyncio.sleep(0, {a for r in sink.received for a in r.rcpt_tos}),
            until=lambda got: accepted <= got,
            timeout=90,
        )
        # Whatever could still come twice (a redelivered job) has had its chance: every
        # recipient of an accepted mail is final, and every queue is empty (nothing was
        # dead-lettered either).
        await eventually(
            lambda: store.db.recipients.count_documents({"status": {"$ne": "delivered"}}),
            until=lambda left: left == 0,
            timeout=30,
        )
        await eventually(lambda: _queued(cluster, stack), until=lambda n: n == 0, timeout=30)

        arrivals = Counter(a for r in sink.received for a in r.rcpt_tos)
        twice = {a: c for a, c in arrivals.items() if c > 1}
        assert not twice, f"delivered more than once: {twice}"
        assert accepted <= set(arrivals)
        # A refused mail may still arrive once (its job was confirmed by the broker just as
        # the connection died, and delivered before ingest removed its state); never twice.
        for s in refused:
            assert arrivals[s.address] <= 1

        lost_url = redact(first.url)
        for name in SERVICES:
            events = _log_events(stack.processes[name].log())
            lost = [e for e in events if e.get("event") == LOST]
            back = [e for e in events if e.get("event") == BACK]
            assert lost and lost[0]["url"] == lost_url, (name, lost)
            assert back and back[0]["url"] != lost_url, (name, back)
            async with httpx.AsyncClient(timeout=5) as http:
                ready = await http.get(f"{stack.processes[name].ops_url}/readyz")
            assert ready.status_code == 200, (name, ready.text)
        print(
            f"sent {len(sent)}, accepted {len(accepted)}, refused {len(refused)} "
            f"({Counter(s.code for s in refused)}), delivered {len(arrivals)}"
        )
    finally:
        codes = await stack.stop_all()
        await sink.stop()
        await store.client.drop_database(database)
        await store.close()
    assert codes == dict.fromkeys(SERVICES, 0)


async def _queued(cluster: RabbitCluster, stack: Stack) -> int:
    """Messages in this stack's queues (ready or unacked, the dead queue too), as a running
    node lists them."""
    node = next(n for n in cluster.nodes if n.running)
    out = await cluster.ctl(node, "list_queues", "name", "messages", "--formatter", "json")
    prefix = stack.env["HATO_AMQP_PREFIX"] + "."
    return sum(q["messages"] for q in json.loads(out) if q["name"].startswith(prefix))


def _log_events(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events

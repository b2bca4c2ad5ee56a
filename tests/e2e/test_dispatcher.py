"""The dispatcher as it runs: two instances with their own source IPs on one pool, MX from a
real DNS server on loopback, sinks on 127.0.0.x that see who connects."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest

from shared import schemas
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from shared.verp import Token, TokenKind, Verp
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.dns import DnsServer
from tests.helpers.sinks import Sink
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

HELO = {"127.0.0.2": "a.out.hato.test", "127.0.0.3": "b.out.hato.test"}
DOMAINS = [f"d{i}.test" for i in range(12)]
VERP_KEY = "verp-" + unique("key")


@dataclass
class Net:
    store: Store
    stack: Stack
    http: httpx.AsyncClient
    key: str
    sink: Sink
    backup: Sink
    busy: Sink
    never: Sink
    slow: Sink
    prefix: str


@pytest.fixture(scope="module")
async def net(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Net]:
    database, prefix = unique("disp"), unique("disp")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    await store.directory.upsert_tenant(TENANT, pool="bulk")
    await store.pools.upsert("bulk", [{"ip": ip, "helo": h} for ip, h in HELO.items()])
    _, key = await store.directory.add_api_key(TENANT)

    port = free_port("127.0.0.21")
    sink = await Sink(host="127.0.0.21", port=port).start()
    backup = await Sink(host="127.0.0.22", port=port).start()
    busy = await Sink(
        host="127.0.0.23",
        port=port,
        reply=lambda n: "421 4.7.0 Slow down" if n == 1 else "250 2.0.0 Ok",
    ).start()
    never = await Sink(host="127.0.0.24", port=port, reply=lambda n: "451 4.3.0 Later").start()
    slow = await Sink(host="127.0.0.25", port=port, delay=0.2).start()
    dns_server = await DnsServer().start()
    for domain in DOMAINS:
        dns_server.add(domain, "MX", "10 mx.sink.test.")
    dns_server.add("mx.sink.test", "A", "127.0.0.21")
    dns_server.add("fallback.test", "MX", "10 dead.sink.test.")
    dns_server.add("fallback.test", "MX", "20 backup.sink.test.")
    dns_server.add("dead.sink.test", "A", "127.0.0.29")  # nobody listens there
    dns_server.add("backup.sink.test", "A", "127.0.0.22")
    dns_server.add("null.test", "MX", "0 .")
    dns_server.add("busy.test", "MX", "10 busy.sink.test.")
    dns_server.add("busy.sink.test", "A", "127.0.0.23")
    dns_server.add("never.test", "MX", "10 never.sink.test.")
    dns_server.add("never.sink.test", "A", "127.0.0.24")
    dns_server.add("slow.test", "MX", "10 slow.sink.test.")
    dns_server.add("slow.sink.test", "A", "127.0.0.25")

    http_port = free_port()
    config = tmp_path_factory.mktemp("config") / "dispatcher.toml"
    config.write_text('[throttle."slow.test"]\nconnections = 1\nper_minute = 120\n')
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_AMQP_ERROR_BACKOFF": "0.5",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(free_port()),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_SIGNER_POOLS": "bulk",
            "HATO_DNS_NAMESERVERS": dns_server.address,
            "HATO_DNS_TIMEOUT": "2",
            "HATO_DISPATCHER_MX_PORT": str(port),
            "HATO_DISPATCHER_POOLS": "",
            "HATO_DISPATCHER_RETRY_DELAYS": "1",
            "HATO_DISPATCHER_MAX_AGE": "6",
            "HATO_DISPATCHER_HEARTBEAT_INTERVAL": "0.5",
            "HATO_DISPATCHER_HEARTBEAT_TIMEOUT": "5",
            "HATO_DISPATCHER_HANDOFF_TTL": "2",
            "HATO_DISPATCHER_CONNECT_TIMEOUT": "2",
            "HATO_DISPATCHER_CONFIG_FILE": str(config),
            "HATO_VERP_KEY": VERP_KEY,
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await asyncio.gather(stack.start("ingest"), stack.start("signer"), stack.start("bounce"))
    await stack.start(
        "dispatcher", HATO_DISPATCHER_SOURCE_IPS="127.0.0.2", HATO_DISPATCHER_INSTANCE="disp-a"
    )
    stack.processes["dispatcher-a"] = stack.processes.pop("dispatcher")
    await stack.start(
        "dispatcher", HATO_DISPATCHER_SOURCE_IPS="127.0.0.3", HATO_DISPATCHER_INSTANCE="disp-b"
    )
    stack.processes["dispatcher-b"] = stack.processes.pop("dispatcher")
    # Both instances must have heard each other's heartbeat before affinity is stable.
    await eventually(lambda: store.pools.live_ips(5), until=lambda ips: ips == set(HELO))
    await asyncio.sleep(1.2)  # two refresh intervals of each instance's view
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        yield Net(store, stack, http, key, sink, backup, busy, never, slow, prefix)
    codes = await stack.stop_all()  # SIGTERM: each drains and exits 0
    assert codes and all(code == 0 for code in codes.values()), codes
    for s in (sink, backup, busy, never, slow):
        await s.stop()
    dns_server.stop()
    await store.client.drop_database(database)
    await store.close()


async def send(net: Net, *addresses: str) -> str:
    r = await net.http.post(
        "/v1/messages",
        json={
            "from": "orders@shop.test",
            "to": list(addresses),
            "subject": unique("s"),
            "text": "hello",
        },
        headers={"Authorization": f"Bearer {net.key}"},
    )
    assert r.status_code == 202, r.text
    return r.json()["id"]


async def final(net: Net, message_id: str, status: str, timeout: float = 30) -> list[dict]:
    return await eventually(
        lambda: net.store.messages.recipients(message_id),
        until=lambda rs: bool(rs) and all(r["status"] == status for r in rs),
        timeout=timeout,
    )


async def test_both_instances_deliver_and_each_domain_keeps_its_ip(net: Net) -> None:
    """Mail to twelve domains, twice each: every domain always arrives from the same source
    IP, with that IP's EHLO name; both IPs are used."""
    ids = [await send(net, f"u{n}@{d}") for n in range(2) for d in DOMAINS]
    for message_id in ids:
        await final(net, message_id, "delivered")
    ips_by_domain: dict[str, set[str]] = {}
    for r in net.sink.received:
        domain = r.rcpt_tos[0].rpartition("@")[2]
        ips_by_domain.setdefault(domain, set()).add(r.peer)
        assert r.helo == HELO[r.peer]
    assert all(len(ips) == 1 for ips in ips_by_domain.values()), ips_by_domain
    assert {ip for ips in ips_by_domain.values() for ip in ips} == set(HELO)
    rcpt = (await net.store.messages.recipients(ids[0]))[0]
    assert rcpt["history"][-1]["source_ip"] in HELO


async def test_each_recipient_gets_its_own_signed_return_path(net: Net) -> None:
    """Per-recipient VERP on the sending domain's bounce subdomain: the envelope sender names
    the recipient, dated today, and does not parse under another key."""
    message_id = await send(net, "v1@d5.test", "v2@d5.test")
    rcpts = await final(net, message_id, "delivered")
    verp = Verp(VERP_KEY.encode())
    today = datetime.now(UTC).date()
    seen = {
        r.rcpt_tos[0]: r.mail_from
        for r in net.sink.received
        if r.rcpt_tos[0] in ("v1@d5.test", "v2@d5.test")
    }
    for rcpt in rcpts:
        sender = seen[rcpt["address"]]
        assert sender.endswith("@bounces.shop.test")
        assert verp.parse(sender) == Token(TokenKind.RECIPIENT, rcpt["_id"], today)
    assert Verp(b"another key").parse(seen["v1@d5.test"]) is None


async def test_mx_fallback_null_mx_and_back_off(net: Net) -> None:
    """The lower-preference MX takes over when the first is unreachable; a null MX bounces
    at once (556 5.1.10); a 421 defers and the retry delivers."""
    fallback = await send(net, "x@fallback.test")
    nullmx = await send(net, "x@null.test")
    busy = await send(net, "x@busy.test")
    assert (await final(net, fallback, "delivered"))[0]["destination"].startswith(
        "backup.sink.test"
    )
    rcpt = (await final(net, nullmx, "bounced"))[0]
    assert (rcpt["reply"]["code"], rcpt["reply"]["enhanced"]) == (556, "5.1.10")
    rcpt = (await final(net, busy, "delivered"))[0]
    assert [h["reply"]["code"] for h in rcpt["history"]] == [421, 250]


async def test_deferred_mail_expires_after_the_maximum_age(net: Net) -> None:
    """Mail a server keeps deferring is retried until the maximum age, then expires with the
    server's last 451."""
    message_id = await send(net, "x@never.test")
    rcpt = (await final(net, message_id, "expired", timeout=40))[0]
    assert rcpt["reply"]["code"] == 451 and rcpt["attempts"] >= 2


async def test_throttle_limits_are_observed_at_the_sink(net: Net) -> None:
    """slow.test allows one transaction at a time and 120 a minute: four messages arrive one
    after another, at least half a second apart."""
    ids = [await send(net, f"t{n}@slow.test") for n in range(4)]
    for message_id in ids:
        await final(net, message_id, "delivered")
    times = sorted(r.at for r in net.slow.received)
    assert net.slow.max_active == 1
    assert times[-1] - times[0] >= 1.3  # three gaps of >= 0.5 s, less scheduling jitter


async def test_a_redelivered_job_sends_nothing_twice(net: Net) -> None:
    """A delivery job published again after its recipient was delivered sends nothing: the
    recipient's stored state, not the queue, decides."""
    import aio_pika

    message_id = await send(net, "once@d0.test")
    await final(net, message_id, "delivered")
    before = sum("once@d0.test" in r.rcpt_tos for r in net.sink.received)
    rcpt = (await net.store.messages.recipients(message_id))[0]
    job = schemas.DeliveryJob(
        message_id=message_id,
        tenant=TENANT,
        mail_from="o@shop.test",
        domain="d0.test",
        pool="bulk",
        recipients=(schemas.Recipient(id=rcpt["_id"], address="once@d0.test"),),
        created_at=schemas.utcnow(),
    )
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{net.prefix}.deliver")
        await exchange.publish(
            aio_pika.Message(schemas.encode(job, b"Subject: x\r\n\r\nx\r\n")), routing_key="bulk"
        )
    await asyncio.sleep(1.5)
    assert sum("once@d0.test" in r.rcpt_tos for r in net.sink.received) == before == 1


async def test_killing_an_instance_moves_its_domains_to_the_other(net: Net) -> None:
    """SIGKILL one dispatcher: its domains go to the other IP once its heartbeats stop, and
    every message is delivered."""
    victim = net.stack.processes["dispatcher-b"]
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    ids = [await send(net, f"after@{d}") for d in DOMAINS]
    for message_id in ids:
        await final(net, message_id, "delivered", timeout=40)
    late = [r for r in net.sink.received if r.rcpt_tos[0].startswith("after@")]
    assert len(late) == len(DOMAINS)
    assert {r.peer for r in late} == {"127.0.0.2"}
    del net.stack.processes["dispatcher-b"]

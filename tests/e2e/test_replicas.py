"""Two replicas of the bounce and of the signer service, as real processes: webhook events are
POSTed once per endpoint, each DKIM key step is announced once, the events purge runs on one
replica, and when a lease holder is killed (SIGKILL) the other replica takes its work over."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared import dkim
from shared.ids import new_id
from shared.ops import HttpServer
from shared.secrets import SecretBox
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import ServiceProcess, Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.dns import DnsServer
from tests.helpers.sinks import Sink
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

LEASE_TTL = 2.0  # seconds: a killed holder's work moves within about this
TAKEOVER_BOUND = 15.0  # seconds a take-over may take in these tests, all included
# What each endpoint subscribed to (empty: every event of the tenant).
SUBSCRIPTIONS = ([], ["delivered"], ["accepted", "delivered"])


class Receiver:
    """Three tenant endpoints on one loopback server, counting the events of each endpoint's
    POSTs that were answered. It answers a little slowly, so that the passes of two replicas
    overlap; an endpoint can be held closed (its POSTs wait until it opens)."""

    def __init__(self) -> None:
        self.seen: dict[int, Counter[str]] = {n: Counter() for n in range(len(SUBSCRIPTIONS))}
        self.open: dict[int, asyncio.Event] = {n: asyncio.Event() for n in self.seen}
        for gate in self.open.values():
            gate.set()
        self.waiting: Counter[int] = Counter()
        self.unanswered = 0  # POSTs whose sender was gone when the endpoint answered
        app = Starlette(routes=[Route("/hook/{n:int}", self.hook, methods=["POST"])])
        self.server = HttpServer(app, host="127.0.0.1", port=0)

    async def hook(self, request: Request) -> Response:
        n = request.path_params["n"]
        body = await request.json()
        self.waiting[n] += 1
        try:
            await self.open[n].wait()
        finally:
            self.waiting[n] -= 1
        await asyncio.sleep(0.05)
        if await request.is_disconnected():
            self.unanswered += 1  # the sender died: for it, this POST never succeeded
            return Response(status_code=503)
        for event in body["events"]:
            self.seen[n][event["id"]] += 1
        return Response(status_code=204)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook/{n}"


@dataclass
class Pair:
    store: Store
    stack: Stack
    http: httpx.AsyncClient
    key: str
    dns: DnsServer
    master_key: str
    receiver: Receiver
    hooks: list[str] = field(default_factory=list)

    def as_tenant(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def holding(self, holder: str) -> str:
        """The name in ``stack.processes`` of the replica a lease holder is (by its pid), or
        ``"gone"`` for a process killed since."""
        pid = int(holder.split("/")[-2])
        names = (n for n, p in self.stack.processes.items() if p.process.pid == pid)
        return next(names, "gone")

    async def holder(self, lease: str) -> str | None:
        """The process holding a lease now, by its name in ``stack.processes``."""
        latest = await self.store.db.leases.find_one({"name": lease}, sort=[("version", -1)])
        if latest is None or not latest["holder"] or latest["expires_at"] < datetime.now(UTC):
            return None
        return self.holding(latest["holder"])


@pytest.fixture(scope="module")
async def pair(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Pair]:
    database, prefix = unique("repl"), unique("repl")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    _, key = await store.directory.add_api_key(TENANT)
    sink = await Sink(host="127.0.0.2").start()
    dns_server = await DnsServer().start()
    receiver = Receiver()
    await receiver.server.start()
    http_port = free_port()
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(free_port()),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_DNS_NAMESERVERS": dns_server.address,
            "HATO_DNS_TIMEOUT": "2",
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_SIGNER_KEY_CACHE_SECONDS": "0",
            "HATO_SIGNER_ROTATION_INTERVAL": "0.2",
            "HATO_SIGNER_ROTATE_AFTER_DAYS": "30",
            "HATO_SIGNER_LEASE_TTL": str(LEASE_TTL),
            "HATO_BOUNCE_WEBHOOK_INTERVAL": "0.1",
            "HATO_BOUNCE_PURGE_INTERVAL": "0.3",
            "HATO_BOUNCE_LEASE_TTL": str(LEASE_TTL),
            "HATO_EGRESS_ALLOW": "127.0.0.0/8",  # the webhook receiver is on loopback
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await asyncio.gather(stack.start("ingest"), stack.start("dispatcher"))
    for name in ("signer", "bounce"):
        for replica in ("a", "b"):
            await stack.start(name)
            stack.processes[f"{name}-{replica}"] = stack.processes.pop(name)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        yield Pair(store, stack, http, key, dns_server, master_key, receiver)
    codes = await stack.stop_all()  # the replicas still alive drain and exit 0
    assert codes and all(code == 0 for code in codes.values()), codes
    await receiver.server.stop()
    await sink.stop()
    dns_server.stop()
    await store.client.drop_database(database)
    await store.close()


async def subscribe(pair: Pair) -> None:
    """The endpoints, once: created through the API, and the webhook queue bound to them."""
    if pair.hooks:
        return
    for n, events in enumerate(SUBSCRIPTIONS):
        hook = {"url": pair.receiver.url(n), "events": events}
        r = await pair.http.post("/v1/webhooks", json=hook, headers=pair.as_tenant())
        assert r.status_code == 201, r.text
        pair.hooks.append(r.json()["id"])
    await eventually(pair.store.webhooks.bound_keys, until=lambda keys: f"{TENANT}.*" in keys)


async def send(pair: Pair, count: int) -> list[str]:
    """``count`` messages through the HTTP API; their ids once each is delivered."""

    async def one() -> str:
        mail = {"from": "orders@shop.test", "to": [f"{unique('r')}@ok.test"], "text": "Hi."}
        r = await pair.http.post(
            "/v1/messages", json={**mail, "subject": "Order"}, headers=pair.as_tenant()
        )
        assert r.status_code == 202, r.text
        return r.json()["id"]

    ids = list(await asyncio.gather(*(one() for _ in range(count))))
    for message_id in ids:
        await eventually(
            lambda m=message_id: pair.store.events.of_message(m),
            until=lambda es: "delivered" in {e["type"] for e in es},
        )
    return ids


async def expected(pair: Pair, message_ids: list[str]) -> dict[int, set[str]]:
    """The event ids each endpoint subscribed to, of these messages."""
    events = [e for m in message_ids for e in await pair.store.events.of_message(m)]
    return {
        n: {e["_id"] for e in events if not types or e["type"] in types}
        for n, types in enumerate(SUBSCRIPTIONS)
    }


async def all_posted(pair: Pair, want: dict[int, set[str]], timeout: float = 60) -> None:
    await eventually(
        lambda: asyncio.sleep(0, pair.receiver.seen),
        until=lambda seen: all(ids <= set(seen[n]) for n, ids in want.items()),
        timeout=timeout,
    )


async def kill(pair: Pair, name: str) -> ServiceProcess:
    victim = pair.stack.processes.pop(name)
    victim.process.send_signal(signal.SIGKILL)
    await victim.process.wait()
    return victim


async def test_two_bounce_replicas_post_every_subscribed_event_once_per_endpoint(
    pair: Pair,
) -> None:
    """Both bounce replicas send webhooks: every event an endpoint subscribed to reaches it in
    exactly one POST, and none it did not subscribe to."""
    await subscribe(pair)
    messages = await send(pair, 30)
    want = await expected(pair, messages)
    assert len(want[0]) == 3 * len(messages)  # accepted, signed, delivered
    await all_posted(pair, want)
    await asyncio.sleep(1.0)  # ten passes of each replica: a duplicate would show by now
    for n, ids in want.items():
        seen = pair.receiver.seen[n]
        mine = {i: c for i, c in seen.items() if i in want[0]}
        assert set(mine) == ids, f"endpoint {n}"
        assert set(mine.values()) == {1}, f"endpoint {n}: {Counter(mine.values())}"


async def test_an_endpoint_moves_to_the_other_bounce_when_its_sender_is_killed(
    pair: Pair,
) -> None:
    """SIGKILL the bounce replica in the middle of a POST to an endpoint (it holds that
    endpoint's lease): the other replica takes the endpoint over once the lease expires and
    sends what was not answered, so every subscribed event of the new mail is received
    exactly once, within the bound. (The endpoints hold every POST until after the kill, so
    none of the killed replica's is answered: one answered but not yet recorded as sent
    would be sent again, as webhooks are at least once.)"""
    await subscribe(pair)
    receiver = pair.receiver
    for gate in receiver.open.values():
        gate.clear()
    messages = asyncio.create_task(send(pair, 5))
    await eventually(lambda: asyncio.sleep(0, receiver.waiting[0]), until=bool)
    victim = await eventually(lambda: pair.holder(f"webhook:{pair.hooks[0]}"), until=bool)
    survivor = "bounce-b" if victim == "bounce-a" else "bounce-a"
    loop = asyncio.get_running_loop()
    await kill(pair, victim)
    killed_at = loop.time()
    await asyncio.sleep(0.2)  # the receiver sees the connection close
    for gate in receiver.open.values():
        gate.set()

    want = await expected(pair, await messages)
    await all_posted(pair, want, timeout=TAKEOVER_BOUND)
    assert loop.time() - killed_at < TAKEOVER_BOUND
    assert receiver.unanswered >= 1  # the killed replica's POST: sent again by the other
    await asyncio.sleep(0.5)
    for n, ids in want.items():
        assert {receiver.seen[n][i] for i in ids} == {1}, f"endpoint {n}"
    assert await pair.holder(f"webhook:{pair.hooks[0]}") in {survivor, None}


async def test_the_events_purge_runs_on_one_bounce_and_moves_when_it_is_killed(
    pair: Pair,
) -> None:
    """On FerretDB (no TTL index) expired events are purged by the replica holding the purge
    lease; a new replica joins without taking it, and when the holder is killed the new one
    takes over and purges within the bound."""
    if pair.store.events.ttl_index:
        pytest.skip("the server has TTL indexes: no purge job")
    await pair.stack.start("bounce")
    pair.stack.processes["bounce-c"] = pair.stack.processes.pop("bounce")
    holder = await eventually(
        lambda: pair.holder("events-purge"), until=lambda h: h in pair.stack.processes
    )
    await asyncio.sleep(LEASE_TTL)  # bounce-c's lease keeper tried three times
    assert await pair.holder("events-purge") == holder != "bounce-c"
    loop = asyncio.get_running_loop()
    await kill(pair, holder)
    killed_at = loop.time()

    stale = {
        "_id": new_id(),
        "type": "accepted",
        "tenant": TENANT,
        "at": datetime.now(UTC) - timedelta(days=400),  # past the retention
        "detail": {},
    }
    await pair.store.db.events.insert_one(stale)
    await eventually(
        lambda: pair.store.db.events.find_one({"_id": stale["_id"]}),
        until=lambda doc: doc is None,
        timeout=TAKEOVER_BOUND,
    )
    assert loop.time() - killed_at < TAKEOVER_BOUND
    assert await pair.holder("events-purge") == "bounce-c"


async def old_domain(pair: Pair, domain: str) -> None:
    """A domain of the tenant whose only key has signed for 60 days (past the 30 of
    ``HATO_SIGNER_ROTATE_AFTER_DAYS``): the rotation pass starts a rotation for it."""
    key = dkim.to_document(dkim.generate_rsa(domain, "old"), SecretBox(pair.master_key))
    key["created_at"] = key["activated_at"] = datetime.now(UTC) - timedelta(days=60)
    await pair.store.directory.upsert_domain(domain, tenant=TENANT, verified=True)
    await pair.store.directory.add_dkim_key(domain, key)


async def steps(pair: Pair, domain: str, type_: str) -> list[dict]:
    return await pair.store.db.events.find({"type": type_, "detail.domain": domain}).to_list()


async def test_two_signer_replicas_announce_each_key_step_once(pair: Pair) -> None:
    """Both signers schedule the rotation pass every 0.2 s, but it runs on the lease holder
    only: an old key gets one pending successor (one dkim_key_pending event), and once its
    record is in DNS one activation and one retirement are announced."""
    await old_domain(pair, "rot.test")
    pending = (await eventually(lambda: steps(pair, "rot.test", "dkim_key_pending")))[0]
    await asyncio.sleep(1.0)  # five passes of each replica
    assert len(await steps(pair, "rot.test", "dkim_key_pending")) == 1
    keys = (await pair.store.directory.domain("rot.test"))["dkim"]
    assert sorted(dkim.status(k) for k in keys) == ["active", "pending"]

    pair.dns.publish(pending["detail"]["record_name"], pending["detail"]["record_value"])
    await eventually(lambda: steps(pair, "rot.test", "dkim_key_activated"))
    await asyncio.sleep(1.0)
    activated = await steps(pair, "rot.test", "dkim_key_activated")
    retired = await steps(pair, "rot.test", "dkim_key_retired")
    assert [e["detail"]["selector"] for e in activated] == [pending["detail"]["selector"]]
    assert [e["detail"]["selector"] for e in retired] == ["old"]
    keys = (await pair.store.directory.domain("rot.test"))["dkim"]
    assert {k["selector"]: dkim.status(k) for k in keys} == {
        "old": "retired",
        pending["detail"]["selector"]: "active",
    }
    assert await pair.holder("dkim-rotation") in {"signer-a", "signer-b"}


async def test_the_rotation_moves_to_the_other_signer_when_the_holder_is_killed(
    pair: Pair,
) -> None:
    """SIGKILL the signer holding the rotation lease: the other signer takes the lease when
    it expires and announces the next key step, once, within the bound."""
    victim = await eventually(lambda: pair.holder("dkim-rotation"), until=bool)
    survivor = "signer-b" if victim == "signer-a" else "signer-a"
    loop = asyncio.get_running_loop()
    await kill(pair, victim)
    killed_at = loop.time()
    await old_domain(pair, "rot2.test")
    await eventually(lambda: steps(pair, "rot2.test", "dkim_key_pending"), timeout=TAKEOVER_BOUND)
    took = loop.time() - killed_at
    assert took < TAKEOVER_BOUND
    await asyncio.sleep(1.0)
    assert len(await steps(pair, "rot2.test", "dkim_key_pending")) == 1
    assert await pair.holder("dkim-rotation") == survivor

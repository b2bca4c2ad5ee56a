"""Operators in control, through the real stack: reply rules that react to what receivers
answer (a 421 "too many messages" pauses the source IP towards that receiver and the pause ends
by itself; a 550 "IP listed" moves the mail to another IP of the pool), and ``hato queue``
(list, suspend and resume across a dispatcher restart, purge, move to another pool)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest

from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.cli import run_hato
from tests.helpers.sinks import Sink
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

OPERATOR = "op-" + unique("token")
BULK = {"127.0.0.2": "a.out.hato.test", "127.0.0.3": "b.out.hato.test"}
ALT = {"127.0.0.4": "c.out.hato.test"}
TOO_MANY = "421 4.7.0 Too many messages from your IP, slow down"
LISTED = "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org: IP listed"
RULES = """
[[rule]]
name = "test-too-many"
action = "pause"
codes = [421]
enhanced = "4.7."
text = "too many messages"
duration = 3

[[rule]]
name = "ip-listed"            # the built-in rule of this name, with a shorter life
action = "move_ip"
text = "ip listed"
duration = 30
"""


@dataclass
class Queue:
    store: Store
    stack: Stack
    http: httpx.AsyncClient
    key: str
    sink: Sink
    busy: Sink
    listed: Sink
    env: dict[str, str]
    blocked: list[str]
    rules: Path

    async def hato(self, *args: str, code: int = 0) -> str:
        got, out, err = await run_hato(self.env, *args)
        assert got == code, (got, out, err)
        return out

    async def send(self, *addresses: str) -> str:
        r = await self.http.post(
            "/v1/messages",
            json={
                "from": "orders@shop.test",
                "to": list(addresses),
                "subject": unique("s"),
                "text": "hello",
            },
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert r.status_code == 202, r.text
        return r.json()["id"]

    async def final(self, message_id: str, status: str, timeout: float = 30) -> list[dict]:
        return await eventually(
            lambda: self.store.messages.recipients(message_id),
            until=lambda rs: bool(rs) and all(r["status"] == status for r in rs),
            timeout=timeout,
        )

    async def events(self, type_: str, **detail: str) -> list[dict]:
        query = {"type": type_, **{f"detail.{k}": v for k, v in detail.items()}}
        return await self.store.db.events.find(query).to_list()

    async def restart_dispatchers(self) -> None:
        for name in ("dispatcher-a", "dispatcher-b"):
            assert await self.stack.processes[name].terminate() == 0
        await start_dispatchers(self.stack)


async def start_dispatchers(stack: Stack) -> None:
    await stack.start(
        "dispatcher",
        HATO_DISPATCHER_SOURCE_IPS="127.0.0.2,127.0.0.4",
        HATO_DISPATCHER_INSTANCE="disp-a",
    )
    stack.processes["dispatcher-a"] = stack.processes.pop("dispatcher")
    await stack.start(
        "dispatcher", HATO_DISPATCHER_SOURCE_IPS="127.0.0.3", HATO_DISPATCHER_INSTANCE="disp-b"
    )
    stack.processes["dispatcher-b"] = stack.processes.pop("dispatcher")


@pytest.fixture(scope="module")
async def q(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Queue]:
    database, prefix = unique("queue"), unique("queue")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    await store.directory.upsert_tenant(TENANT, pool="bulk")
    await store.pools.upsert("bulk", [{"ip": ip, "helo": h} for ip, h in BULK.items()])
    await store.pools.upsert("alt", [{"ip": ip, "helo": h} for ip, h in ALT.items()])
    _, key = await store.directory.add_api_key(TENANT)

    sink = await Sink(host="127.0.0.21").start()
    busy = await Sink(
        host="127.0.0.23", reply=lambda n: TOO_MANY if n == 1 else "250 2.0.0 Ok"
    ).start()
    blocked: list[str] = []  # the first IP that comes is "listed"

    def block_first(peer: str) -> str | None:
        blocked[:] = blocked or [peer]
        return LISTED if peer == blocked[0] else None

    listed = await Sink(host="127.0.0.22", peer_reply=block_first).start()
    rules = tmp_path_factory.mktemp("rules") / "rules.toml"
    rules.write_text(RULES)
    http_port = free_port()
    env = {
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": prefix,
        "HATO_MONGODB_URL": MONGODB_URL,
        "HATO_MONGODB_DATABASE": database,
    }
    stack = Stack(
        env={
            **env,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(free_port()),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_INGEST_ADMIN_TOKEN": OPERATOR,
            "HATO_SIGNER_POOLS": "bulk,alt",
            "HATO_DISPATCHER_ROUTES": (
                f"busy.test={busy.address},listed.test={listed.address},*={sink.address}"
            ),
            "HATO_DISPATCHER_POOLS": "",
            "HATO_DISPATCHER_RETRY_DELAYS": "1",
            "HATO_DISPATCHER_HOLD_DELAY": "30",  # resumes and expiries send at once
            "HATO_DISPATCHER_MAX_AGE": "600",
            "HATO_DISPATCHER_HEARTBEAT_INTERVAL": "0.5",
            "HATO_DISPATCHER_HEARTBEAT_TIMEOUT": "5",
            "HATO_DISPATCHER_CONNECT_TIMEOUT": "2",
            "HATO_DISPATCHER_RULES_FILE": str(rules),
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await asyncio.gather(stack.start("ingest"), stack.start("signer"), stack.start("bounce"))
    await start_dispatchers(stack)
    every_ip = {*BULK, *ALT}
    await eventually(lambda: store.pools.live_ips(5), until=lambda ips: ips == every_ip)
    await asyncio.sleep(1.2)  # two refresh intervals of each instance's view
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        yield Queue(store, stack, http, key, sink, busy, listed, env, blocked, rules)
    codes = await stack.stop_all()
    assert codes and all(code == 0 for code in codes.values()), codes
    for s in (sink, busy, listed):
        await s.stop()
    await store.client.drop_database(database)
    await store.close()


async def test_a_421_too_many_pauses_the_pair_and_the_pause_ends_by_itself(q: Queue) -> None:
    """A receiver's `421 4.7.0 too many messages` triggers the pause rule for (source IP,
    receiver) and the built-in slow_down rule caps its pace: rule_triggered events, the mail
    waits without burning an attempt, the pause ends by itself (rule_ended) and the mail is
    delivered."""
    message_id = await q.send("a@busy.test")
    triggered = await eventually(
        lambda: q.events("rule_triggered", rule="test-too-many"), until=bool
    )
    event = triggered[0]
    assert event["detail"]["action"] == "pause"
    assert event["detail"]["provider"] == "busy.test"
    assert event["reply"]["code"] == 421
    assert event["detail"]["source_ip"] in BULK
    # The built-in slow_down rule matched the same reply: the pair's pace is capped too.
    status = json.loads(await q.hato("queue", "list", "--json"))
    [slow] = [c for c in status["controls"] if c["action"] == "slow"]
    assert slow["origin"] == "rule:sending-too-fast" and slow["factor"] == 0.5
    assert slow["provider"] == "busy.test" and slow["source_ip"] == event["detail"]["source_ip"]
    ended = await eventually(
        lambda: q.events("rule_ended", rule="test-too-many"), until=bool, timeout=30
    )
    assert ended[0]["detail"]["source_ip"] == event["detail"]["source_ip"]
    [recipient] = await q.final(message_id, "delivered")
    assert recipient["attempts"] == 2  # the 421, then the delivery: waiting counted nothing
    assert [h["status"] for h in recipient["history"]] == ["deferred", "delivered"]
    assert await q.store.db.queue_controls.count_documents({"origin": "rule:test-too-many"}) == 0


async def test_an_ip_listed_refusal_moves_the_mail_to_another_ip_of_the_pool(q: Queue) -> None:
    """`550 5.7.1 ... IP listed` from the IP a destination keeps is the IP's refusal, not
    the mailbox's: the recipient is deferred, not bounced, the rule keeps that IP away from
    the receiver, and the mail goes out from the pool's other IP."""
    message_id = await q.send("b@listed.test")
    [recipient] = await q.final(message_id, "delivered")
    first = q.blocked[0]
    [arrived] = [r for r in q.listed.received if "b@listed.test" in r.rcpt_tos]
    assert arrived.peer != first and arrived.peer in BULK
    [event] = await q.events("rule_triggered", rule="ip-listed")
    assert event["detail"]["action"] == "move_ip" and event["detail"]["source_ip"] == first
    assert [h["status"] for h in recipient["history"]] == ["deferred", "delivered"]
    status = json.loads(await q.hato("queue", "list", "--json"))
    [avoid] = [c for c in status["controls"] if c["action"] == "avoid"]
    assert avoid["source_ip"] == first and avoid["origin"] == "rule:ip-listed"
    assert avoid["provider"] == "listed.test" and avoid["expires_at"]


async def test_a_suspended_domain_waits_across_a_restart_until_resumed(q: Queue) -> None:
    """Suspending a destination domain holds its mail: listed as waiting (suspended) with its
    attempts not growing, still so after both dispatchers restart; resuming sends it."""
    out = await q.hato(
        "queue", "suspend", "--domain", "held.test", "--reason", "incident 42", "--json"
    )
    control = json.loads(out)
    assert control["action"] == "suspend" and control["domain"] == "held.test"
    message_id = await q.send("c@held.test", "d@held.test")
    docs = await eventually(
        lambda: q.store.messages.recipient_docs(message_id),
        until=lambda rs: len(rs) == 2 and all(r.get("held") for r in rs),
    )
    assert {r["status"] for r in docs} == {"queued"} and all(r["attempts"] == 0 for r in docs)
    status = json.loads(await q.hato("queue", "list", "--domain", "held.test", "--json"))
    assert status["waiting"] == 2 and status["attempts"] == 0
    assert status["by_domain"] == {"held.test": 2}
    assert status["by_reason"] == {"suspended: domain held.test": 2}
    assert status["by_tenant"] == {TENANT: 2} and status["oldest_seconds"] >= 0
    await q.restart_dispatchers()
    # The restarted dispatchers look at the held jobs now: still suspended, they wait on.
    assert json.loads(await q.hato("queue", "retry", "--domain", "held.test", "--json")) == {
        "filter": {"domain": "held.test"},
        "waiting": 2,
    }
    ip = docs[0]["source_ip"]  # where it would have gone: listed and retried by it too
    by_ip = json.loads(await q.hato("queue", "list", "--ip", ip, "--json"))
    assert by_ip["by_source_ip"] == {ip: by_ip["waiting"]} and by_ip["waiting"] >= 1
    assert json.loads(await q.hato("queue", "retry", "--ip", ip, "--json"))["waiting"] >= 1
    await asyncio.sleep(2)
    docs = await q.store.messages.recipient_docs(message_id)
    assert all(r["status"] == "queued" and r["attempts"] == 0 for r in docs)
    assert not [r for r in q.sink.received if "c@held.test" in r.rcpt_tos]
    resumed = json.loads(await q.hato("queue", "resume", "--domain", "held.test", "--json"))
    assert resumed["id"] == control["id"]
    recipients = await q.final(message_id, "delivered")
    assert all(r["attempts"] == 1 for r in recipients)
    assert await q.events("queue_suspended", domain="held.test")
    assert await q.events("queue_resumed", domain="held.test")


async def test_purge_bounces_what_matches_with_the_reason(q: Queue) -> None:
    """`hato queue purge` ends every waiting recipient that matches in `bounced` with the
    operator's reason and a bounced event, published to the tenant's event queues; nothing
    is sent to them afterwards."""
    await q.hato("queue", "suspend", "--domain", "bought.test")
    message_id = await q.send("e@bought.test", "f@bought.test")
    await eventually(
        lambda: q.store.messages.recipient_docs(message_id),
        until=lambda rs: len(rs) == 2 and all(r.get("held") for r in rs),
    )
    # What a platform team's queue bound to the tenant's bounces receives.
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    watch = await channel.declare_queue(exclusive=True)
    await watch.bind(f"{q.env['HATO_AMQP_PREFIX']}.events", routing_key=f"{TENANT}.bounced")
    out = await q.hato(
        "queue", "purge", "--domain", "bought.test", "--reason", "purchased list", "--json"
    )
    assert json.loads(out)["purged"] == 2
    published = []
    async with asyncio.timeout(10):
        while len(published) < 2:
            message = await watch.get(fail=False, no_ack=True)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            published.append(json.loads(message.body))
    await connection.close()
    assert {e["address"] for e in published} == {"e@bought.test", "f@bought.test"}
    assert all("purchased list" in e["reply"]["text"] for e in published)
    recipients = await q.final(message_id, "bounced")
    for r in recipients:
        assert "purchased list" in r["reply"]["text"] and r["reply"]["code"] == 550
        assert r["history"][-1]["status"] == "bounced"
    events = await q.events("bounced", operator_reason="purchased list")
    assert len(events) == 2 and all(e["message_id"] == message_id for e in events)
    assert (await q.events("queue_purged", domain="bought.test"))[0]["detail"]["purged"] == 2
    await q.hato("queue", "resume", "--domain", "bought.test")
    await asyncio.sleep(2)  # the held jobs come back now: they find their recipients final
    assert not [r for r in q.sink.received if "e@bought.test" in r.rcpt_tos]
    view = await q.http.get(
        f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {q.key}"}
    )
    assert view.json()["status"] == "bounced"


async def test_moving_a_tenant_sends_its_mail_from_the_new_pool(q: Queue) -> None:
    """`hato queue move --tenant` sends the tenant's next mail from the other pool's IP;
    `--clear` brings it back."""
    out = await q.hato("queue", "move", "--tenant", TENANT, "--pool", "alt", "--json")
    assert json.loads(out)["pool"] == "alt"
    await asyncio.sleep(1)  # announced at once; the heartbeat reads it within 0.5 s too
    message_id = await q.send("g@moved.test")
    await q.final(message_id, "delivered")
    [arrived] = [r for r in q.sink.received if "g@moved.test" in r.rcpt_tos]
    assert arrived.peer == "127.0.0.4" and arrived.helo == ALT["127.0.0.4"]
    assert await q.events("queue_moved", tenant=TENANT)
    await q.hato("queue", "move", "--tenant", TENANT, "--clear")
    await asyncio.sleep(1)
    message_id = await q.send("h@moved.test")
    await q.final(message_id, "delivered")
    [arrived] = [r for r in q.sink.received if "h@moved.test" in r.rcpt_tos]
    assert arrived.peer in BULK


async def test_queue_commands_refuse_what_they_cannot_do(q: Queue) -> None:
    """Bad filters exit 2 (usage), unknown tenants and suspensions 3 (not found)."""
    await q.hato("queue", "suspend", code=2)
    await q.hato("queue", "suspend", "--ip", "not-an-ip", code=2)
    await q.hato("queue", "purge", "--reason", "x", code=2)
    await q.hato("queue", "move", "--tenant", TENANT, "--pool", "nope", code=2)
    await q.hato("queue", "suspend", "--domain", "x.test", "--expires", "soon", code=2)
    await q.hato("queue", "resume", "--domain", "never-suspended.test", code=3)
    await q.hato("queue", "list", "--tenant", "nobody", code=3)
    await q.hato("queue", "lift", "suspend:nothing", code=3)


async def test_the_admin_api_suspends_lists_retries_and_resumes(q: Queue) -> None:
    """The same commands over /admin/v1/queue: a suspension is listed with what it holds, a
    retry keeps it held, a resume delivers; bad filters are problem documents, not 500s."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    r = await q.http.post(
        "/admin/v1/queue/suspensions",
        json={"tenant": TENANT, "domain": "api.test", "reason": "checking"},
        headers=op,
    )
    assert r.status_code == 201, r.text
    assert r.json()["action"] == "suspend" and r.json()["reason"] == "checking"
    message_id = await q.send("i@api.test")
    await eventually(
        lambda: q.store.messages.recipient_docs(message_id),
        until=lambda rs: bool(rs) and all(d.get("held") for d in rs),
    )
    r = await q.http.get("/admin/v1/queue", params={"domain": "api.test"}, headers=op)
    assert r.status_code == 200 and r.json()["waiting"] == 1
    assert r.json()["by_reason"] == {f"suspended: tenant {TENANT}, domain api.test": 1}
    r = await q.http.post("/admin/v1/queue/retry", json={"domain": "api.test"}, headers=op)
    assert r.status_code == 200 and r.json()["waiting"] == 1
    await asyncio.sleep(1.5)
    [doc] = await q.store.messages.recipient_docs(message_id)
    assert doc["status"] == "queued" and doc["attempts"] == 0  # still suspended
    for method, path, kwargs, status in (
        ("post", "/admin/v1/queue/purge", {"json": {"reason": "x"}}, 422),
        ("post", "/admin/v1/queue/suspensions", {"json": {"source_ip": "nope"}}, 422),
        ("post", "/admin/v1/queue/suspensions", {"json": {"domain": "a.test", "x": 1}}, 400),
        ("post", "/admin/v1/queue/moves", {"json": {"tenant": TENANT, "pool": "nope"}}, 422),
        ("get", "/admin/v1/queue", {"params": {"tenant": "nobody"}}, 404),
        ("delete", "/admin/v1/queue/suspensions", {"params": {"domain": "api.test"}}, 404),
        ("delete", "/admin/v1/queue/controls/suspend:none", {}, 404),
    ):
        r = await getattr(q.http, method)(path, headers=op, **kwargs)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await q.http.delete(
        "/admin/v1/queue/suspensions", params={"tenant": TENANT, "domain": "api.test"}, headers=op
    )
    assert r.status_code == 200, r.text
    [recipient] = await q.final(message_id, "delivered")
    assert recipient["attempts"] == 1


async def test_a_suspension_with_an_expiry_ends_by_itself(q: Queue) -> None:
    """A suspension given an expiry lifts itself: the mail it held is delivered without a
    resume."""
    await q.hato("queue", "suspend", "--domain", "brief.test", "--expires", "3")
    message_id = await q.send("j@brief.test")
    await eventually(
        lambda: q.store.messages.recipient_docs(message_id),
        until=lambda rs: bool(rs) and all(d.get("held") for d in rs),
    )
    [recipient] = await q.final(message_id, "delivered")
    assert recipient["attempts"] == 1


async def test_a_changed_rules_file_is_read_again_and_a_bad_one_is_refused(q: Queue) -> None:
    """A changed rules file is read again (at once on SIGHUP, else at the next heartbeat);
    one that does not read keeps the rules in force, the dispatcher running, and the log
    says why."""
    dispatcher = q.stack.processes["dispatcher-b"]
    good = q.rules.read_text()
    q.rules.write_text(good + '\n[[rule]]\nname = "added-later"\naction = "bounce"\n')
    dispatcher.process.send_signal(signal.SIGHUP)
    await eventually(
        lambda: asyncio.sleep(0, dispatcher.log()),
        until=lambda log: "rules reloaded" in log and "added-later" in log,
    )
    q.rules.write_text('[[rule]]\nname = "x"\naction = "explode"\n')
    dispatcher.process.send_signal(signal.SIGHUP)
    await eventually(
        lambda: asyncio.sleep(0, dispatcher.log()),
        until=lambda log: "rules not reloaded; the rules in force stay" in log,
    )
    assert dispatcher.process.returncode is None  # still running
    q.rules.write_text(good)

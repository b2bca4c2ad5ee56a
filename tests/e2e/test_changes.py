"""Operators' changes apply at once: what `hato` changes while the services run — a pool, a
key, a domain, a tenant's pools — is announced on the broker, and every service drops what it
cached. The services here refresh on their own only once an hour, so nothing but the
announcement can make these pass.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from shared.dkim import txt_record_name
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from shared.views import message_view
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.cli import run_hato
from tests.helpers.dns import DnsServer
from tests.helpers.sinks import Sink
from tests.helpers.smtp import make_message, send
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

HOUR = "3600"


@dataclass
class Live:
    store: Store
    http: httpx.AsyncClient
    key: str
    sink: Sink
    dns: DnsServer
    smtp_port: int
    env: dict[str, str]

    async def hato(self, *args: str) -> str:
        code, out, err = await run_hato(self.env, *args)
        assert code == 0, err
        return out

    async def send(self, sender: str, to: str, **extra) -> str:
        r = await self.http.post(
            "/v1/messages",
            json={"from": sender, "to": [to], "subject": unique("s"), "text": "hi", **extra},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert r.status_code == 202, r.text
        return r.json()["id"]

    async def arrived(self, address: str) -> bytes:
        found = await eventually(
            lambda: _received(self.sink, address), until=lambda r: r is not None, timeout=20
        )
        return found.data


async def _received(sink: Sink, address: str):
    return next((r for r in sink.received if address in r.rcpt_tos), None)


@pytest.fixture(scope="module")
async def live(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Live]:
    database, prefix = unique("chg"), unique("chg")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    await store.pools.upsert("main", [{"ip": "127.0.0.2", "helo": "out.hato.test"}])
    await store.directory.upsert_tenant(TENANT, pool="main")
    _, key = await store.directory.add_api_key(TENANT)
    sink = await Sink(host="127.0.0.2").start()
    dns_server = await DnsServer().start()
    env = {
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": prefix,
        "HATO_AMQP_QUEUE_EXPIRES": "600000",
        "HATO_MONGODB_URL": MONGODB_URL,
        "HATO_MONGODB_DATABASE": database,
        "HATO_MASTER_KEY": master_key,
        "HATO_DNS_NAMESERVERS": dns_server.address,
        "HATO_DNS_TIMEOUT": "2",
    }
    smtp_port, http_port = free_port(), free_port()
    stack = Stack(
        env={
            **env,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_INGEST_POLICY_REFRESH": HOUR,
            "HATO_SIGNER_KEY_CACHE_SECONDS": HOUR,
            "HATO_SIGNER_ROTATION_INTERVAL": HOUR,
            "HATO_SIGNER_POOLS": "main",
            "HATO_DISPATCHER_SOURCE_IPS": "127.0.0.2",
            "HATO_DISPATCHER_POOLS": "",
            "HATO_DISPATCHER_HEARTBEAT_INTERVAL": HOUR,
            "HATO_DISPATCHER_HEARTBEAT_TIMEOUT": HOUR,
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await stack.start_all()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        yield Live(store, http, key, sink, dns_server, smtp_port, env)
    assert all(code == 0 for code in (await stack.stop_all()).values())
    await sink.stop()
    dns_server.stop()
    await store.client.drop_database(database)
    await store.close()


async def test_a_pool_made_while_the_dispatcher_runs_is_served_at_once(live: Live) -> None:
    """`hato pool add` with a running dispatcher's IP, then `hato tenant set` letting the tenant
    use it: the next message naming that pool is delivered, from that IP."""
    await live.hato("pool", "add", "late", "--member", "127.0.0.2=late.hato.test")
    await live.hato("tenant", "set", TENANT, "--other-pool", "late")
    message_id = await live.send("orders@shop.test", "late@ok.test", pool="late")
    await live.arrived("late@ok.test")
    assert next(r for r in live.sink.received if "late@ok.test" in r.rcpt_tos).helo == (
        "late.hato.test"
    )
    view = await eventually(
        lambda: message_view(live.store, message_id), until=lambda v: v["status"] == "delivered"
    )
    assert view["pool"] == "late"


async def test_an_activated_key_signs_the_very_next_message(live: Live) -> None:
    """A rotation activated with `hato dkim check --activate` signs the next message, though
    the signer had the old key cached for an hour."""
    await live.send("orders@shop.test", "before@ok.test")
    assert _selectors(await live.arrived("before@ok.test")) == ["s1"]
    out = await live.hato("dkim", "rotate", "shop.test")
    new = re.search(r"new key (\S+) ", out).group(1)
    doc = await live.store.directory.domain("shop.test")
    for k in doc["dkim"]:
        live.dns.publish(txt_record_name("shop.test", k["selector"]), _record(k))
    assert "now active" in await live.hato("dkim", "check", "shop.test", "--activate")
    await live.send("orders@shop.test", "after@ok.test")
    assert _selectors(await live.arrived("after@ok.test")) == [new]


async def test_a_domain_verified_by_the_operator_may_send_at_once(live: Live) -> None:
    """`hato domain add --verified` lets the tenant send from the domain on the next SMTP
    session, though ingest would reload its policy only in an hour."""
    message = make_message(from_="news@late.test", to="y@ok.test")
    outcome = await send(live.smtp_port, mail_from="news@late.test", data=message)
    assert outcome.code == 550, outcome
    await live.hato("domain", "add", "late.test", "--tenant", TENANT, "--verified")
    outcome = await send(
        live.smtp_port, mail_from="news@late.test", rcpts=("y@ok.test",), data=message
    )
    assert outcome.code == 250, outcome
    await live.arrived("y@ok.test")


def _record(key: dict) -> str:
    from shared.dkim import txt_record_value

    return txt_record_value(key)


def _selectors(data: bytes) -> list[str]:
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    return [re.search(r"\bs=([^;\s]+)", h).group(1) for h in parsed.get_all("DKIM-Signature", [])]

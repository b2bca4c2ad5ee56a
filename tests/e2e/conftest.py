"""Fixtures of the end-to-end tests: a full stack with API keys for the HTTP and AMQP doors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, TENANT, provision, unique
from tests.helpers.dns import DnsServer
from tests.helpers.sinks import Sink
from tests.helpers.waiting import eventually

OPERATOR = "op-" + unique("token")
VERP_KEY = "verp-" + unique("key")
UNSUBSCRIBE_KEY = "unsub-" + unique("key")
FBL = "fbl@feedback.hato.test"


@dataclass
class Api:
    store: Store
    http: httpx.AsyncClient
    key: str
    rival_key: str
    sink: Sink
    dns: DnsServer
    prefix: str
    master_key: str
    dkim_key: object
    bounce_port: int = 0
    stack: Stack | None = None
    smtp_port: int = 0  # the relay listener (127.0.0.1 is tenant acme's network)

    def as_tenant(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


@pytest.fixture(scope="module")
async def api(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Api]:
    database = unique("http")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    d = store.directory
    await d.upsert_tenant("rival")
    await d.upsert_domain("rival.test", tenant="rival", verified=True)
    _, key = await d.add_api_key(TENANT, name="shop backend")
    _, rival_key = await d.add_api_key("rival")
    sink = await Sink(host="127.0.0.2").start()
    dns_server = await DnsServer().start()
    http_port, bounce_port, smtp_port = free_port(), free_port(), free_port()
    prefix = unique("http")
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_INGEST_ADMIN_TOKEN": OPERATOR,
            "HATO_DNS_NAMESERVERS": dns_server.address,
            "HATO_DNS_TIMEOUT": "2",
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_SIGNER_KEY_CACHE_SECONDS": "0",
            "HATO_VERP_KEY": VERP_KEY,
            "HATO_UNSUBSCRIBE_KEY": UNSUBSCRIBE_KEY,
            "HATO_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
            "HATO_BOUNCE_SMTP_PORT": str(bounce_port),
            "HATO_BOUNCE_FBL_ADDRESS": FBL,
            "HATO_EGRESS_ALLOW": "127.0.0.0/8",  # webhook receivers are on loopback
            "HATO_INGEST_POLICY_REFRESH": "0.5",
            "HATO_SIGNER_ROTATION_INTERVAL": "0.5",
            # Scheduled messages are looked for often, and a killed ingest's lease on their
            # release passes to its successor soon.
            "HATO_INGEST_SCHEDULE_INTERVAL": "0.5",
            "HATO_INGEST_LEASE_TTL": "5",
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await stack.start_all()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        yield Api(
            store,
            http,
            key,
            rival_key,
            sink,
            dns_server,
            prefix,
            master_key,
            dkim_key,
            bounce_port,
            stack,
            smtp_port,
        )
    assert (await stack.stop_all()) == {"ingest": 0, "signer": 0, "dispatcher": 0, "bounce": 0}
    for p in stack.processes.values():
        assert key not in p.log() and OPERATOR not in p.log()
        assert UNSUBSCRIBE_KEY not in p.log()
    await sink.stop()
    dns_server.stop()
    await store.client.drop_database(database)
    await store.close()


def message(**overrides) -> dict:
    body = {
        "from": "Shop <orders@shop.test>",
        "to": ["bob@ok.test"],
        "subject": "Order 7",
        "text": "Thanks for your order.",
        "tags": ["order"],
        "metadata": {"order": "7"},
    }
    body.update(overrides)
    return body


async def delivered_to(api: Api, address: str) -> bytes:
    received = await eventually(
        lambda: _find(api.sink, address), until=lambda r: r is not None, timeout=30
    )
    return received.data


async def _find(sink: Sink, address: str):
    for r in sink.received:
        if address in r.rcpt_tos:
            return r
    return None

"""The bounce service re-checks every sending domain on its schedule: when a passing domain's
DNS breaks, one domain_check_failed event reaches the store and the events exchange."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from shared import dkim
from shared.secrets import SecretBox
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack
from tests.conftest import AMQP_URL, MONGODB_URL, unique
from tests.helpers.dns import DnsServer
from tests.helpers.waiting import eventually
from tests.helpers.zones import DNS_SETTINGS, POOL, healthy

pytestmark = pytest.mark.integration

DOMAIN = "rechecked.example"
INTERVAL = 0.5  # seconds between re-checks


async def test_the_bounce_service_tells_once_when_a_domain_breaks(tmp_path, master_key) -> None:
    """While the zone is right nothing is said; once the DMARC record goes, exactly one
    domain_check_failed event (naming the record to publish) is stored and published, however
    many re-checks follow."""
    database, prefix = unique("recheck"), unique("recheck")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await store.directory.upsert_tenant("owner")
    await store.directory.upsert_domain(DOMAIN, tenant="owner", verified=True)
    key = dkim.generate(DOMAIN, "s1", dkim.ED25519)
    await store.directory.add_dkim_key(DOMAIN, dkim.to_document(key, SecretBox(master_key)))
    for m in POOL:
        await store.pools.add_member("default", {"ip": m.ip, "helo": m.helo, "warmup": []})
    dns_server = await DnsServer().start()
    healthy(dns_server, await store.directory.domain(DOMAIN))
    dns_server.remove(DOMAIN, "MX")  # receives no mail: no MTA-STS policy to serve
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_DNS_NAMESERVERS": dns_server.address,
            "HATO_DNS_TIMEOUT": "2",
            **{f"HATO_DNS_{k.upper()}": v for k, v in DNS_SETTINGS.items()},
            "HATO_BOUNCE_DOMAIN_CHECK_INTERVAL": str(INTERVAL),
            "HATO_BOUNCE_LEASE_TTL": "3",
        },
        log_dir=tmp_path,
    )
    connection = await aio_pika.connect(AMQP_URL)
    try:
        await stack.start("bounce")
        channel = await connection.channel()
        watch = await channel.declare_queue(exclusive=True)
        await watch.bind(f"{prefix}.events", "owner.domain_check_failed")

        async def last_result():
            return await store.db.domain_health.find_one({"_id": DOMAIN})

        await eventually(last_result, until=lambda r: r is not None and r["ok"])
        dns_server.remove(f"_dmarc.{DOMAIN}", "TXT")

        async def failed_events():
            return await store.db.events.find({"type": "domain_check_failed"}).to_list()

        (event,) = await eventually(failed_events)
        assert event["detail"]["failing"] == "dmarc"
        assert event["detail"]["publish"].startswith(f'_dmarc.{DOMAIN}. IN TXT "v=DMARC1; p=none')
        checked = (await last_result())["checked_at"]
        await eventually(last_result, until=lambda r: r["checked_at"] > checked)
        await asyncio.sleep(3 * INTERVAL)  # more re-checks, still broken
        assert len(await failed_events()) == 1
        message = await watch.get(timeout=5)
        await message.ack()
        assert await watch.get(fail=False) is None
    finally:
        await connection.close()
        await stack.stop_all()
        dns_server.stop()
        await store.client.drop_database(database)
        await store.close()

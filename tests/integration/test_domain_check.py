"""`hato domain check` and the scheduled re-check against the real store, with DNS answered by
a server on loopback."""

from __future__ import annotations

import json

import pytest

from shared.store import Store
from tests.conftest import AMQP_URL, unique
from tests.helpers.cli import run_hato
from tests.helpers.dns import DnsServer
from tests.helpers.zones import DNS_SETTINGS, POOL, healthy

pytestmark = pytest.mark.integration

PREFIX = unique("domcheck")
DOMAIN = "health.example"


async def hato(store: Store, master_key: str, dns: DnsServer, *args: str) -> tuple[int, str, str]:
    """`hato` on this test's database, resolving through ``dns``."""
    return await run_hato(
        {
            "HATO_MONGODB_URL": store.settings.url,
            "HATO_MONGODB_DATABASE": store.settings.database,
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": PREFIX,
            "HATO_MASTER_KEY": master_key,
            "HATO_DNS_NAMESERVERS": dns.address,
            "HATO_DNS_TIMEOUT": "2",
            "HATO_EGRESS_ALLOW": "127.0.0.0/8",
            **{f"HATO_DNS_{k.upper()}": v for k, v in DNS_SETTINGS.items()},
        },
        *args,
    )


@pytest.fixture
async def dns_server():
    server = await DnsServer().start()
    yield server
    server.stop()


async def provisioned(store: Store, master_key: str, dns: DnsServer) -> None:
    """Tenant ``health`` owning DOMAIN, sending from the two loopback pool IPs, with a zone
    that passes (the domain receives no mail: no MTA-STS to fetch)."""
    for args in (
        ("tenant", "add", "health"),
        ("tenant", "add", "other"),
        ("domain", "add", DOMAIN, "--tenant", "health", "--verified"),
        *(("pool", "add", "default", "--member", f"{m.ip}={m.helo}") for m in POOL),
    ):
        code, _, err = await hato(store, master_key, dns, *args)
        assert code == 0, err
    healthy(dns, await store.directory.domain(DOMAIN))
    dns.remove(DOMAIN, "MX")


async def test_domain_check_is_green_then_names_the_record_to_publish(
    store, master_key, dns_server
) -> None:
    """A healthy zone exits 0; with the DMARC record gone it exits 1 and prints the record to
    publish; --json says the same and exits 1 too."""
    await provisioned(store, master_key, dns_server)
    code, out, err = await hato(store, master_key, dns_server, "domain", "check", DOMAIN)
    assert code == 0, out + err
    assert out.strip().endswith(f"{DOMAIN}: healthy")
    assert "127.0.0.2 ↔ out1.hato.localhost" in out

    dns_server.remove(f"_dmarc.{DOMAIN}", "TXT")
    code, out, _ = await hato(store, master_key, dns_server, "domain", "check", DOMAIN)
    assert code == 1
    assert f"{DOMAIN}: NOT healthy (dmarc)" in out
    assert (
        f'publish: _dmarc.{DOMAIN}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{DOMAIN}"'
    ) in out

    code, out, _ = await hato(store, master_key, dns_server, "domain", "check", DOMAIN, "--json")
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False and report["failing"] == ["dmarc"]
    (bad,) = [f for f in report["findings"] if f["verdict"] != "ok"]
    assert bad["publish"]["name"] == f"_dmarc.{DOMAIN}" and bad["publish"]["type"] == "TXT"


async def test_domain_check_of_unknown_or_malformed_domains(store, master_key, dns_server) -> None:
    """An unknown domain exits 3 (not found), a malformed name 2 (usage), each with a line
    saying so."""
    code, _, err = await hato(store, master_key, dns_server, "domain", "check", "nowhere.example")
    assert code == 3 and "unknown domain nowhere.example" in err
    code, _, err = await hato(store, master_key, dns_server, "domain", "check", "not a domain")
    assert code == 2 and "not a domain name" in err


async def stored(store: Store, master_key: str, dns: DnsServer) -> None:
    """The same as ``provisioned``, written straight to the store."""
    from shared import dkim
    from shared.secrets import SecretBox

    await store.directory.upsert_tenant("health")
    await store.directory.upsert_tenant("other")
    await store.directory.upsert_domain(DOMAIN, tenant="health", verified=True)
    key = dkim.generate(DOMAIN, "s1", dkim.ED25519)
    await store.directory.add_dkim_key(DOMAIN, dkim.to_document(key, SecretBox(master_key)))
    await store.directory.upsert_domain("other.example", tenant="other", verified=True)
    for m in POOL:
        await store.pools.add_member("default", {"ip": m.ip, "helo": m.helo, "warmup": []})
    healthy(dns, await store.directory.domain(DOMAIN))
    dns.remove(DOMAIN, "MX")


async def test_http_check_of_the_tenants_own_domain_only(store, master_key, dns_server) -> None:
    """GET /v1/domains/{domain}/check answers the tenant's own domain's findings; another
    tenant's domain and an unknown one are the same 404 problem, a malformed name a 400,
    and the admin API checks any domain."""
    import httpx

    from services.ingest.http import create_app
    from services.ingest.http.admin import Admin
    from shared.domain_health import DomainHealth
    from shared.provisioning import Provisioner
    from tests.helpers.zones import dns_settings

    await stored(store, master_key, dns_server)
    _, key = await store.directory.add_api_key("health")
    health = DomainHealth(dns_settings(dns_server))

    async def changed(*_):
        return None

    admin = Admin(
        store.directory,
        store.suppressions,
        Provisioner(store.directory, store.pools, None, dns_settings(dns_server)),
        changed,
        health=health,
    )
    app = create_app(store, operator_token="op-token", admin=admin, health=health)
    dns_server.remove("spf.hato.localhost", "TXT")
    dns_server.publish("spf.hato.localhost", "v=spf1 ip4:127.0.0.2 -all")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://hato"
    ) as http:
        mine = await http.get(
            f"/v1/domains/{DOMAIN}/check", headers={"Authorization": f"Bearer {key}"}
        )
        others = await http.get(
            "/v1/domains/other.example/check", headers={"Authorization": f"Bearer {key}"}
        )
        unknown = await http.get(
            "/v1/domains/nowhere.example/check", headers={"Authorization": f"Bearer {key}"}
        )
        malformed = await http.get(
            "/v1/domains/not_a_domain/check", headers={"Authorization": f"Bearer {key}"}
        )
        by_operator = await http.get(
            f"/admin/v1/domains/{DOMAIN}/check", headers={"Authorization": "Bearer op-token"}
        )
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert body["ok"] is False and body["failing"] == ["spf"]
    (bad,) = [f for f in body["findings"] if f["verdict"] != "ok"]
    assert bad["publish"]["zone_line"] == (
        f'{DOMAIN}. IN TXT "v=spf1 ip4:127.0.0.3 include:spf.hato.localhost -all"'
    )
    for answer in (others, unknown):
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
    assert others.json()["detail"] == "no domain other.example"
    assert malformed.status_code == 400 and "not a domain name" in malformed.json()["detail"]
    assert by_operator.status_code == 200 and by_operator.json()["failing"] == ["spf"]


async def test_scheduled_recheck_emits_domain_check_failed_once_when_a_record_breaks(
    store, master_key, dns_server, broker_settings
) -> None:
    """Re-checks of a passing domain raise nothing; when its DKIM record goes, the next run
    writes and publishes one domain_check_failed event naming the record to publish, the runs
    after it none while it stays broken, and a new one only after it passed again."""
    import aio_pika

    from services.bounce.domain_checks import DomainRechecks
    from shared.broker import Broker
    from shared.dkim import txt_record_name
    from shared.domain_health import DomainHealth
    from tests.helpers.zones import dns_settings

    await stored(store, master_key, dns_server)
    broker = Broker(broker_settings, name="bounce")
    await broker.connect()
    connection = await aio_pika.connect(broker_settings.url)
    try:
        channel = await connection.channel()
        watch = await channel.declare_queue(exclusive=True)
        await watch.bind(f"{broker_settings.prefix}.events", "health.domain_check_failed")
        rechecks = DomainRechecks(store, broker, DomainHealth(dns_settings(dns_server)))

        assert await rechecks.run_once() == []  # first sight: nothing to compare with
        assert await rechecks.run_once() == []  # still passing
        dkim_name = txt_record_name(DOMAIN, "s1")
        published = dns_server.records.pop((dkim_name, "TXT"))

        (event,) = await rechecks.run_once()
        assert event.type.value == "domain_check_failed" and event.tenant == "health"
        assert event.detail["domain"] == DOMAIN and event.detail["failing"] == "dkim"
        assert event.detail["publish"].startswith(f'{dkim_name}. IN TXT "v=DKIM1; k=ed25519; p=')
        assert await rechecks.run_once() == []  # still broken: said once
        stored_events = await store.db.events.find({"type": "domain_check_failed"}).to_list()
        assert [e["_id"] for e in stored_events] == [event.id]
        message = await watch.get(timeout=5)
        assert message is not None
        await message.ack()
        assert await watch.get(fail=False) is None

        dns_server.records[(dkim_name, "TXT")] = published
        assert await rechecks.run_once() == []  # passing again
        dns_server.records.pop((dkim_name, "TXT"))
        assert len(await rechecks.run_once()) == 1  # broken again: said again
        last = await store.db.domain_health.find_one({"_id": DOMAIN})
        assert last["ok"] is False and last["failing"] == ["dkim"]
    finally:
        await connection.close()
        await broker.close()

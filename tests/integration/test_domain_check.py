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

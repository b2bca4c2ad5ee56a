"""Domain health against a real DNS server on loopback: a healthy zone is all green, and each
broken record is named with the exact record to publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared import dkim
from shared.domain_health import Check, DomainHealth, HealthReport, Member, Verdict
from shared.egress import Egress
from shared.secrets import SecretBox, generate_master_key
from tests.helpers.dns import DnsServer
from tests.helpers.zones import POOL, PolicyServer, dns_settings, healthy

DOMAIN = "shop.example"


def domain_doc(*states: str) -> dict[str, Any]:
    """A domains document with one Ed25519 key per state given."""
    box = SecretBox(generate_master_key())
    keys = [
        dkim.to_document(dkim.generate(DOMAIN, f"s{i}", dkim.ED25519), box, state=state)
        for i, state in enumerate(states or (dkim.ACTIVE,))
    ]
    return {"_id": DOMAIN, "tenant": "shop", "dkim": keys}


@pytest.fixture
async def zone(tmp_path: Path):
    """(DNS server, policy server, domain document) with every record right."""
    server = await DnsServer().start()
    policy = await PolicyServer(tmp_path, DOMAIN).start()
    doc = domain_doc(dkim.ACTIVE, dkim.PENDING)
    healthy(server, doc)
    try:
        yield server, policy, doc
    finally:
        server.stop()
        await policy.stop()


async def check(zone, members=POOL, allow=("127.0.0.0/8",)) -> HealthReport:
    server, policy, doc = zone
    health = DomainHealth(
        dns_settings(server),
        egress=Egress.from_settings(_egress(allow)),
        https_port=policy.port,
        tls=policy.tls,
    )
    return await health.check(doc, members, pools=["default"])


def _egress(allow):
    from shared.egress import EgressSettings

    return EgressSettings(allow=list(allow))


def wrong(report: HealthReport, which: Check) -> list:
    return [f for f in report.findings if f.check is which and f.verdict is not Verdict.OK]


async def test_a_healthy_zone_is_all_green(zone) -> None:
    """Every check passes: SPF (From and return path) for both pool IPs, both DKIM keys,
    DMARC p=reject aligned, the return path's MX, FCrDNS of each IP, MTA-STS and TLS-RPT."""
    report = await check(zone)
    assert report.ok, [f.as_dict() for f in report.findings if f.verdict is not Verdict.OK]
    assert all(f.verdict is Verdict.OK for f in report.findings)
    assert {f.check for f in report.findings} == set(Check)
    assert zone[1].requests and "Host: mta-sts.shop.example" in zone[1].requests[0]


async def test_spf_missing_a_pool_ip_names_the_record_with_it(zone) -> None:
    """The include lists one pool IP only: pyspf fails the other, and the record to publish
    keeps the include and adds that IP."""
    server = zone[0]
    server.remove("spf.hato.localhost", "TXT")
    server.publish("spf.hato.localhost", "v=spf1 ip4:127.0.0.2 -all")
    report = await check(zone)
    assert report.failing == ["spf"]
    (finding,) = wrong(report, Check.SPF)
    assert "127.0.0.3 (fail)" in finding.says
    assert finding.publish.zone_line() == (
        'shop.example. IN TXT "v=spf1 ip4:127.0.0.3 include:spf.hato.localhost -all"'
    )


async def test_no_spf_record_at_all_gives_a_new_one(zone) -> None:
    """Without an SPF record the domain is told to publish one with the pool IPs."""
    zone[0].remove(DOMAIN, "TXT")
    (finding,) = wrong(await check(zone), Check.SPF)
    assert finding.says.startswith("no SPF record")
    assert finding.publish.value == (
        "v=spf1 ip4:127.0.0.2 ip4:127.0.0.3 include:spf.hato.localhost ~all"
    )


async def test_return_path_spf_is_checked_where_its_cname_leads(zone) -> None:
    """The return path's SPF lives at the host it is a CNAME of; a missing IP there is
    named at that host."""
    server = zone[0]
    server.remove("bounces.hato.localhost", "TXT")
    server.publish("bounces.hato.localhost", "v=spf1 ip4:127.0.0.3 -all")
    report = await check(zone)
    assert report.failing == ["return-path-spf"]
    (finding,) = wrong(report, Check.RETURN_PATH_SPF)
    assert finding.subject == "bounces.shop.example"
    assert finding.publish.zone_line() == (
        'bounces.hato.localhost. IN TXT "v=spf1 ip4:127.0.0.2 ip4:127.0.0.3 -all"'
    )


async def test_a_pending_key_not_published_and_a_changed_key_are_named(zone) -> None:
    """The pending key's record is missing and the active one holds another key: both are
    wrong, each with its own record to publish."""
    server, _, doc = zone
    active, pending = doc["dkim"]
    server.remove(dkim.txt_record_name(DOMAIN, pending["selector"]), "TXT")
    server.remove(dkim.txt_record_name(DOMAIN, active["selector"]), "TXT")
    server.publish(dkim.txt_record_name(DOMAIN, active["selector"]), "v=DKIM1; k=ed25519; p=AAAA")
    report = await check(zone)
    assert report.failing == ["dkim"]
    found = {f.subject: f for f in wrong(report, Check.DKIM)}
    assert "not published" in found["s1._domainkey.shop.example"].says
    assert "holds another key" in found["s0._domainkey.shop.example"].says
    assert found["s1._domainkey.shop.example"].publish.zone_line() == (
        f's1._domainkey.shop.example. IN TXT "{dkim.txt_record_value(pending)}"'
    )


async def test_dmarc_absent_is_wrong_and_p_none_a_warning(zone) -> None:
    """No DMARC record fails with the record to start with; p=none passes with a warning
    naming the p=quarantine record."""
    server = zone[0]
    server.remove(f"_dmarc.{DOMAIN}", "TXT")
    report = await check(zone)
    assert report.failing == ["dmarc"]
    (finding,) = wrong(report, Check.DMARC)
    assert finding.publish.zone_line() == (
        '_dmarc.shop.example. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@shop.example"'
    )
    server.publish(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none; rua=mailto:d@shop.example")
    report = await check(zone)
    assert report.ok
    (finding,) = wrong(report, Check.DMARC)
    assert finding.verdict is Verdict.WARNING
    assert finding.publish.value == "v=DMARC1; p=quarantine; rua=mailto:d@shop.example"


async def test_strict_spf_alignment_cannot_hold_for_the_return_path(zone) -> None:
    """aspf=s: the return path bounces.<domain> never aligns; a warning says DMARC rests on
    DKIM and names the record without aspf."""
    server = zone[0]
    server.remove(f"_dmarc.{DOMAIN}", "TXT")
    server.publish(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; aspf=s")
    (finding,) = wrong(await check(zone), Check.DMARC)
    assert finding.verdict is Verdict.WARNING and "DKIM alone" in finding.says
    assert finding.publish.value == "v=DMARC1; p=reject"


async def test_return_path_mx_elsewhere_names_the_cname(zone) -> None:
    """The return path has its own MX pointing elsewhere: wrong, publish the CNAME."""
    server = zone[0]
    server.remove(f"bounces.{DOMAIN}", "CNAME")
    server.add(f"bounces.{DOMAIN}", "MX", "10 mail.elsewhere.example.")
    report = await check(zone)
    assert "return-path-mx" in report.failing
    (finding,) = wrong(report, Check.RETURN_PATH_MX)
    assert "points at mail.elsewhere.example" in finding.says
    assert finding.publish.zone_line() == ("bounces.shop.example. IN CNAME bounces.hato.localhost.")


async def test_ptr_mismatch_and_unconfirmed_forward_are_named(zone) -> None:
    """One IP's PTR names another host; the other's EHLO name resolves elsewhere: the PTR
    and the A record to publish."""
    server = zone[0]
    server.remove("2.0.0.127.in-addr.arpa", "PTR")
    server.reverse("127.0.0.2", "wrong.hato.localhost")
    server.remove("out2.hato.localhost", "A")
    server.add("out2.hato.localhost", "A", "127.0.0.9")
    report = await check(zone)
    assert report.failing == ["ptr"]
    found = {f.subject: f for f in wrong(report, Check.PTR)}
    assert found["127.0.0.2"].publish.zone_line() == (
        "2.0.0.127.in-addr.arpa. IN PTR out1.hato.localhost."
    )
    assert found["127.0.0.3"].publish.zone_line() == "out2.hato.localhost. IN A 127.0.0.3."


async def test_mta_sts_policy_behind_an_internal_address_is_not_fetched(zone) -> None:
    """Without an egress allowance for loopback the guard refuses the policy host: nothing is
    fetched and the finding says why."""
    report = await check(zone, allow=())
    assert report.failing == ["mta-sts"]
    (finding,) = wrong(report, Check.MTA_STS)
    assert "not a public address" in finding.says
    assert zone[1].requests == []


async def test_mta_sts_policy_not_covering_the_mx_and_missing_tls_rpt(zone) -> None:
    """A policy whose mx lines miss the domain's MX is wrong; no TLS-RPT record is a warning
    with the record to publish."""
    server, policy, _ = zone
    policy.policy = "version: STSv1\nmode: enforce\nmx: other.example\nmax_age: 86400\n"
    server.remove(f"_smtp._tls.{DOMAIN}", "TXT")
    report = await check(zone)
    assert report.failing == ["mta-sts"]
    assert "do not cover mx.shop.example" in wrong(report, Check.MTA_STS)[0].says
    (rpt,) = wrong(report, Check.TLS_RPT)
    assert rpt.verdict is Verdict.WARNING
    assert rpt.publish.value == "v=TLSRPTv1; rua=mailto:tls-reports@shop.example"


async def test_a_domain_that_receives_no_mail_skips_mta_sts(zone) -> None:
    """No MX for the From domain: MTA-STS and TLS-RPT do not apply."""
    zone[0].remove(DOMAIN, "MX")
    report = await check(zone)
    assert report.ok
    assert not [f for f in report.findings if f.check in (Check.MTA_STS, Check.TLS_RPT)]


async def test_a_failing_lookup_is_a_dns_error_not_a_pass(zone) -> None:
    """SERVFAIL at _dmarc is reported as a DNS error and fails the check."""
    zone[0].failing.add(f"_dmarc.{DOMAIN}")
    report = await check(zone)
    assert report.failing == ["dmarc"]
    assert wrong(report, Check.DMARC)[0].verdict is Verdict.DNS_ERROR


async def test_a_pool_without_stored_members_checks_the_include(zone) -> None:
    """With no stored pool IPs SPF is not evaluated; the include is there: a warning."""
    report = await check(zone, members=())
    assert report.ok
    assert [f.verdict for f in wrong(report, Check.SPF)] == [Verdict.WARNING]
    assert [f for f in report.findings if f.check is Check.PTR] == []


async def test_members_of_v6(zone) -> None:
    """An IPv6 member (::1) is evaluated by pyspf and its PTR forward-confirmed by AAAA."""
    server = zone[0]
    member = Member("::1", "out6.hato.localhost")
    server.reverse("::1", "out6.hato.localhost")
    server.add("out6.hato.localhost", "AAAA", "::1")
    server.remove("spf.hato.localhost", "TXT")
    server.publish("spf.hato.localhost", "v=spf1 ip6:::1 -all")
    server.remove("bounces.hato.localhost", "TXT")
    server.publish("bounces.hato.localhost", "v=spf1 ip6:::1 -all")
    report = await check(zone, members=(member,))
    assert report.ok, [f.as_dict() for f in report.findings if f.verdict is not Verdict.OK]


async def test_a_policy_that_cannot_be_fetched_is_wrong(zone) -> None:
    """The policy host answers 404: the MTA-STS record points at nothing, which is wrong."""
    zone[1].status = 404
    report = await check(zone)
    assert report.failing == ["mta-sts"]
    assert "cannot be fetched" in wrong(report, Check.MTA_STS)[0].says


async def test_spf_whose_include_fails_to_resolve_is_a_dns_error(zone) -> None:
    """SERVFAIL at the included name: pyspf answers temperror, reported as a DNS error, not
    as a record to change."""
    zone[0].failing.add("spf.hato.localhost")
    report = await check(zone)
    assert report.failing == ["spf"]
    (finding,) = wrong(report, Check.SPF)
    assert finding.verdict is Verdict.DNS_ERROR and finding.publish is None

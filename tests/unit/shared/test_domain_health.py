"""The rules of domain health, on what DNS would answer: SPF suggestions, DMARC parsing and
alignment, forward-confirmed PTR, MTA-STS policies and how records print."""

from __future__ import annotations

from shared.dns import DnsRecord
from shared.domain_health import (
    Check,
    Finding,
    HealthReport,
    Member,
    Verdict,
    aligned,
    dmarc_findings,
    mx_finding,
    mx_matches,
    organizational_domain,
    parse_dmarc,
    parse_sts_policy,
    ptr_finding,
    spf_finding,
    spf_record_with,
    sts_policy_findings,
)


def test_spf_suggestion_adds_the_missing_pool_ips_before_all() -> None:
    """The pool IPs come right after v=spf1, so they match before -all or a redirect."""
    assert spf_record_with("v=spf1 mx -all", ["127.0.0.1", "::1"], "spf.h") == (
        "v=spf1 ip4:127.0.0.1 ip6:::1 mx -all"
    )
    assert spf_record_with("v=spf1 redirect=_spf.x", ["127.0.0.1"], "spf.h") == (
        "v=spf1 ip4:127.0.0.1 redirect=_spf.x"
    )


def test_spf_suggestion_without_a_record_includes_hato() -> None:
    """No record: the pool IPs and Hato's include, soft-failing the rest."""
    assert spf_record_with(None, ["127.0.0.1"], "spf.hato.example") == (
        "v=spf1 ip4:127.0.0.1 include:spf.hato.example ~all"
    )


def test_spf_finding_names_each_failing_ip_and_the_record() -> None:
    """An IP that does not pass is named with pyspf's result; the record adds just it."""
    f = spf_finding(
        Check.SPF,
        "a.example",
        "a.example",
        ["v=spf1 ip4:127.0.0.1 -all"],
        {"127.0.0.1": "pass", "127.0.0.2": "fail"},
        "spf.h",
    )
    assert f.verdict is Verdict.WRONG and "127.0.0.2 (fail)" in f.says
    assert f.publish == DnsRecord(
        "a.example",
        "TXT",
        "v=spf1 ip4:127.0.0.2 ip4:127.0.0.1 -all",
        "SPF: Hato's pool IPs may send for a.example",
    )


def test_two_spf_records_are_wrong_whatever_they_say() -> None:
    """RFC 7208 4.5: two SPF records are a permerror."""
    f = spf_finding(Check.SPF, "a.example", "a.example", ["v=spf1 -all", "v=spf1 +all"], {}, "s")
    assert f.verdict is Verdict.WRONG and "2 SPF records" in f.says


def test_dmarc_parsing_wants_the_version_first() -> None:
    """v=DMARC1 first, tags lower-cased; anything else is no DMARC record."""
    assert parse_dmarc("v=DMARC1; P=reject ; rua=mailto:a@b") == {
        "v": "DMARC1",
        "p": "reject",
        "rua": "mailto:a@b",
    }
    assert parse_dmarc("p=reject; v=DMARC1") is None
    assert parse_dmarc("v=spf1 -all") is None


def test_alignment_relaxed_and_strict() -> None:
    """Relaxed: the same organizational domain (by the public suffix list); strict: equal."""
    assert organizational_domain("bounces.mail.example.co.uk") == "example.co.uk"
    assert aligned("bounces.example.com", "example.com", "r")
    assert not aligned("bounces.example.com", "example.com", "s")
    assert aligned("Example.com.", "example.com", "s")
    assert not aligned("example.net", "example.com", "r")


def test_dmarc_findings_for_a_good_record() -> None:
    """p=reject with Hato's d= and return path aligned: three OK findings."""
    found = dmarc_findings(
        "example.com",
        "_dmarc.example.com",
        ["v=DMARC1; p=reject"],
        dkim_domain="example.com",
        return_path_domain="bounces.example.com",
    )
    assert [f.verdict for f in found] == [Verdict.OK] * 3


def test_dmarc_unaligned_dkim_is_wrong() -> None:
    """Signing with another domain's key never aligns: wrong."""
    found = dmarc_findings(
        "example.com",
        "_dmarc.example.com",
        ["v=DMARC1; p=quarantine"],
        dkim_domain="relay.example.net",
        return_path_domain="bounces.example.com",
    )
    assert [f.verdict for f in found] == [Verdict.OK, Verdict.WRONG, Verdict.OK]


def test_dmarc_two_records_or_no_policy_are_wrong() -> None:
    """Two records apply none; a record without a valid p= is told to publish p=none."""
    two = dmarc_findings(
        "e.com",
        "_dmarc.e.com",
        ["v=DMARC1; p=none", "v=DMARC1; p=reject"],
        dkim_domain="e.com",
        return_path_domain="bounces.e.com",
    )
    assert two[0].verdict is Verdict.WRONG and "2 DMARC records" in two[0].says
    bad = dmarc_findings(
        "e.com",
        "_dmarc.e.com",
        ["v=DMARC1; p=maybe"],
        dkim_domain="e.com",
        return_path_domain="bounces.e.com",
    )
    assert bad[0].verdict is Verdict.WRONG and bad[0].publish.value == "v=DMARC1; p=none"


def test_a_subdomain_under_its_organizations_record_takes_sp() -> None:
    """Found at the organizational domain, the sp= policy is the subdomain's."""
    found = dmarc_findings(
        "news.e.com",
        "_dmarc.e.com",
        ["v=DMARC1; p=reject; sp=none"],
        dkim_domain="news.e.com",
        return_path_domain="bounces.news.e.com",
    )
    assert found[0].verdict is Verdict.WARNING


def test_ptr_is_forward_confirmed() -> None:
    """OK only when the PTR names the EHLO name and that name resolves back to the IP."""
    m = Member("127.0.0.1", "out.example.com")
    assert ptr_finding(m, ["OUT.example.com."], ["127.0.0.1"]).verdict is Verdict.OK
    wrong_ptr = ptr_finding(m, ["other.example.com"], ["127.0.0.1"])
    assert wrong_ptr.verdict is Verdict.WRONG
    assert wrong_ptr.publish.zone_line() == "1.0.0.127.in-addr.arpa. IN PTR out.example.com."
    unconfirmed = ptr_finding(m, ["out.example.com"], ["127.0.0.9"])
    assert unconfirmed.publish.zone_line() == "out.example.com. IN A 127.0.0.1."
    v6 = ptr_finding(Member("::1", "out.example.com"), ["out.example.com"], [])
    assert v6.publish.type == "AAAA"
    assert ptr_finding(Member("127.0.0.1"), [], []).verdict is Verdict.WARNING


def test_return_path_mx_must_be_the_bounce_host() -> None:
    """The MX is compared without case or the trailing dot."""
    record = DnsRecord("bounces.e.com", "CNAME", "bounces.h", "rp")
    assert mx_finding("bounces.e.com", ["MX.h."], "mx.h", record).verdict is Verdict.OK
    missing = mx_finding("bounces.e.com", [], "mx.h", record)
    assert missing.verdict is Verdict.WRONG and "has no MX" in missing.says
    assert missing.publish is record


def test_mta_sts_policy_rules() -> None:
    """RFC 8461: wildcards match one label; a policy must cover every MX; testing warns."""
    assert mx_matches("mx1.e.com", "*.e.com") and not mx_matches("a.mx1.e.com", "*.e.com")
    policy = parse_sts_policy("version: STSv1\r\nmode: testing\r\nmx: *.e.com\r\nmax_age: 1\r\n")
    assert policy["mx"] == ["*.e.com"]
    assert sts_policy_findings("e.com", policy, ["mx1.e.com"])[0].verdict is Verdict.WARNING
    uncovered = sts_policy_findings("e.com", policy, ["mx.other.net"])
    assert uncovered[0].verdict is Verdict.WRONG
    assert sts_policy_findings("e.com", {}, [])[0].verdict is Verdict.WRONG


def test_the_report_fails_on_wrong_and_dns_errors_not_on_warnings() -> None:
    """Warnings keep a report ok; a wrong finding or a failed lookup names its check."""
    report = HealthReport(
        "e.com",
        "t",
        [
            Finding(Check.DMARC, "_dmarc.e.com", Verdict.WARNING, "p=none"),
            Finding(Check.PTR, "127.0.0.1", Verdict.DNS_ERROR, "failed"),
            Finding(Check.SPF, "e.com", Verdict.WRONG, "no", DnsRecord("e.com", "TXT", "v", "")),
        ],
    )
    assert not report.ok and report.failing == ["spf", "ptr"]
    shown = report.as_dict()
    assert shown["findings"][2]["publish"]["zone_line"] == 'e.com. IN TXT "v"'

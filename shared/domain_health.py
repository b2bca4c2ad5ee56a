"""Domain health: is a sending domain's DNS right for the mail Hato sends from it, and where it
is not, the exact record to publish.

What is checked (``check`` of ``DomainHealth``), each a ``Finding``:

- SPF of the header From domain and of the return path (``<label>.<domain>``, or what it is a
  CNAME of), evaluated by pyspf for every IP of the tenant's pools, as a receiver would;
- DKIM: every active and pending key published at its selector, and holding this key;
- DMARC: a record at ``_dmarc.<domain>`` (or the organizational domain's), its policy, and
  whether Hato's DKIM signature (d=) and return path align with the From domain;
- the return path's MX leads to the bounce listener (``HATO_DNS_BOUNCE_MX``);
- PTR of each pool IP names its EHLO name, which resolves back to the IP (forward-confirmed);
- MTA-STS and TLS-RPT, when the domain receives mail (has MX records): the policy is fetched
  from ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` only through the egress guard.

The rules are plain functions of what DNS answered (unit-tested without DNS); ``DomainHealth``
does the lookups through the resolver of ``HATO_DNS_NAMESERVERS``.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename
import httpx
import spf
from publicsuffixlist import PublicSuffixList

from shared.directory import Directory, Pools
from shared.dkim import RETIRED, status, txt_record_name, txt_record_value
from shared.dns import DnsRecord, check_dkim, resolver, sync_resolver, txt
from shared.egress import Egress, Forbidden
from shared.provisioning import DEFAULT_POOL
from shared.settings import DnsSettings

MTA_STS_PATH = "/.well-known/mta-sts.txt"  # RFC 8461 3.2
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 3.2: a policy is small; more is not read
SPF_LOOKUP_SECONDS = 20  # RFC 7208 4.6.4: a receiver gives up on an SPF check after 20 s


class Verdict(StrEnum):
    OK = "ok"
    WARNING = "warning"  # works, but a receiver may judge it weak; does not fail the check
    WRONG = "wrong"
    DNS_ERROR = "dns-error"  # the lookup failed: nothing can be said (fails the check)


class Check(StrEnum):
    SPF = "spf"
    RETURN_PATH_SPF = "return-path-spf"
    DKIM = "dkim"
    DMARC = "dmarc"
    RETURN_PATH_MX = "return-path-mx"
    PTR = "ptr"
    MTA_STS = "mta-sts"
    TLS_RPT = "tls-rpt"


FAILING = (Verdict.WRONG, Verdict.DNS_ERROR)


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing checked: what (``check``, ``subject``: a name or an IP), the verdict, what
    was found (``says``) and, unless it is right, the record that makes it right."""

    check: Check
    subject: str
    verdict: Verdict
    says: str
    publish: DnsRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check.value,
            "subject": self.subject,
            "verdict": self.verdict.value,
            "says": self.says,
            "publish": None
            if self.publish is None
            else {**self.publish.as_dict(), "zone_line": self.publish.zone_line()},
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every finding of one domain; ``ok`` unless one is wrong or could not be looked up."""

    domain: str
    tenant: str
    findings: list[Finding]
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ok(self) -> bool:
        return not self.failing

    @property
    def failing(self) -> list[str]:
        """The checks with a wrong or failed finding, in the order of ``Check``."""
        bad = {f.check for f in self.findings if f.verdict in FAILING}
        return [c.value for c in Check if c in bad]

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "tenant": self.tenant,
            "ok": self.ok,
            "failing": self.failing,
            "checked_at": self.checked_at.isoformat(),
            "findings": [f.as_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Member:
    """A pool's source IP and the name it gives in EHLO (None: the dispatcher's default)."""

    ip: str
    helo: str | None = None


# -- SPF --------------------------------------------------------------------------------------


def spf_mechanism(ip: str) -> str:
    """The SPF mechanism allowing exactly ``ip``."""
    return f"ip{ipaddress.ip_address(ip).version}:{ip}"


def spf_record_with(current: str | None, ips: Sequence[str], include: str) -> str:
    """The SPF record that also passes ``ips``: ``current`` with their mechanisms put first
    (so they match before any ``all`` or ``redirect``), or a new one including ``include``
    (the domain that lists Hato's addresses) when there is none."""
    added = [spf_mechanism(ip) for ip in ips]
    if not current:
        return " ".join(["v=spf1", *added, f"include:{include}", "~all"])
    terms = current.split()
    rest = [t for t in terms[1:] if t.lower() not in {a.lower() for a in added}]
    return " ".join([terms[0], *added, *rest])


def spf_records(texts: Sequence[str]) -> list[str]:
    """The SPF records among a name's TXT strings (RFC 7208 4.5)."""
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def spf_finding(
    check: Check,
    domain: str,
    record_name: str,
    records: Sequence[str],
    results: dict[str, str],
    include: str,
) -> Finding:
    """SPF of ``domain`` (its record at ``record_name``) from pyspf's result per pool IP."""
    current = records[0] if len(records) == 1 else None
    failing = {ip: r for ip, r in results.items() if r != "pass"}
    if "temperror" in failing.values():  # RFC 7208 2.6.6: DNS failed, nothing is known
        return Finding(check, domain, Verdict.DNS_ERROR, f"SPF of {domain}: a lookup failed")
    if len(records) > 1:
        return Finding(
            check,
            domain,
            Verdict.WRONG,
            f"{record_name} has {len(records)} SPF records: receivers treat that as an error "
            "(permerror); merge them into one",
            DnsRecord(record_name, "TXT", spf_record_with(None, list(results), include), "SPF"),
        )
    if not failing:
        return Finding(
            check,
            domain,
            Verdict.OK,
            f"SPF passes for every pool IP ({', '.join(results)})" if results else "SPF present",
        )
    said = ", ".join(f"{ip} ({r})" for ip, r in failing.items())
    what = "no SPF record" if current is None else f"SPF does not pass for {said}"
    return Finding(
        check,
        domain,
        Verdict.WRONG,
        f"{what}: Hato sends as {domain} from {', '.join(results)}",
        DnsRecord(
            record_name,
            "TXT",
            spf_record_with(current, list(failing), include),
            f"SPF: Hato's pool IPs may send for {domain}",
        ),
    )


_spf_resolver: contextvars.ContextVar[dns.resolver.Resolver | None] = contextvars.ContextVar(
    "spf_resolver", default=None
)
_library_lookup = spf.DNSLookup


def _spf_lookup(
    name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30
) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's dnspython lookup, through the resolver of the check running in this context
    (pyspf takes no resolver per query: its lookups go through the module's ``DNSLookup``)."""
    r = _spf_resolver.get()
    if r is None:
        return _library_lookup(name, qtype, tcpfallback, timeout)
    found: list[tuple[tuple[str, str], Any]] = []
    try:
        for rdata in r.resolve(name, qtype, lifetime=min(timeout, r.lifetime)):
            if qtype in ("A", "AAAA"):
                found.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                found.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                found.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                found.append(((name, qtype), rdata.strings))
    except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
        pass
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        raise spf.TempError(f"DNS {exc}") from None
    return found


def spf_result(r: dns.resolver.Resolver, ip: str, domain: str, helo: str) -> str:
    """pyspf's verdict (``pass``, ``softfail``, ``none`` ...) for mail from ``domain`` sent
    by ``ip`` (blocking: run it in a thread)."""
    spf.DNSLookup = _spf_lookup  # pyspf's hook; outside a check it does what pyspf did
    token = _spf_resolver.set(r)
    try:
        result, _, _ = spf.query(
            i=ip, s=f"postmaster@{domain}", h=helo, querytime=SPF_LOOKUP_SECONDS
        ).check()
    finally:
        _spf_resolver.reset(token)
    return str(result)


# -- DMARC ------------------------------------------------------------------------------------


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 3.2: the public suffix and one label more (the name itself when it is one)."""
    name = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(name) or name


def aligned(domain: str, from_domain: str, mode: str) -> bool:
    """RFC 7489 3.1: strict (``s``) wants the same name, relaxed the same organization."""
    a, b = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


def parse_dmarc(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record (RFC 7489 6.3), None when it is none: ``v=DMARC1`` must come
    first. Tag names are lower-cased, values stripped."""
    parts = [p.strip() for p in text.split(";")]
    tags: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), value.strip())
    first = parts[0].replace(" ", "") if parts else ""
    if first != "v=DMARC1":
        return None
    return tags


def dmarc_text(tags: dict[str, str]) -> str:
    """A DMARC record from its tags (``v`` and ``p`` first, as RFC 7489 6.3 wants)."""
    order = ["v", "p", *[k for k in tags if k not in ("v", "p")]]
    return "; ".join(f"{k}={tags[k]}" for k in order if k in tags)


def suggested_dmarc(domain: str) -> DnsRecord:
    """The DMARC record to start with: ``p=none`` and aggregate reports to the domain."""
    tags = {"v": "DMARC1", "p": "none", "rua": f"mailto:dmarc-reports@{domain}"}
    return DnsRecord(f"_dmarc.{domain}", "TXT", dmarc_text(tags), "DMARC: policy and reports")


def dmarc_findings(
    domain: str,
    found_at: str,
    records: Sequence[str],
    *,
    dkim_domain: str,
    return_path_domain: str,
) -> list[Finding]:
    """DMARC of ``domain`` from the TXT strings at ``found_at`` (``_dmarc.<domain>`` or the
    organizational domain's): present, its policy, and whether Hato's DKIM ``d=`` and return
    path align with the From domain under its ``adkim`` and ``aspf``."""
    name = f"_dmarc.{domain}"
    parsed = [t for t in (parse_dmarc(r) for r in records) if t is not None]
    if not parsed:
        return [
            Finding(
                Check.DMARC,
                name,
                Verdict.WRONG,
                f"no DMARC record for {domain}: bulk mail to Gmail and Yahoo needs one; start "
                "with p=none and read the reports sent to rua",
                suggested_dmarc(domain),
            )
        ]
    if len(parsed) > 1:
        return [
            Finding(
                Check.DMARC,
                found_at,
                Verdict.WRONG,
                f"{found_at} has {len(parsed)} DMARC records: receivers then apply none",
                DnsRecord(found_at, "TXT", dmarc_text(parsed[0]), "DMARC: keep exactly one"),
            )
        ]
    tags = parsed[0]
    policy = tags.get("p", "").lower()
    if found_at != name and tags.get("sp"):
        policy = tags["sp"].lower()  # RFC 7489 6.3: sp applies to subdomains
    findings = []
    if policy not in ("none", "quarantine", "reject"):
        findings.append(
            Finding(
                Check.DMARC,
                found_at,
                Verdict.WRONG,
                f"the DMARC record at {found_at} has no valid policy (p={policy or '-'})",
                DnsRecord(found_at, "TXT", dmarc_text({**tags, "p": "none"}), "DMARC"),
            )
        )
    elif policy == "none":
        findings.append(
            Finding(
                Check.DMARC,
                found_at,
                Verdict.WARNING,
                "DMARC policy is p=none: receivers act on nothing that fails it; once the "
                "reports show every sender aligned, move to p=quarantine",
                DnsRecord(
                    found_at, "TXT", dmarc_text({**tags, "p": "quarantine"}), "DMARC: enforce"
                ),
            )
        )
    else:
        findings.append(Finding(Check.DMARC, found_at, Verdict.OK, f"DMARC policy p={policy}"))
    adkim = tags.get("adkim", "r").lower()
    if aligned(dkim_domain, domain, adkim):
        findings.append(
            Finding(
                Check.DMARC,
                found_at,
                Verdict.OK,
                f"DKIM aligns: Hato signs with d={dkim_domain} (adkim={adkim})",
            )
        )
    else:
        findings.append(
            Finding(
                Check.DMARC,
                found_at,
                Verdict.WRONG,
                f"DKIM does not align: Hato signs with d={dkim_domain}, not {domain} "
                f"(adkim={adkim}); give {domain} its own DKIM key (hato dkim generate)",
            )
        )
    aspf = tags.get("aspf", "r").lower()
    if aligned(return_path_domain, domain, aspf):
        findings.append(
            Finding(
                Check.DMARC,
                found_at,
                Verdict.OK,
                f"SPF aligns: the return path {return_path_domain} is of {domain} (aspf={aspf})",
            )
        )
    else:
        relaxed = {k: v for k, v in tags.items() if k != "aspf"}
        findings.append(
            Finding(
                Check.DMARC,
                found_at,
                Verdict.WARNING,
                f"SPF cannot align under aspf={aspf}: the return path is {return_path_domain}; "
                "DMARC passes on DKIM alone",
                DnsRecord(found_at, "TXT", dmarc_text(relaxed), "DMARC: relaxed SPF alignment"),
            )
        )
    return findings


# -- the return path's MX, reverse DNS ------------------------------------------------------


def _host(name: str) -> str:
    return name.lower().rstrip(".")


def mx_finding(
    return_path_domain: str, exchanges: Sequence[str], bounce_host: str, record: DnsRecord
) -> Finding:
    """Does mail to the return path reach the bounce listener ``bounce_host``?"""
    found = [_host(e) for e in exchanges]
    if _host(bounce_host) in found:
        return Finding(
            Check.RETURN_PATH_MX,
            return_path_domain,
            Verdict.OK,
            f"MX of {return_path_domain} is {_host(bounce_host)}: bounces reach Hato",
        )
    now = f"points at {', '.join(found)}" if found else "has no MX"
    return Finding(
        Check.RETURN_PATH_MX,
        return_path_domain,
        Verdict.WRONG,
        f"{return_path_domain} {now}, not at the bounce listener {_host(bounce_host)}: "
        "bounces and complaints do not reach Hato",
        record,
    )


def ptr_finding(member: Member, names: Sequence[str], forward: Sequence[str]) -> Finding:
    """Forward-confirmed reverse DNS (FCrDNS) of a pool IP: a PTR naming its EHLO name
    (``names``), and that name's A/AAAA records (``forward``) holding the IP."""
    ip = member.ip
    reverse = dns.reversename.from_address(ip).to_text().rstrip(".")
    if not member.helo:
        return Finding(
            Check.PTR,
            ip,
            Verdict.WARNING,
            f"{ip} has no stored EHLO name (hato pool add POOL --member {ip}=NAME): its PTR "
            f"{', '.join(_host(n) for n in names) or '-'} is not compared",
        )
    helo = _host(member.helo)
    if helo not in [_host(n) for n in names]:
        now = (
            f"the PTR of {ip} names {', '.join(_host(n) for n in names)}"
            if names
            else f"{ip} has no PTR record"
        )
        return Finding(
            Check.PTR,
            ip,
            Verdict.WRONG,
            f"{now}; it must name the EHLO name {helo}",
            DnsRecord(reverse, "PTR", helo, f"reverse DNS of {ip} (its EHLO name)"),
        )
    addresses = {ipaddress.ip_address(a) for a in forward}
    if ipaddress.ip_address(ip) not in addresses:
        rtype = "A" if ipaddress.ip_address(ip).version == 4 else "AAAA"
        now = ", ".join(sorted(str(a) for a in addresses)) or "nothing"
        return Finding(
            Check.PTR,
            ip,
            Verdict.WRONG,
            f"{helo} (the PTR of {ip}) resolves to {now}, not back to {ip}",
            DnsRecord(helo, rtype, ip, f"forward-confirms the PTR of {ip}"),
        )
    return Finding(Check.PTR, ip, Verdict.OK, f"{ip} ↔ {helo} (forward-confirmed)")


# -- MTA-STS, TLS-RPT --------------------------------------------------------------------------


def parse_sts_policy(text: str) -> dict[str, list[str]]:
    """An MTA-STS policy file (RFC 8461 3.2): each key with its values (``mx`` repeats)."""
    policy: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            policy.setdefault(key.strip().lower(), []).append(value.strip())
    return policy


def mx_matches(host: str, pattern: str) -> bool:
    """RFC 8461 4.1: ``*.example.com`` matches one leftmost label, else the same name."""
    host, pattern = _host(host), _host(pattern)
    if pattern.startswith("*."):
        return host.count(".") >= 1 and host.split(".", 1)[1] == pattern[2:]
    return host == pattern


def sts_policy_findings(
    domain: str, policy: dict[str, list[str]], mx: Sequence[str]
) -> list[Finding]:
    """What the fetched policy says against the domain's MX hosts."""
    url = f"https://mta-sts.{domain}{MTA_STS_PATH}"
    if policy.get("version") != ["STSv1"]:
        return [Finding(Check.MTA_STS, url, Verdict.WRONG, "the policy has no version: STSv1")]
    mode = (policy.get("mode") or [""])[0]
    patterns = policy.get("mx", [])
    uncovered = [h for h in mx if not any(mx_matches(h, p) for p in patterns)]
    if mode not in ("enforce", "testing", "none"):
        return [Finding(Check.MTA_STS, url, Verdict.WRONG, f"the policy's mode {mode!r} is none")]
    if uncovered and mode != "none":
        return [
            Finding(
                Check.MTA_STS,
                url,
                Verdict.WRONG,
                f"the policy's mx lines do not cover {', '.join(_host(h) for h in uncovered)}: "
                "senders enforcing it cannot deliver there; add an mx: line for each",
            )
        ]
    if mode != "enforce":
        return [
            Finding(
                Check.MTA_STS,
                url,
                Verdict.WARNING,
                f"MTA-STS mode is {mode}: senders do not enforce TLS yet",
            )
        ]
    return [Finding(Check.MTA_STS, url, Verdict.OK, "MTA-STS policy enforced, covers every MX")]


# -- the lookups --------------------------------------------------------------------------------


async def _names(r: dns.asyncresolver.Resolver, name: str, rdtype: str) -> list[str] | None:
    """The answers to ``name``/``rdtype`` as text ([] when there are none); None when DNS
    failed."""
    try:
        answer = await r.resolve(name, rdtype)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError):
        return None
    if rdtype == "MX":
        return [rdata.exchange.to_text().rstrip(".") for rdata in answer]
    if rdtype in ("PTR", "CNAME"):
        return [rdata.target.to_text().rstrip(".") for rdata in answer]
    return [rdata.to_text() for rdata in answer]


def _dns_error(check: Check, subject: str, name: str) -> Finding:
    return Finding(check, subject, Verdict.DNS_ERROR, f"the lookup of {name} failed")


class DomainHealth:
    """Runs every check of one domain through the configured resolver. ``egress`` guards the
    MTA-STS policy fetch; ``https_port`` and ``tls`` (the port policy hosts listen on and
    the certificates trusted) are for tests."""

    def __init__(
        self,
        settings: DnsSettings,
        *,
        egress: Egress | None = None,
        https_port: int = 443,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.egress = egress or Egress()
        self.https_port = https_port
        self.tls = tls

    def return_path_domain(self, domain: str) -> str:
        return f"{self.settings.return_path_label}.{domain}"

    @property
    def bounce_host(self) -> str:
        return self.settings.bounce_mx or self.settings.return_path_host

    async def check(
        self, domain: dict[str, Any], members: Sequence[Member], *, pools: Sequence[str] = ()
    ) -> HealthReport:
        """Every check of the domains document ``domain``, sending from ``members`` (the IPs
        of ``pools``, the tenant's)."""
        name = domain["_id"]
        r = resolver(self.settings)
        parts = await asyncio.gather(
            self._spf(r, name, members, pools),
            self._dkim(domain),
            self._dmarc(r, name),
            self._return_path_mx(r, name),
            self._ptr(r, members),
            self._mta_sts(r, name),
        )
        return HealthReport(name, domain.get("tenant", ""), [f for part in parts for f in part])

    async def _spf(
        self,
        r: dns.asyncresolver.Resolver,
        domain: str,
        members: Sequence[Member],
        pools: Sequence[str],
    ) -> list[Finding]:
        rp = self.return_path_domain(domain)
        alias = await _names(r, rp, "CNAME")
        rp_record_name = alias[0] if alias else rp  # a CNAME's target holds its records
        findings = []
        for check, sender, record_name in (
            (Check.SPF, domain, domain),
            (Check.RETURN_PATH_SPF, rp, rp_record_name),
        ):
            texts = await txt(r, record_name)
            if texts is None:
                findings.append(_dns_error(check, sender, record_name))
                continue
            records = spf_records(texts)
            if not members:
                findings.append(self._spf_unknown_ips(check, sender, record_name, records, pools))
                continue
            blocking = sync_resolver(self.settings)
            results = await asyncio.gather(
                *(
                    asyncio.to_thread(spf_result, blocking, m.ip, sender, m.helo or sender)
                    for m in members
                )
            )
            findings.append(
                spf_finding(
                    check,
                    sender,
                    record_name,
                    records,
                    {m.ip: res for m, res in zip(members, results, strict=True)},
                    self.settings.spf_include,
                )
            )
        return findings

    def _spf_unknown_ips(
        self, check: Check, sender: str, record_name: str, records: list[str], pools: Sequence[str]
    ) -> Finding:
        include = f"include:{self.settings.spf_include}"
        unknown = (
            f"the pool {', '.join(pools) or 'default'} has no stored members (each dispatcher "
            "sends from its own IPs), so SPF is not evaluated for them"
        )
        if len(records) == 1 and include in records[0].split():
            return Finding(check, sender, Verdict.WARNING, f"SPF has {include}; {unknown}")
        if len(records) == 1 and check is Check.RETURN_PATH_SPF:  # the operator's own record
            return Finding(check, sender, Verdict.WARNING, f"SPF present; {unknown}")
        if len(records) == 1:
            value = records[0].replace("v=spf1", f"v=spf1 {include}", 1)
        else:
            value = spf_record_with(None, [], self.settings.spf_include)
        return Finding(
            check,
            sender,
            Verdict.WRONG,
            f"SPF of {sender} lacks {include}; {unknown}",
            DnsRecord(record_name, "TXT", value, "SPF: Hato's sending addresses may send"),
        )

    async def _dkim(self, domain: dict[str, Any]) -> list[Finding]:
        live = [k for k in domain.get("dkim", []) if status(k) != RETIRED]
        if not live:
            return [
                Finding(
                    Check.DKIM,
                    domain["_id"],
                    Verdict.WRONG,
                    f"{domain['_id']} has no DKIM key: hato dkim generate {domain['_id']}",
                )
            ]
        checks = await check_dkim({**domain, "dkim": live}, self.settings)
        keys = {k["selector"]: k for k in live}
        findings = []
        for c in checks:
            key = keys[c.selector]
            record = DnsRecord(
                txt_record_name(domain["_id"], c.selector),
                "TXT",
                txt_record_value(key),
                f"DKIM key {c.selector} ({key['algorithm']}, {status(key)})",
            )
            if c.status == "found":
                findings.append(
                    Finding(Check.DKIM, c.name, Verdict.OK, f"key {c.selector} published")
                )
            elif c.status == "dns-error":
                findings.append(_dns_error(Check.DKIM, c.name, c.name))
            else:
                says = (
                    f"key {c.selector} ({status(key)}) is not published"
                    if c.status == "missing"
                    else f"{c.name} holds another key than {c.selector} ({status(key)})"
                )
                findings.append(Finding(Check.DKIM, c.name, Verdict.WRONG, says, record))
        return findings

    async def _dmarc(self, r: dns.asyncresolver.Resolver, domain: str) -> list[Finding]:
        found_at = f"_dmarc.{domain}"
        texts = await txt(r, found_at)
        if texts is None:
            return [_dns_error(Check.DMARC, found_at, found_at)]
        org = organizational_domain(domain)
        if not any(parse_dmarc(t) for t in texts) and org != domain:
            found_at = f"_dmarc.{org}"  # RFC 7489 6.6.3: the organizational domain's
            texts = await txt(r, found_at)
            if texts is None:
                return [_dns_error(Check.DMARC, found_at, found_at)]
            if not any(parse_dmarc(t) for t in texts):
                found_at = f"_dmarc.{domain}"
        return dmarc_findings(
            domain,
            found_at,
            texts,
            dkim_domain=domain,  # the signer signs with the From domain's own key
            return_path_domain=self.return_path_domain(domain),
        )

    async def _return_path_mx(self, r: dns.asyncresolver.Resolver, domain: str) -> list[Finding]:
        rp = self.return_path_domain(domain)
        exchanges = await _names(r, rp, "MX")  # a CNAME to Hato's host answers with its MX
        if exchanges is None:
            return [_dns_error(Check.RETURN_PATH_MX, rp, rp)]
        record = DnsRecord(
            rp, "CNAME", self.settings.return_path_host, "return path: bounces come back to Hato"
        )
        return [mx_finding(rp, exchanges, self.bounce_host, record)]

    async def _ptr(self, r: dns.asyncresolver.Resolver, members: Sequence[Member]) -> list[Finding]:
        async def one(member: Member) -> Finding:
            reverse = dns.reversename.from_address(member.ip).to_text()
            names = await _names(r, reverse, "PTR")
            if names is None:
                return _dns_error(Check.PTR, member.ip, reverse)
            forward: list[str] = []
            if member.helo:
                rtype = "A" if ipaddress.ip_address(member.ip).version == 4 else "AAAA"
                found = await _names(r, member.helo, rtype)
                if found is None:
                    return _dns_error(Check.PTR, member.ip, member.helo)
                forward = found
            return ptr_finding(member, names, forward)

        return list(await asyncio.gather(*(one(m) for m in members)))

    async def _mta_sts(self, r: dns.asyncresolver.Resolver, domain: str) -> list[Finding]:
        mx = await _names(r, domain, "MX")
        if mx is None:
            return [_dns_error(Check.MTA_STS, domain, domain)]
        if not mx or mx == [""]:  # no MX, or a null MX (RFC 7505): it receives no mail
            return []
        findings = []
        sts_name, rpt_name = f"_mta-sts.{domain}", f"_smtp._tls.{domain}"
        sts = await txt(r, sts_name)
        if sts is None:
            findings.append(_dns_error(Check.MTA_STS, sts_name, sts_name))
        elif not [t for t in sts if t.replace(" ", "").startswith("v=STSv1;")]:
            findings.append(
                Finding(
                    Check.MTA_STS,
                    sts_name,
                    Verdict.WARNING,
                    f"{domain} receives mail but has no MTA-STS: senders may deliver to it "
                    f"without TLS; serve a policy at https://mta-sts.{domain}{MTA_STS_PATH} "
                    f"(version: STSv1, mode: enforce, an mx: line per MX: {', '.join(mx)}, "
                    "max_age: 604800), then publish",
                    DnsRecord(
                        sts_name,
                        "TXT",
                        f"v=STSv1; id={datetime.now(UTC):%Y%m%d%H%M%S}",
                        "MTA-STS: a policy is published (a new id for each change)",
                    ),
                )
            )
        else:
            findings.extend(await self._sts_policy(r, domain, mx))
        rpt = await txt(r, rpt_name)
        if rpt is None:
            findings.append(_dns_error(Check.TLS_RPT, rpt_name, rpt_name))
        elif not [t for t in rpt if t.replace(" ", "").startswith("v=TLSRPTv1;")]:
            findings.append(
                Finding(
                    Check.TLS_RPT,
                    rpt_name,
                    Verdict.WARNING,
                    f"{domain} receives mail but asks for no TLS reports (TLS-RPT)",
                    DnsRecord(
                        rpt_name,
                        "TXT",
                        f"v=TLSRPTv1; rua=mailto:tls-reports@{domain}",
                        "TLS-RPT: where senders report TLS failures",
                    ),
                )
            )
        else:
            findings.append(Finding(Check.TLS_RPT, rpt_name, Verdict.OK, "TLS-RPT published"))
        return findings

    async def _sts_policy(
        self, r: dns.asyncresolver.Resolver, domain: str, mx: Sequence[str]
    ) -> list[Finding]:
        host = f"mta-sts.{domain}"
        url = f"https://{host}{MTA_STS_PATH}"
        try:
            text = await self._fetch_policy(r, host)
        except Forbidden as exc:
            return [Finding(Check.MTA_STS, url, Verdict.WRONG, f"not fetched: {exc}")]
        except (httpx.HTTPError, ssl.SSLError, OSError, UnicodeDecodeError) as exc:
            return [
                Finding(
                    Check.MTA_STS,
                    url,
                    Verdict.WRONG,
                    f"the policy cannot be fetched ({type(exc).__name__}: {exc}): senders "
                    "ignore the MTA-STS record",
                )
            ]
        return sts_policy_findings(domain, parse_sts_policy(text), mx)

    async def _fetch_policy(self, r: dns.asyncresolver.Resolver, host: str) -> str:
        """The policy, fetched from an address of ``host`` the egress guard permits (resolved
        once, through Hato's resolver, and connected to as checked); no redirects."""
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            found += await _names(r, host, rtype) or []
        addresses = self.egress.admit(host, [ipaddress.ip_address(a) for a in found])
        target = httpx.URL(
            scheme="https", host=str(addresses[0]), port=self.https_port, path=MTA_STS_PATH
        )
        async with httpx.AsyncClient(
            verify=self.tls or True, timeout=self.settings.timeout, follow_redirects=False
        ) as client:
            request = client.build_request(
                "GET", target, headers={"Host": host}, extensions={"sni_hostname": host}
            )
            response = await client.send(request, stream=True)
            try:
                response.raise_for_status()
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_POLICY_BYTES:  # a policy is small: read no more
                        break
            finally:
                await response.aclose()
            return body[:MAX_POLICY_BYTES].decode("utf-8")


async def check_stored(
    health: DomainHealth, directory: Directory, pools: Pools, domain: dict[str, Any]
) -> HealthReport:
    """Check a stored domain as its tenant sends: from the members of the tenant's pools."""
    tenant = await directory.tenant(domain["tenant"]) or {}
    names = [tenant.get("pool") or DEFAULT_POOL, *tenant.get("other_pools", [])]
    members = [
        Member(m["ip"], m.get("helo"))
        for p in await pools.all()
        if p["_id"] in names
        for m in p.get("members", [])
    ]
    unique = list({m.ip: m for m in members}.values())
    return await health.check(domain, unique, pools=names)

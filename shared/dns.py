"""What a tenant publishes in DNS for a sending domain, and checking that it did.

A domain is verified when one of its DKIM keys is found, as stored, at
``<selector>._domainkey.<domain>`` through the configured resolver.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypeVar

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver

from shared.dkim import RETIRED, status, txt_record_name, txt_record_value
from shared.settings import DnsSettings

R = TypeVar("R", bound=dns.resolver.Resolver)


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    type: str
    value: str
    purpose: str

    def zone_line(self) -> str:
        value = f'"{self.value}"' if self.type == "TXT" else f"{self.value}."
        return f"{self.name}. IN {self.type} {value}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "value": self.value, "purpose": self.purpose}


def records_for(domain: dict[str, Any], settings: DnsSettings) -> list[DnsRecord]:
    """Every record the owner of ``domain`` (a domains document) must publish."""
    name = domain["_id"]
    records = [
        DnsRecord(
            txt_record_name(name, k["selector"]),
            "TXT",
            txt_record_value(k),
            f"DKIM key {k['selector']} ({k['algorithm']}, {status(k)})",
        )
        for k in domain.get("dkim", [])
        if status(k) != RETIRED
    ]
    records.append(
        DnsRecord(
            name,
            "TXT",
            f"v=spf1 include:{settings.spf_include} ~all",
            "SPF: Hato's sending addresses may send for the domain",
        )
    )
    records.append(
        DnsRecord(
            f"{settings.return_path_label}.{name}",
            "CNAME",
            settings.return_path_host,
            "return path: bounces come back to Hato",
        )
    )
    return records


def resolver(settings: DnsSettings) -> dns.asyncresolver.Resolver:
    """An async resolver using the configured nameservers (or the system's)."""
    return _configured(dns.asyncresolver.Resolver, settings)


def sync_resolver(settings: DnsSettings) -> dns.resolver.Resolver:
    """The same resolver, blocking: for libraries that look up by themselves (pyspf)."""
    return _configured(dns.resolver.Resolver, settings)


def _configured(kind: type[R], settings: DnsSettings) -> R:
    if not settings.nameservers:
        r = kind()
    else:
        r = kind(configure=False)
        servers: list[dns.nameserver.Nameserver] = []
        for entry in settings.nameservers:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "53")
            servers.append(dns.nameserver.Do53Nameserver(host or entry, int(port or 53)))
        r.nameservers = servers
    r.lifetime = settings.timeout
    return r


async def txt(r: dns.asyncresolver.Resolver, name: str) -> list[str] | None:
    """The TXT strings at ``name`` (each record's parts joined); None when DNS failed."""
    try:
        answer = await r.resolve(name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except (dns.exception.DNSException, OSError):
        return None
    return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, eq, value = part.partition("=")
        if eq:
            tags[key.strip()] = "".join(value.split())
    return tags


@dataclass(frozen=True, slots=True)
class KeyCheck:
    selector: str
    name: str
    status: str  # "found", "missing", "different", "dns-error"


async def check_dkim(domain: dict[str, Any], settings: DnsSettings) -> list[KeyCheck]:
    """For each DKIM key of the domain: is its record published, and is it this key?"""
    r = resolver(settings)

    async def one(key: dict[str, Any]) -> KeyCheck:
        name = txt_record_name(domain["_id"], key["selector"])
        records = await txt(r, name)
        if records is None:
            return KeyCheck(key["selector"], name, "dns-error")
        published = [_tags(t) for t in records if "p=" in t]
        if not published:
            return KeyCheck(key["selector"], name, "missing")
        if any(t.get("p") == key["public_key"] for t in published):
            return KeyCheck(key["selector"], name, "found")
        return KeyCheck(key["selector"], name, "different")

    return list(await asyncio.gather(*(one(k) for k in domain.get("dkim", []))))

"""Where mail for a domain goes: static routes first, then MX (RFC 5321 5.1, RFC 7505).

- MX records in preference order, equal preferences shuffled;
- a null MX (a single "0 .") means the domain accepts no mail: bounce;
- no MX: the domain's own A/AAAA records are the implicit MX;
- NXDOMAIN: bounce; any temporary DNS failure: defer;
- an MX address that is not public (loopback, private, link-local ..., see shared/egress.py)
  is not used unless the operator allows its network: a recipient's domain must not point
  Hato at its own inside. When none is left: bounce (5.4.4). Static routes are the
  operator's and are used as they are.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from services.dispatcher.routes import RouteTable
from shared.dns import resolver
from shared.egress import Egress
from shared.schemas import Reply
from shared.settings import DnsSettings


@dataclass(frozen=True, slots=True)
class MxHost:
    """One server to try: its name (for TLS and logs), address and port."""

    host: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}[{self.address}]:{self.port}"


@dataclass(frozen=True, slots=True)
class Route:
    """Servers to try in order, or the reply every recipient gets when there are none."""

    targets: tuple[MxHost, ...] = ()
    failure: Reply | None = None


NULL_MX = Reply(code=556, enhanced="5.1.10", text="the domain accepts no mail (null MX)")
INSIDE_MX = Reply(code=550, enhanced="5.4.4", text="the domain's mail hosts have no public address")


class MxResolver:
    def __init__(
        self,
        settings: DnsSettings,
        routes: RouteTable,
        *,
        port: int = 25,
        tenant_routes: dict[str, RouteTable] | None = None,
        egress: Egress | None = None,
    ) -> None:
        self.resolver: dns.asyncresolver.Resolver = resolver(settings)
        self.routes = routes
        self.tenant_routes = tenant_routes or {}
        self.port = port
        self.egress = egress or Egress()

    async def route(self, domain: str, tenant: str = "") -> Route:
        """A tenant's own static route, else the operator's, else DNS."""
        table = self.tenant_routes.get(tenant)
        static = (table.lookup(domain) if table else None) or self.routes.lookup(domain)
        if static is not None:
            return Route((MxHost(static.host, static.host, static.port),))
        try:
            hosts = await self._mx_hosts(domain)
        except _Failure as f:
            return Route(failure=f.reply)
        if hosts is None:
            return Route(failure=NULL_MX)
        targets: list[MxHost] = []
        inside = 0
        for host in hosts:
            try:
                addresses = await self._addresses(host)
            except _Failure:
                continue  # this MX does not resolve now; try the others
            public = [a for a in addresses if self.egress.permits(a)]
            inside += len(addresses) - len(public)
            targets += [MxHost(host, a, self.port) for a in public]
        if not targets and inside:
            return Route(failure=INSIDE_MX)
        if not targets:
            return Route(
                failure=Reply(code=451, enhanced="4.4.4", text=f"no MX host of {domain} resolves")
            )
        return Route(tuple(targets))

    async def _mx_hosts(self, domain: str) -> list[str] | None:
        """MX hosts in order (None for a null MX; [domain] when there is no MX)."""
        try:
            answer = await self.resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            raise _Failure(
                Reply(code=550, enhanced="5.1.2", text=f"{domain} does not exist (NXDOMAIN)")
            ) from None
        except dns.resolver.NoAnswer:
            return [domain]  # RFC 5321 5.1: the implicit MX
        except (dns.exception.DNSException, OSError) as exc:
            raise _Failure(
                Reply(code=451, enhanced="4.4.3", text=f"DNS lookup of {domain} MX failed: {exc}")
            ) from None
        records = [(r.preference, r.exchange.to_text().rstrip(".")) for r in answer]
        if len(records) == 1 and records[0][1] == "":
            return None  # RFC 7505 null MX
        by_pref: dict[int, list[str]] = {}
        for pref, host in records:
            if host:
                by_pref.setdefault(pref, []).append(host)
        hosts: list[str] = []
        for pref in sorted(by_pref):
            group = by_pref[pref]
            random.shuffle(group)  # spread load among equal preferences
            hosts += group
        return hosts

    async def _addresses(self, host: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(host, rdtype)
                found += [r.address for r in answer]
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except (dns.exception.DNSException, OSError) as exc:
                if not found:
                    raise _Failure(
                        Reply(
                            code=451, enhanced="4.4.3", text=f"DNS lookup of {host} failed: {exc}"
                        )
                    ) from None
        if not found:
            raise _Failure(Reply(code=451, enhanced="4.4.4", text=f"{host} has no address"))
        return found


class _Failure(Exception):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply

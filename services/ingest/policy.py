"""Who may relay, and with which sender domains: tenants' authorised networks and domains,
loaded from the store and kept in memory (reloaded every few seconds)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from shared import logging as hlog
from shared.store import Store

log = hlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    pool: str


class RelayPolicy:
    """Answers "which tenant is this client?" and "may that tenant send from this domain?"."""

    def __init__(self) -> None:
        self._networks: list[tuple[Network, Tenant]] = []
        self._domains: dict[str, str] = {}

    def load(self, tenants: list[dict], domains: list[dict]) -> None:
        networks: list[tuple[Network, Tenant]] = []
        for doc in tenants:
            tenant = Tenant(doc["_id"], doc.get("pool", "default"))
            for cidr in doc.get("networks", []):
                try:
                    networks.append((ipaddress.ip_network(cidr, strict=False), tenant))
                except ValueError:
                    log.warning("ignoring a bad network", tenant=tenant.name, network=cidr)
        # Most specific network first, so a /32 beats the /24 around it.
        networks.sort(key=lambda nt: nt[0].prefixlen, reverse=True)
        self._networks = networks
        self._domains = {d["_id"]: d["tenant"] for d in domains if d.get("verified")}

    async def refresh(self, store: Store) -> None:
        self.load(await store.directory.tenants(), await store.directory.domains())

    def tenant_for_peer(self, ip: str) -> Tenant | None:
        """The tenant whose authorised networks hold ``ip``, if any."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        for network, tenant in self._networks:
            if addr.version == network.version and addr in network:
                return tenant
        return None

    def may_send_from(self, tenant: Tenant, domain: str) -> bool:
        """True when ``domain`` (or a parent of it) is a verified domain of ``tenant``."""
        labels = domain.lower().split(".")
        for i in range(len(labels) - 1):
            owner = self._domains.get(".".join(labels[i:]))
            if owner is not None:
                return owner == tenant.name
        return False

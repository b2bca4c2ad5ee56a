"""Who may relay, and with which sender domains: tenants' authorised networks and domains,
loaded from the store and kept in memory (reloaded every few seconds)."""

from __future__ import annotations

import ipaddress

from shared import logging as hlog
from shared.directory import Identity, identity_of
from shared.domains import domain_of, walk_up
from shared.store import Store

log = hlog.get_logger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


_PEERS_KEPT = 4096


class RelayPolicy:
    """Answers "which tenant is this client?" and "may that tenant send from this domain?"."""

    def __init__(self) -> None:
        self._networks: list[tuple[Network, Identity]] = []
        self._domains: dict[str, str] = {}
        self._tenants: dict[str, dict] = {}
        self._peers: dict[str, Identity | None] = {}  # tenant_for_peer's answers, per load

    def load(self, tenants: list[dict], domains: list[dict]) -> None:
        networks: list[tuple[Network, Identity]] = []
        for doc in tenants:
            for cidr in doc.get("networks", []):
                try:
                    network = ipaddress.ip_network(cidr, strict=False)
                except ValueError:
                    log.warning("ignoring a bad network", tenant=doc["_id"], network=cidr)
                    continue
                identity = identity_of(doc, credential=f"network:{network}")
                networks.append((network, identity))
        # Most specific network first, so a /32 beats the /24 around it.
        networks.sort(key=lambda nt: nt[0].prefixlen, reverse=True)
        self._networks = networks
        self._domains = {d["_id"]: d["tenant"] for d in domains if d.get("verified")}
        self._tenants = {t["_id"]: t for t in tenants}
        self._peers = {}

    async def refresh(self, store: Store) -> None:
        self.load(await store.directory.tenants(), await store.directory.domains())

    def identity(self, tenant: str, **kw) -> Identity | None:
        """The identity of a tenant known to the policy (None for an unknown tenant)."""
        doc = self._tenants.get(tenant)
        return None if doc is None else identity_of(doc, **kw)

    def tenant_for_peer(self, ip: str) -> Identity | None:
        """The identity of the tenant whose authorised networks hold ``ip``, if any. Asked
        twice a connection (the greeting's pause, then MAIL) by the same few addresses: the
        answers are kept until the next load (at most _PEERS_KEPT of them)."""
        if ip in self._peers:
            return self._peers[ip]
        if len(self._peers) >= _PEERS_KEPT:
            self._peers.clear()
        found = self._peers[ip] = self._lookup(ip)
        return found

    def _lookup(self, ip: str) -> Identity | None:
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

    def may_send_from(self, identity: Identity, address: str) -> bool:
        """True when the address's domain (or a parent of it) is a verified domain of the
        identity's tenant, and the identity's credential allows that address."""
        for domain in walk_up(domain_of(address)):
            owner = self._domains.get(domain)
            if owner is not None:
                return owner == identity.tenant and identity.allows_from(address)
        return False

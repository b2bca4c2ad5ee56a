"""IP pools and affinity: which source IP sends a destination domain's mail.

A domain keeps its source IP: rendezvous hashing over the pool's live members picks it, so a
member joining or leaving moves only the domains that hash to it. A member is live while the
dispatcher instance owning its IP sends heartbeats. Each member may have a warm-up plan:
its daily cap for day 1, 2, ... since it started (the last value holds afterwards); a member
at its cap is passed over for the next one in the domain's order.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.directory import Pools


@dataclass(frozen=True, slots=True)
class Member:
    ip: str
    helo: str
    warmup: tuple[int, ...] = ()
    started_at: datetime | None = None

    def daily_cap(self, today: datetime) -> int | None:
        if not self.warmup:
            return None
        start = self.started_at or today
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        day = max((today - start).days, 0)
        return self.warmup[min(day, len(self.warmup) - 1)]


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    members: tuple[Member, ...]


def rendezvous(key: str, members: Sequence[Member]) -> list[Member]:
    """Members in the order ``key`` prefers them (highest random weight first)."""

    def weight(m: Member) -> int:
        return int.from_bytes(hashlib.sha256(f"{key}|{m.ip}".encode()).digest()[:8], "big")

    return sorted(members, key=weight, reverse=True)


@dataclass
class PoolView:
    """The pools and which of their members are live, refreshed from the store."""

    store: Pools
    own_ips: tuple[str, ...]
    default_helo: str
    heartbeat_timeout: float
    configured_pools: tuple[str, ...] = ()
    pools: dict[str, Pool] = field(default_factory=dict)
    live: set[str] = field(default_factory=set)
    counts: dict[str, tuple[str, int]] = field(default_factory=dict)  # ip -> (day, sent)
    unflushed: dict[str, int] = field(default_factory=dict)  # ip -> sent, not in the store yet

    async def refresh(self) -> None:
        pools = {}
        for doc in await self.store.all():
            pools[doc["_id"]] = Pool(
                doc["_id"],
                tuple(
                    Member(
                        m["ip"],
                        m.get("helo") or self.default_helo,
                        tuple(m.get("warmup") or ()),
                        m.get("started_at"),
                    )
                    for m in doc.get("members", [])
                ),
            )
        # Pools named in the settings but absent from the store are served by this
        # instance's own IPs (a single instance needs no pool documents).
        for name in self.configured_pools:
            pools.setdefault(
                name, Pool(name, tuple(Member(ip, self.default_helo) for ip in self.own_ips))
            )
        self.pools = pools
        self.live = await self.store.live_ips(self.heartbeat_timeout) | set(self.own_ips)
        today = time.strftime("%Y%m%d", time.gmtime())
        stored = await self.store.sent_today()
        for ip, n in stored.items():
            if self.sent_today(ip) < n:
                self.counts[ip] = (today, n)

    def served(self) -> list[str]:
        """The pools with a member IP of this instance."""
        return [p.name for p in self.pools.values() if any(m.ip in self.own_ips for m in p.members)]

    def member(self, ip: str) -> Member:
        for pool in self.pools.values():
            for m in pool.members:
                if m.ip == ip:
                    return m
        return Member(ip, self.default_helo)

    def choose(self, pool: str, domain: str, *, avoid: Collection[str] = ()) -> Member | None:
        """The live member that sends ``domain``'s mail now (None: all are at their cap or
        in ``avoid``, the IPs reply rules keep away from the destination). A member avoided
        passes the domain to the next in its order, as one at its cap does."""
        members = [m for m in self.pools[pool].members if m.ip in self.live and m.ip not in avoid]
        today = datetime.now(UTC)
        for m in rendezvous(domain, members):
            cap = m.daily_cap(today)
            if cap is None or self.sent_today(m.ip) < cap:
                return m
        return None

    def sent_today(self, ip: str) -> int:
        day, n = self.counts.get(ip, ("", 0))
        return n if day == time.strftime("%Y%m%d", time.gmtime()) else 0

    def count(self, ip: str, n: int = 1) -> None:
        """Record ``n`` messages sent from ``ip``: here at once, in the store (for the other
        instances and ``hato pool list``) at the next ``flush``. Warm-up caps are per day, so a
        few seconds' lag costs nothing, and the store gets one write per heartbeat instead of
        one per batch of deliveries."""
        today = time.strftime("%Y%m%d", time.gmtime())
        day, sent = self.counts.get(ip, (today, 0))
        self.counts[ip] = (today, (sent if day == today else 0) + n)
        self.unflushed[ip] = self.unflushed.get(ip, 0) + n

    async def flush(self) -> None:
        """Write the sends counted since the last flush (kept for the next one on failure)."""
        pending, self.unflushed = self.unflushed, {}
        try:
            for ip, n in pending.items():
                await self.store.add_sent(ip, n)
        except Exception:
            for ip, n in pending.items():
                self.unflushed[ip] = self.unflushed.get(ip, 0) + n
            raise

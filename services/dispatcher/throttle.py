"""Pace per (source IP, destination domain): concurrent transactions, messages per connection,
messages per minute, recipients per transaction and the largest message, with presets for
the large receivers that throttle hard and per-tenant overrides. A 421 or a 4.7.x "slow
down" halves the pace for that pair; each success brings it back a little.

Every (source IP, domain) pair is served by one dispatcher instance (the IP's owner), so the
pace is kept in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from shared.domains import walk_up
from shared.schemas import Reply

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pace:
    """What a destination takes: concurrent transactions, messages per connection, messages
    per minute, recipients per transaction, and the largest message (bytes as sent; 0: no
    limit known, the receiver says)."""

    connections: int = 10
    per_connection: int = 100
    per_minute: float = 600.0
    recipients: int = 100  # RFC 5321 4.5.3.1.8: every server must take 100 per transaction
    max_size: int = 0


MIB = 1024 * 1024
DEFAULT = Pace()
# The Japanese carriers' published limits (2026): at most 100 recipients per transaction,
# few connections, and small messages. au and SoftBank count recipients per *session*, so
# their connections carry one transaction each. Sizes are taken in MiB, on the generous side
# of what each carrier publishes: a message refused here is bounced without being tried.
_DOCOMO = Pace(connections=2, per_connection=10, per_minute=60, recipients=100, max_size=10 * MIB)
_AU = Pace(connections=2, per_connection=1, per_minute=60, recipients=100, max_size=3 * MIB)
_SOFTBANK = Pace(connections=2, per_connection=1, per_minute=60, recipients=100, max_size=2 * MIB)
_SOFTBANK_I = Pace(
    connections=2, per_connection=1, per_minute=60, recipients=100, max_size=10 * MIB
)
_RAKUTEN = Pace(connections=2, per_connection=10, per_minute=60, recipients=100, max_size=10 * MIB)
_GOOGLE = Pace(connections=10, per_connection=100, per_minute=1200, max_size=50 * MIB)
_MICROSOFT = Pace(connections=5, per_connection=50, per_minute=600, max_size=25 * MIB)
_YAHOO = Pace(connections=5, per_connection=50, per_minute=600, max_size=25 * MIB)
_APPLE = Pace(connections=5, per_connection=50, per_minute=600, max_size=20 * MIB)
PRESETS: dict[str, Pace] = {
    "docomo.ne.jp": _DOCOMO,
    "ezweb.ne.jp": _AU,
    "au.com": _AU,
    "softbank.ne.jp": _SOFTBANK,
    "ymobile.ne.jp": _SOFTBANK,
    "i.softbank.jp": _SOFTBANK_I,
    "rakumail.jp": _RAKUTEN,
    "yahoo.co.jp": Pace(
        connections=3, per_connection=20, per_minute=120, recipients=100, max_size=25 * MIB
    ),
    "gmail.com": _GOOGLE,
    "googlemail.com": _GOOGLE,
    "outlook.com": _MICROSOFT,
    "hotmail.com": _MICROSOFT,
    "live.com": _MICROSOFT,
    "msn.com": _MICROSOFT,
    "yahoo.com": _YAHOO,
    "aol.com": _YAHOO,
    "icloud.com": _APPLE,
    "me.com": _APPLE,
    "mac.com": _APPLE,
}
MIN_FACTOR = 1 / 16


def slows_down(reply: Reply) -> bool:
    """421, or a 4.7.x status: the receiver asks us to slow down."""
    return reply.code == 421 or (400 <= reply.code < 500 and reply.enhanced.startswith("4.7."))


@dataclass
class _Flow:
    """The traffic of one (source IP, domain, tenant): its pace, free slots, next send and
    the factor a receiver's "slow down" set."""

    limits: Pace
    slots: asyncio.Semaphore
    next_at: float = 0.0
    factor: float = 1.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Throttle:
    def __init__(
        self,
        overrides: dict[str, Pace] | None = None,
        tenant_overrides: dict[str, dict[str, Pace]] | None = None,
    ) -> None:
        self.domains = {**PRESETS, **(overrides or {})}
        self.tenants = tenant_overrides or {}
        self._paces: dict[tuple[str, str, str], _Flow] = {}

    def limits(self, domain: str, tenant: str = "") -> Pace:
        """The limits for a destination domain (its parents' presets apply to subdomains)."""
        for table in (self.tenants.get(tenant, {}), self.domains):
            for name in walk_up(domain):
                hit = table.get(name)
                if hit is not None:
                    return hit
        return DEFAULT

    def _pace(self, ip: str, domain: str, tenant: str) -> _Flow:
        key = (ip, domain, tenant if domain in self.tenants.get(tenant, {}) else "")
        pace = self._paces.get(key)
        if pace is None:
            limits = self.limits(domain, tenant)
            pace = self._paces[key] = _Flow(limits, asyncio.Semaphore(limits.connections))
        return pace

    @contextlib.asynccontextmanager
    async def slot(
        self, ip: str, domain: str, tenant: str = "", *, cap: float = 1.0
    ) -> AsyncIterator[Pace]:
        """Wait for a transaction slot and the per-minute pace (at most ``cap`` of it: what
        a reply rule keeps); yields the limits."""
        pace = self._pace(ip, domain, tenant)
        async with pace.slots:
            async with pace.lock:
                now = time.monotonic()
                wait = pace.next_at - now
                pace.next_at = max(now, pace.next_at) + 60.0 / (
                    pace.limits.per_minute * min(pace.factor, cap)
                )
            if wait > 0:
                await asyncio.sleep(wait)
            yield pace.limits

    def observe(self, ip: str, domain: str, tenant: str, replies: list[Reply]) -> None:
        """Slow down on 421 / 4.7.x; recover gradually on success."""
        pace = self._pace(ip, domain, tenant)
        if any(slows_down(r) for r in replies):
            pace.factor = max(pace.factor / 2, MIN_FACTOR)
            pace.next_at = time.monotonic() + 60.0 / (pace.limits.per_minute * pace.factor)
        elif any(200 <= r.code < 300 for r in replies):
            pace.factor = min(1.0, pace.factor * 1.1)

    def factor(self, ip: str, domain: str, tenant: str = "") -> float:
        return self._pace(ip, domain, tenant).factor


def too_big(size: int, limits: Pace) -> bool:
    """A message of ``size`` bytes is over the destination's known limit: it is bounced at
    once rather than tried (the receiver would refuse it after the whole upload)."""
    return limits.max_size > 0 and size > limits.max_size


def batches(recipients: Sequence[T], limits: Pace) -> list[list[T]]:
    """``recipients`` in groups of at most ``limits.recipients``, one per transaction."""
    n = limits.recipients
    return [list(recipients[i : i + n]) for i in range(0, len(recipients), n)]

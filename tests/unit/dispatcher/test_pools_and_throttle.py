"""Affinity, warm-up and pacing rules."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from services.dispatcher.pools import Member, Pool, PoolView, rendezvous
from services.dispatcher.throttle import MIN_FACTOR, PRESETS, Pace, Throttle
from shared.schemas import Reply

DOMAINS = [f"domain{i}.test" for i in range(400)]


def members(n: int) -> list[Member]:
    return [Member(f"192.0.2.{i}", f"m{i}.test") for i in range(1, n + 1)]


def test_adding_a_member_moves_only_the_domains_it_wins() -> None:
    """Rendezvous hashing: with a fifth member, about a fifth of the domains move, all of
    them to the new member."""
    before = {d: rendezvous(d, members(4))[0].ip for d in DOMAINS}
    after = {d: rendezvous(d, members(5))[0].ip for d in DOMAINS}
    moved = [d for d in DOMAINS if before[d] != after[d]]
    assert all(after[d] == "192.0.2.5" for d in moved)
    assert 0.1 < len(moved) / len(DOMAINS) < 0.3


class FakePools:
    def __init__(self, sent: dict[str, int]) -> None:
        self.sent = sent

    async def add_sent(self, ip, n):
        self.sent[ip] = self.sent.get(ip, 0) + n


def view(pool_members: list[Member]) -> PoolView:
    v = PoolView(FakePools({}), ("192.0.2.1",), "out.test", 15)
    v.pools = {"bulk": Pool("bulk", tuple(pool_members))}
    v.live = {m.ip for m in pool_members}
    return v


async def test_a_member_at_its_warm_up_cap_is_passed_over_until_tomorrow() -> None:
    """A warming IP at its day's cap hands its domains to the next member, the last step of its plan
    holds for good, and its sends reach the store at the next flush, each once."""
    started = datetime.now(UTC) - timedelta(days=1)  # day 2 of its plan: cap 3
    warm = Member("192.0.2.1", "a.test", warmup=(1, 3, 10), started_at=started)
    other = Member("192.0.2.2", "b.test")
    v = view([warm, other])
    domain = next(d for d in DOMAINS if rendezvous(d, [warm, other])[0] is warm)
    assert v.choose("bulk", domain) is warm
    v.count(warm.ip, 3)
    assert v.choose("bulk", domain) is other
    assert warm.daily_cap(datetime.now(UTC) + timedelta(days=30)) == 10  # the last step holds
    assert v.store.sent == {}  # the other instances learn at the next flush ...
    await v.flush()
    v.count(warm.ip, 1)
    await v.flush()
    assert v.store.sent == {warm.ip: 4}  # ... each send once


def test_a_member_not_live_is_skipped_and_none_when_all_are_capped() -> None:
    """A member without a heartbeat is never chosen, and when every live one is at its cap none is:
    the job waits rather than go over a warm-up."""
    a = Member("192.0.2.1", "a.test", warmup=(0,), started_at=datetime.now(UTC))
    b = Member("192.0.2.2", "b.test")
    v = view([a, b])
    v.live = {a.ip}
    assert v.choose("bulk", "x.test") is None


def test_limits_come_from_presets_parents_and_tenant_overrides() -> None:
    """A domain's limits are its tenant's own, else the configured or preset ones, a subdomain
    taking its parent's; any other domain gets the defaults."""
    t = Throttle(
        {"example.com": Pace(per_minute=5)}, {"acme": {"docomo.ne.jp": Pace(connections=1)}}
    )
    assert t.limits("docomo.ne.jp") == PRESETS["docomo.ne.jp"]
    assert t.limits("mail.example.com").per_minute == 5
    assert t.limits("docomo.ne.jp", "acme").connections == 1
    assert t.limits("elsewhere.test") == Pace()


async def test_pace_halves_on_421_and_recovers_on_success() -> None:
    """Each 421 or 4.7.x halves the pace, down to a floor of 1/16; successes bring it back to full
    speed and no further."""
    t = Throttle({"x.test": Pace(connections=1, per_minute=600)})
    t.observe("ip", "x.test", "", [Reply(code=421, enhanced="4.7.0", text="slow down")])
    assert t.factor("ip", "x.test") == 0.5
    for _ in range(20):
        t.observe("ip", "x.test", "", [Reply(code=451, enhanced="4.7.1", text="later")])
    assert t.factor("ip", "x.test") == MIN_FACTOR
    for _ in range(200):
        t.observe("ip", "x.test", "", [Reply(code=250)])
    assert t.factor("ip", "x.test") == 1.0


async def test_the_per_minute_pace_spaces_transactions() -> None:
    """Free connection slots do not bypass the per-minute pace: at 600 a minute, four transactions
    started at once go 0.1 s apart."""
    t = Throttle({"x.test": Pace(connections=5, per_minute=600)})  # one per 0.1 s
    stamps = []

    async def one() -> None:
        async with t.slot("ip", "x.test"):
            stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(4)))
    stamps.sort()
    assert stamps[-1] - stamps[0] >= 0.25

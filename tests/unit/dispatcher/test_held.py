"""A suspended delivery: it waits as the same attempt, marked held, nothing recorded; past its
maximum age it expires instead of waiting for ever."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from services.dispatcher.mx import MxHost, Route
from services.dispatcher.pools import Member
from services.dispatcher.service import Dispatcher
from shared.broker import Delivery
from shared.errors import Held
from shared.queue_control import Action, ControlSet, Scope, control_id
from shared.schemas import DeliveryJob, Recipient, RecipientStatus, utcnow
from shared.testing import FakeBroker, ManualClock, MemoryEvents

MEMBER = Member("127.0.0.2", "out.hato.test")
SUSPENDED = {
    "_id": control_id(Action.SUSPEND, Scope(domain="held.test")),
    "action": "suspend",
    "domain": "held.test",
    "created_at": utcnow(),
    "expires_at": None,
}


def job(age: float) -> DeliveryJob:
    return DeliveryJob(
        message_id="m1",
        tenant="acme",
        mail_from="orders@shop.test",
        domain="held.test",
        recipients=(Recipient(id="r1", address="a@held.test"),),
        pool="default",
        created_at=utcnow() - timedelta(seconds=age),
    )


@dataclass
class Messages:
    """Writes an attempt's events through ``events``, as ``Messages`` does."""

    events: MemoryEvents
    attempts: list[Any] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)

    async def pending_recipients(self, ids: Any) -> set[str]:
        return set(ids)

    async def record_attempt(self, results: Any, events: Any = (), **kw: Any) -> None:
        self.attempts.append((list(results), kw))
        await self.events.write(events)

    async def results_reported(self, ids: Any) -> None:
        self.reported += list(ids)


@dataclass
class Store:
    events: MemoryEvents = field(default_factory=MemoryEvents)
    messages: Messages = field(init=False)

    def __post_init__(self) -> None:
        self.messages = Messages(self.events)


@dataclass
class Waiting:
    held: list[tuple[list[str], str, str]] = field(default_factory=list)

    async def mark_held(self, ids: Any, reason: str, source_ip: str) -> None:
        self.held.append((list(ids), reason, source_ip))


class Mx:
    async def route(self, domain: str, tenant: str = "") -> Route:
        return Route((MxHost("mx.held.test", "127.0.0.21", 25),))


class View:
    def count(self, ip: str, n: int = 1) -> None:
        raise AssertionError("nothing is sent while suspended")


class Client:
    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is sent while suspended")


def dispatcher(
    store: Store, broker: FakeBroker, waiting: Waiting, clock: ManualClock | None = None
) -> Dispatcher:
    d = Dispatcher(
        store,  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        View(),  # type: ignore[arg-type]
        Mx(),  # type: ignore[arg-type]
        Client(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        retry_delays=[60],
        max_age=3600,
        hold_delay=5,
        waiting=waiting,  # type: ignore[arg-type]
        clock=clock or ManualClock(),
    )
    d.control_set = ControlSet.of([SUSPENDED])
    return d


async def test_a_suspended_delivery_waits_as_the_same_attempt_and_records_nothing() -> None:
    """The job is held (a retry that does not count), its recipients marked with why; no
    attempt, event or result is written."""
    store, broker, waiting = Store(), FakeBroker(), Waiting()
    young = job(10)
    with pytest.raises(Held) as held:
        await dispatcher(store, broker, waiting).deliver(
            MEMBER, young, Delivery(young, b"", 1, "q")
        )
    assert held.value.delay == 5 and not held.value.counts
    assert waiting.held == [(["r1"], "domain held.test", "127.0.0.2")]
    assert store.messages.attempts == [] and store.events.stored == {} and broker.published == []


async def test_a_suspended_delivery_past_its_maximum_age_expires() -> None:
    """Held past the maximum age, the recipient ends expired with a reply saying it was
    suspended, reported to the bounce service like any expiry."""
    store, broker, waiting = Store(), FakeBroker(), Waiting()
    old = job(4000)
    await dispatcher(store, broker, waiting).deliver(MEMBER, old, Delivery(old, b"", 3, "q"))
    [(results, kw)] = store.messages.attempts
    assert [r.status for r in results] == [RecipientStatus.EXPIRED]
    assert results[0].reply.enhanced == "4.4.7" and "suspended" in results[0].reply.text
    assert (
        kw == {"source_ip": "127.0.0.2"}
        and store.messages.reported == ["r1"]
        and waiting.held == []
    )


async def test_a_suspended_delivery_expires_when_the_clock_passes_its_maximum_age() -> None:
    """The same job, held while the dispatcher's clock is within the maximum age (3,600 s),
    expires once the clock has moved past it — no job made old by hand."""
    store, broker, waiting, clock = Store(), FakeBroker(), Waiting(), ManualClock()
    young = job(0).model_copy(update={"created_at": clock()})
    d = dispatcher(store, broker, waiting, clock)
    clock.advance(3599)
    with pytest.raises(Held):
        await d.deliver(MEMBER, young, Delivery(young, b"", 1, "q"))
    assert store.messages.attempts == []
    clock.advance(1)
    await d.deliver(MEMBER, young, Delivery(young, b"", 2, "q"))
    [(results, _)] = store.messages.attempts
    assert [r.status for r in results] == [RecipientStatus.EXPIRED]


class Pools:
    """Two live members; ``choose`` as PoolView's: the first not avoided."""

    own_ips = ("127.0.0.2", "127.0.0.3")

    def choose(self, pool: str, domain: str, *, avoid: Any = ()) -> Member | None:
        for ip in self.own_ips:
            if ip not in avoid:
                return Member(ip, "out.hato.test")
        return None


def avoiding(*ips: str) -> ControlSet:
    return ControlSet.of(
        {
            "_id": control_id(Action.AVOID, Scope(source_ip=ip, provider="held.test")),
            "action": "avoid",
            "source_ip": ip,
            "provider": "held.test",
            "expires_at": None,
        }
        for ip in ips
    )


async def test_rules_pass_an_avoided_ip_over_and_hold_when_every_member_is_avoided() -> None:
    """The pool's next member takes the mail of an IP a rule keeps away; with every member
    kept away the job waits (held), and once too old it gets one last attempt."""
    store, broker, waiting = Store(), FakeBroker(), Waiting()
    d = dispatcher(store, broker, waiting)
    d.view = Pools()  # type: ignore[assignment]
    chosen: list[str] = []

    async def deliver(member: Member, job: DeliveryJob, delivery: Delivery) -> None:
        chosen.append(member.ip)

    d.deliver = deliver  # type: ignore[method-assign]
    young, old = job(10), job(4000)
    d.control_set = avoiding("127.0.0.2")
    await d.route(Delivery(young, b"", 1, "deliver.default"))
    d.control_set = avoiding("127.0.0.2", "127.0.0.3")
    with pytest.raises(Held):
        await d.route(Delivery(young, b"", 1, "deliver.default"))
    await d.route(Delivery(old, b"", 1, "deliver.default"))
    assert chosen == ["127.0.0.3", "127.0.0.2"]

"""A sign job whose event publish failed comes back and publishes what its first run stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from services.signer.keys import Choice
from services.signer.service import Signer
from services.signer.settings import SignerSettings
from shared.broker import Delivery
from shared.errors import Unavailable
from shared.ids import new_id
from shared.schemas import DeliveryJob, EventType, Recipient, SignJob
from shared.testing import FakeBroker, MemoryEvents
from shared.unsubscribe import Unsubscribe, field_value

JOB = SignJob(
    message_id="m1",
    tenant="acme",
    mail_from="orders@shop.test",
    from_domain="shop.test",
    recipients=(Recipient(id="r1", address="a@x.test"), Recipient(id="r2", address="b@y.test")),
    pool="default",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


class NoKeys:
    async def choose(self, tenant: str, domain: str) -> Choice:
        return Choice(keys=(), domain=None, aligned=False)


@dataclass
class Events(MemoryEvents):
    writes: int = 0

    async def append(self, events: list) -> None:
        self.writes += 1
        await self.write(events)

    async def signing(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return {
            e.message_id: self.doc(e)
            for e in self.stored.values()
            if e.message_id in ids and e.type in (EventType.SIGNED, EventType.UNSIGNED)
        }


@dataclass
class Messages:
    final: set[str] = field(default_factory=set)

    async def pending_recipients(self, ids: Any) -> set[str]:
        return {i for i in ids if i not in self.final}


@dataclass
class Store:
    events: Events = field(default_factory=Events)
    messages: Messages = field(default_factory=Messages)


def delivery(*, redelivered: bool) -> Delivery:
    return Delivery(JOB, b"Subject: x\r\n\r\nhi\r\n", 1, "sign", redelivered=redelivered)


async def test_a_refused_event_publish_is_retried_with_the_stored_event() -> None:
    """The event publish is refused: the job is not done (Unavailable, so consume() retries
    it); back, it publishes the event its first run stored, same id, writing nothing."""
    store, broker = Store(), FakeBroker(refuse_events=1)
    signer = Signer(store, broker, NoKeys(), settings=SignerSettings())  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        await signer.handle(delivery(redelivered=False))
    assert broker.events == [] and len(store.events.stored) == 1
    (stored,) = store.events.stored.values()
    assert stored.type is EventType.UNSIGNED

    await signer.handle(delivery(redelivered=True))
    assert broker.events == [stored] and store.events.writes == 1
    # Whether the first run's delivery jobs left is known nowhere: they are published again
    # (the dispatcher sends each recipient once).
    jobs = [m for m, _ in broker.unbatched() if isinstance(m, DeliveryJob)]
    assert sorted(j.domain for j in jobs) == ["x.test", "x.test", "y.test", "y.test"]


async def test_a_sign_job_back_leaves_out_delivery_jobs_of_final_recipients() -> None:
    """Back after its recipients of a domain were delivered, a sign job publishes no
    delivery job for them."""
    store, broker = Store(), FakeBroker()
    signer = Signer(store, broker, NoKeys(), settings=SignerSettings())  # type: ignore[arg-type]
    await signer.handle(delivery(redelivered=False))
    store.messages.final = {"r1"}
    broker.published.clear()
    await signer.handle(delivery(redelivered=True))
    assert [m.domain for m, _ in broker.unbatched()] == ["y.test"]
    assert len({e.id for e in broker.events}) == 1 and len(broker.events) == 2


async def test_unsubscribe_gives_each_recipient_its_own_copy_and_job() -> None:
    """A job sent to a list fans out one delivery job per recipient, each copy with its own
    List-Unsubscribe (the recipient's link and mailto) in place of the message's own; back
    after one recipient is final, it publishes the other's job only, with its own copy."""
    r1, r2 = Recipient(id=new_id(), address="a@x.test"), Recipient(id=new_id(), address="b@x.test")
    job = JOB.model_copy(update={"recipients": (r1, r2), "unsubscribe_list": "news"})
    unsubscribe = Unsubscribe(b"k" * 32, "https://mail.example.com")
    raw = b"List-Unsubscribe: <mailto:own@shop.test>\r\nSubject: x\r\n\r\nhi\r\n"
    store, broker = Store(), FakeBroker()
    signer = Signer(
        store,  # type: ignore[arg-type]
        broker,  # type: ignore[arg-type]
        NoKeys(),  # type: ignore[arg-type]
        settings=SignerSettings(),
        unsubscribe=unsubscribe,
    )
    await signer.handle(Delivery(job, raw, 1, "sign", redelivered=False))
    published = [(m, p) for m, p in broker.unbatched() if isinstance(m, DeliveryJob)]
    assert [m.recipients for m, _ in published] == [(r1,), (r2,)]
    for (_, payload), r in zip(published, (r1, r2), strict=True):
        assert b"own@shop.test" not in payload and payload.count(b"List-Unsubscribe:") == 1
        link = field_value(payload, b"list-unsubscribe") or ""
        token = link.split("/u/")[1].split(">")[0]
        assert unsubscribe.parse_link(token).address == r.address  # type: ignore[union-attr]
        assert unsubscribe.mailto_address(r.id, "shop.test").split("@")[0][:20] in link
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in payload

    store.messages.final.add(r1.id)
    broker.published.clear()
    await signer.handle(Delivery(job, raw, 1, "sign", redelivered=True))
    again = [(m, p) for m, p in broker.unbatched() if isinstance(m, DeliveryJob)]
    assert [m.recipients for m, _ in again] == [(r2,)]

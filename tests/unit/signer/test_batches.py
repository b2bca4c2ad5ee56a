"""A sign batch: each message signed as if it came alone, handed on together; a batch that
fails goes back as its single jobs; one that meets an absent store waits it out whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from services.signer.keys import Choice
from services.signer.service import Signer
from services.signer.settings import SignerSettings
from shared.broker import ERRORS_HEADER, Delivery
from shared.errors import Unavailable
from shared.schemas import (
    BrokerMessage,
    DeliveryBatch,
    EventType,
    Recipient,
    SignBatch,
    SignJob,
)
from shared.testing import FakeBroker
from tests.unit.signer.test_outbox import JOB, NoKeys, Store

OTHER = JOB.model_copy(
    update={
        "message_id": "m2",
        "tenant": "globex",
        "recipients": (Recipient(id="r9", address="z@x.test"),),
    }
)


@dataclass
class HeadedBroker(FakeBroker):
    """Also keeps the AMQP headers of each publish."""

    headers: list[dict[str, Any]] = field(default_factory=list)

    async def publish(self, message: BrokerMessage, payload: bytes = b"", **kw: Any) -> None:
        self.headers.append(dict(kw.get("headers") or {}))
        await super().publish(message, payload)


class KeysFailingFor:
    """No keys, and an error of the kind no retry helps for one tenant (``error``)."""

    def __init__(self, tenant: str, error: Exception) -> None:
        self.tenant, self.error = tenant, error

    async def choose(self, tenant: str, domain: str) -> Choice:
        if tenant == self.tenant:
            raise self.error
        return await NoKeys().choose(tenant, domain)


def batch_delivery(*, redelivered: bool = False) -> Delivery:
    batch, payload = SignBatch.of(
        [(JOB, b"Subject: one\r\n\r\n1\r\n"), (OTHER, b"Subject: two\r\n\r\n2\r\n")]
    )
    return Delivery(batch, payload, 1, "sign", redelivered=redelivered)


def signer(store: Store, broker: FakeBroker, keys: Any) -> Signer:
    return Signer(store, broker, keys, settings=SignerSettings())  # type: ignore[arg-type]


async def test_a_batch_hands_each_message_on_with_its_own_copy_in_one_write() -> None:
    """Both messages get their event (one database write for the two) and their delivery
    jobs, each job with its own message; back again, it writes nothing more."""
    store, broker = Store(), FakeBroker()
    await signer(store, broker, NoKeys()).handle(batch_delivery())
    assert store.events.writes == 1
    assert sorted((e.message_id, e.type) for e in broker.events) == [
        ("m1", EventType.UNSIGNED),
        ("m2", EventType.UNSIGNED),
    ]
    # The delivery jobs of one pool leave together, each with its own copy.
    [(batch, payload)] = broker.published
    assert isinstance(batch, DeliveryBatch)
    jobs = {(m.message_id, m.domain): p for m, p in batch.split(payload)}
    assert sorted(jobs) == [("m1", "x.test"), ("m1", "y.test"), ("m2", "x.test")]
    assert b"Subject: one" in jobs["m1", "y.test"] and b"Subject: two" in jobs["m2", "x.test"]

    store.messages.final = {"r1", "r2"}  # m1 done; m2's recipient still waits
    broker.published.clear()
    await signer(store, broker, NoKeys()).handle(batch_delivery(redelivered=True))
    assert store.events.writes == 1
    assert [(m.message_id, m.domain) for m, _ in broker.published] == [("m2", "x.test")]


async def test_a_batch_that_fails_goes_back_as_its_single_jobs() -> None:
    """One message cannot be handled: the batch is acked after its jobs are back on the sign
    queue one by one, each with its own message, marked as failed once (so each takes the
    path of a job that came back); nothing of the batch was handed on."""
    store, broker = Store(), HeadedBroker()
    await signer(store, broker, KeysFailingFor("globex", ValueError("bad key"))).handle(
        batch_delivery()
    )
    assert [(type(m), m.message_id) for m, _ in broker.published] == [
        (SignJob, "m1"),
        (SignJob, "m2"),
    ]
    assert [p for _, p in broker.published] == [
        b"Subject: one\r\n\r\n1\r\n",
        b"Subject: two\r\n\r\n2\r\n",
    ]
    assert broker.headers == [{ERRORS_HEADER: 1}, {ERRORS_HEADER: 1}]
    assert broker.events == [] and store.events.writes == 0


async def test_a_batch_waits_out_an_absent_store_whole() -> None:
    """An absent store or broker is no reason to split: the error goes to consume(), which
    backs the batch off as it is."""
    store, broker = Store(), FakeBroker()
    with pytest.raises(Unavailable):
        await signer(store, broker, KeysFailingFor("globex", Unavailable("store away"))).handle(
            batch_delivery()
        )
    assert broker.published == [] and broker.events == []


async def test_delivery_jobs_leave_together_by_pool_and_up_to_the_limit() -> None:
    """Jobs of one pool share a message, at most ``delivery_batch`` of them; another pool's
    job goes to its own queue, alone as itself; with ``delivery_batch=1`` every job alone."""
    third = JOB.model_copy(update={"message_id": "m3", "pool": "bulk"})
    batch, payload = SignBatch.of([(JOB, b"one\r\n"), (OTHER, b"two\r\n"), (third, b"three\r\n")])
    for limit, expected in ((2, [("default", 2), ("default", 1), ("bulk", 2)]), (1, [1] * 5)):
        store, broker = Store(), FakeBroker()
        settings = SignerSettings(delivery_batch=limit)
        await Signer(store, broker, NoKeys(), settings=settings).handle(  # type: ignore[arg-type]
            Delivery(batch, payload, 1, "sign")
        )
        shapes = [
            (m.pool, len(m.jobs) if isinstance(m, DeliveryBatch) else 1)
            for m, _ in broker.published
        ]
        assert shapes == expected if limit > 1 else [n for _, n in shapes] == expected
        copies = [
            (j.message_id, p)
            for m, raw in broker.published
            for j, p in (m.split(raw) if isinstance(m, DeliveryBatch) else [(m, raw)])
        ]
        assert sorted(copies) == sorted(
            [("m1", b"one\r\n")] * 2 + [("m2", b"two\r\n")] + [("m3", b"three\r\n")] * 2
        )

"""Which copies of dead letters get a dead_lettered event from the bounce service, and how a
death RabbitMQ caused is worded (``Broker.broker_dead_letter``, ``death_reason``)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from shared.broker import (
    REASON_HEADER,
    SEAL_HEADER,
    Broker,
    broker_death,
    dead_lettered_event,
    dead_messages,
)
from shared.broker.dead_letters import _dead_entry
from shared.schemas import EventType, Recipient, SignBatch, SignJob, encode
from shared.settings import BrokerSettings

JOB = SignJob(
    message_id="m1",
    tenant="acme",
    mail_from="a@shop.test",
    from_domain="shop.test",
    recipients=(Recipient(id="r1", address="b@ok.test"), Recipient(id="r2", address="c@ok.test")),
    pool="default",
)
BODY = encode(JOB, b"payload")


def death(queue: str, reason: str) -> dict:
    return {"queue": queue, "reason": reason, "count": 1, "time": datetime(2026, 1, 1, tzinfo=UTC)}


def broker(limit: int = 20) -> Broker:
    return Broker(BrokerSettings(prefix="hato", delivery_limit=limit), name="test")


def test_a_job_past_the_delivery_limit_gets_the_event_consume_would_give_it() -> None:
    """The event names the queue and the limit, lists the recipients, and has the id of that
    job's death in that queue."""
    b = broker()
    [event] = b.broker_dead_letter(BODY, {"x-death": [death("hato.sign", "delivery_limit")]}, "a")
    reason = "handed out 21 times without an ack (delivery limit of hato.sign)"
    assert event == dead_lettered_event("hato.sign", JOB, BODY, reason, "a").model_copy(
        update={"at": event.at}
    )
    assert event.type is EventType.DEAD_LETTERED
    assert event.detail["recipients"] == "r1,r2" and event.detail["reason"] == reason


def test_a_sign_batch_past_the_delivery_limit_gets_an_event_for_each_message() -> None:
    """Each message of the batch gets its own event, naming its own recipients: the bounce
    service then fails every recipient of the batch, each message in its own timeline."""
    other = JOB.model_copy(
        update={"message_id": "m2", "recipients": (Recipient(id="r3", address="d@ok.test"),)}
    )
    batch, payload = SignBatch.of([(JOB, b"one"), (other, b"two")])
    body = encode(batch, payload)
    events = broker().broker_dead_letter(body, {"x-death": [death("hato.sign", "delivery_limit")]})
    assert [(e.message_id, e.detail["recipients"]) for e in events] == [
        ("m1", "r1,r2"),
        ("m2", "r3"),
    ]
    assert len({e.id for e in events}) == 2


def test_a_dead_sign_batch_is_listed_with_each_message_and_revived_whole() -> None:
    """`hato dead list` shows the batch's messages and tenants; a retry makes every
    recipient of every message wait again (``dead_messages``), as it does a single job's."""
    other = JOB.model_copy(
        update={
            "message_id": "m2",
            "tenant": "globex",
            "recipients": (Recipient(id="r3", address="d@ok.test"),),
        }
    )
    batch = encode(*SignBatch.of([(JOB, b"one"), (other, b"two")]))
    entry = _dead_entry(SimpleNamespace(body=batch), {REASON_HEADER: "x"}, str)  # type: ignore[arg-type]
    assert (entry["kind"], entry["tenant"], entry["recipients"]) == (
        "sign_batch",
        "acme,globex",
        ["r1", "r2", "r3"],
    )
    assert dead_messages(entry) == [("m1", ["r1", "r2"]), ("m2", ["r3"])]
    single = _dead_entry(SimpleNamespace(body=BODY), {REASON_HEADER: "x"}, str)  # type: ignore[arg-type]
    assert dead_messages(single) == [("m1", ["r1", "r2"])]
    submission = _dead_entry(SimpleNamespace(body=b'{"to":["x@y.test"]}'), {}, str)  # type: ignore[arg-type]
    assert dead_messages(submission) == []


def test_a_copy_back_from_its_own_retry_keeps_the_death_of_the_job() -> None:
    """The copy's trip through a retry queue (its event's publish failed) is passed over."""
    headers = {
        "x-death": [death("hato.retry.100", "expired"), death("hato.sign", "delivery_limit")]
    }
    [again] = broker().broker_dead_letter(BODY, headers)
    [first] = broker().broker_dead_letter(BODY, {"x-death": headers["x-death"][1:]})
    assert (again.id, again.detail) == (first.id, first.detail)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        # consume() dead-lettered it and published its event already
        (BODY, {REASON_HEADER: "handler failed", "x-death": [death("hato.sign", "expired")]}),
        (BODY, {}),  # no death: put into dead by hand
        (b'{"api_key":"hato_x_<removed>"}', {"x-death": [death("hato.submit", "delivery_limit")]}),
    ],
    ids=["consume-dead-lettered", "no-death", "submission"],
)
def test_copies_that_get_no_event(body: bytes, headers: dict) -> None:
    """Only a job of a Hato service that RabbitMQ dead-lettered gets an event here."""
    assert broker().broker_dead_letter(body, headers) == []


def test_an_unsealed_job_gets_no_event() -> None:
    """With a seal key, a job not sealed by a Hato service cannot fail anyone's recipients;
    a sealed one can."""
    b = broker()
    b.seal_key = b"k" * 32
    headers = {"x-death": [death("hato.sign", "delivery_limit")]}
    assert b.broker_dead_letter(BODY, headers) == []
    assert len(b.broker_dead_letter(BODY, {**headers, SEAL_HEADER: b._seal(BODY)})) == 1


def test_deaths_are_worded_for_operators() -> None:
    """The delivery limit with the number of hand-outs when the limit is Hato's; other
    reasons (an operator's TTL policy) as RabbitMQ gives them; a retry queue's expiry is no
    death of the job when passed over."""
    assert broker(2).death_reason("hato.sign", "delivery_limit") == (
        "handed out 3 times without an ack (delivery limit of hato.sign)"
    )
    assert broker(0).death_reason("hato.sign", "delivery_limit") == (
        "handed out too often without an ack (delivery limit of hato.sign)"
    )
    assert broker().death_reason("hato.sign", "expired") == (
        "dead-lettered by RabbitMQ from hato.sign: expired"
    )
    retried = {"x-death": [death("hato.retry.100", "expired")]}
    assert broker_death(retried, ignore="hato.retry.") is None
    assert broker_death({"x-death": [death("hato.retry.100", "expired")]}) == (
        "hato.retry.100",
        "expired",
    )

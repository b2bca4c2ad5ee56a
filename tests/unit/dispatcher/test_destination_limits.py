"""Destination limits: the carriers' and large receivers' presets, recipients per
transaction, and the size limit that bounces a message without trying it."""

from __future__ import annotations

import pytest

from services.dispatcher.mx import MxHost, Route
from services.dispatcher.pools import Member
from services.dispatcher.service import Dispatcher
from services.dispatcher.settings import PaceSetting
from services.dispatcher.throttle import DEFAULT, MIB, PRESETS, Pace, Throttle, batches, too_big
from shared.schemas import DeliveryJob, Recipient, RecipientStatus, utcnow
from shared.testing import MemoryStore

CARRIERS = ("docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp", "i.softbank.jp")
LARGE = ("yahoo.co.jp", "gmail.com", "outlook.com", "yahoo.com", "icloud.com")


@pytest.mark.parametrize("domain", (*CARRIERS, "rakumail.jp"))
def test_japanese_carriers_take_at_most_100_recipients_and_a_size(domain: str) -> None:
    """Every Japanese carrier's preset sends at most 100 recipients per transaction, over few
    connections, with a message size limit."""
    pace = PRESETS[domain]
    assert pace.recipients <= 100
    assert pace.connections <= 2
    assert 0 < pace.max_size <= 10 * MIB


@pytest.mark.parametrize("domain", LARGE)
def test_large_receivers_have_a_preset_with_a_size_limit(domain: str) -> None:
    """The large providers have presets with connections, rate and a message size limit."""
    pace = PRESETS[domain]
    assert pace.connections >= 1 and pace.per_minute > 0 and pace.max_size >= 20 * MIB


def test_au_and_softbank_send_one_transaction_per_connection() -> None:
    """au and SoftBank count recipients per session: one transaction per connection keeps a
    session within 100 recipients."""
    for domain in ("au.com", "ezweb.ne.jp", "softbank.ne.jp", "i.softbank.jp"):
        assert PRESETS[domain].per_connection == 1


def test_a_subdomain_takes_its_parents_preset() -> None:
    """A carrier's subdomain (biz.ezweb.ne.jp) has the carrier's limits."""
    assert Throttle().limits("biz.ezweb.ne.jp") == PRESETS["ezweb.ne.jp"]


def test_the_size_decision() -> None:
    """Only a message over a known limit is too big; a limit of 0 means none is known."""
    limits = Pace(max_size=1000)
    assert not too_big(1000, limits)
    assert too_big(1001, limits)
    assert not too_big(10**9, DEFAULT)


def test_recipients_are_split_into_transactions_of_the_limit() -> None:
    """250 recipients to a destination taking 100 go as 100, 100 and 50."""
    assert [len(b) for b in batches(list(range(250)), Pace(recipients=100))] == [100, 100, 50]
    assert batches([], Pace()) == []


def test_the_toml_table_sets_recipients_and_size() -> None:
    """The throttle table takes recipients and max_size; left out, they are the defaults."""
    assert PaceSetting(recipients=20, max_size=5000).limits() == Pace(
        DEFAULT.connections, DEFAULT.per_connection, DEFAULT.per_minute, 20, 5000
    )
    assert PaceSetting().limits() == DEFAULT
    with pytest.raises(ValueError):
        PaceSetting(recipients=0)


def _job(domain: str, n: int) -> DeliveryJob:
    return DeliveryJob(
        message_id="m1",
        tenant="acme",
        mail_from="shop@acme.test",
        from_domain="acme.test",
        recipients=tuple(Recipient(id=f"r{i}", address=f"u{i}@{domain}") for i in range(n)),
        pool="default",
        domain=domain,
        created_at=utcnow(),
    )


def _dispatcher(throttle: Throttle) -> Dispatcher:
    return Dispatcher(
        MemoryStore(),  # type: ignore[arg-type]  # not written to: nothing is tried here
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        throttle,
        retry_delays=[60],
        max_age=3600,
    )


async def test_a_message_over_the_destinations_limit_bounces_without_being_tried() -> None:
    """A message bigger than docomo's limit bounces at once with 552 5.3.4 naming the size and
    the limit; no connection is made (the dispatcher has no SMTP client here)."""
    job = _job("docomo.ne.jp", 2)
    route = Route(targets=(MxHost("mx.docomo.ne.jp", "127.0.0.1", 25),))
    big = b"x" * (PRESETS["docomo.ne.jp"].max_size + 1)
    results, _ = await _dispatcher(Throttle()).send(
        Member("127.0.0.1", "h"), job, list(job.recipients), route, big
    )
    assert [r.status for r in results] == [RecipientStatus.BOUNCED] * 2
    reply = results[0].reply
    assert (reply.code, reply.enhanced) == (552, "5.3.4")
    assert str(len(big)) in reply.text and "docomo.ne.jp" in reply.text


def test_transactions_follow_the_recipient_limit() -> None:
    """Without per-recipient VERP, a job's recipients go in transactions of the limit."""
    job = _job("docomo.ne.jp", 120)
    groups = _dispatcher(Throttle()).transactions(job, list(job.recipients), 100)
    assert [len(g) for _, g in groups] == [100, 20]
    assert {s for s, _ in groups} == {"shop@acme.test"}

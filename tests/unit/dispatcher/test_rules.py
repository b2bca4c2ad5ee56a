"""Dispatcher rules: routes, reply parsing, retry schedule, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.dispatcher.routes import Destination, RouteTable
from services.dispatcher.service import Dispatcher
from services.dispatcher.smtp_client import status_for, to_reply
from shared.schemas import (
    DeliveryJob,
    Recipient,
    RecipientResult,
    RecipientStatus,
    Reply,
    utcnow,
)
from shared.testing import MemoryStore


def test_routes_match_domain_then_parents_then_star() -> None:
    """A route for a domain also serves its subdomains, in any case and with a trailing dot; `*`
    takes every other domain, and without it they go by DNS."""
    t = RouteTable.parse("ok.test=127.0.0.2:25, [::1]=::1:26 ,*=127.0.0.1:2526")
    assert t.lookup("ok.test") == Destination("127.0.0.2", 25)
    assert t.lookup("mx.OK.test.") == Destination("127.0.0.2", 25)
    assert t.lookup("other.test") == Destination("127.0.0.1", 2526)
    assert RouteTable.parse("ok.test=127.0.0.2:25").lookup("other.test") is None


@pytest.mark.parametrize("bad", ["ok.test", "ok.test=host", "=h:1", "ok.test=h:port"])
def test_malformed_routes_are_refused(bad: str) -> None:
    """A route not shaped `domain=host:port` is refused when read, not when mail meets it."""
    with pytest.raises(ValueError, match="bad route"):
        RouteTable.parse(bad)


def test_replies_keep_their_enhanced_code() -> None:
    """A server's reply keeps its enhanced status code apart from its text (lines joined), and its
    code decides delivered, deferred or bounced."""
    assert to_reply(550, "5.1.1 <x@y>: Recipient\n address rejected") == Reply(
        code=550, enhanced="5.1.1", text="<x@y>: Recipient address rejected"
    )
    assert to_reply(250, "Ok") == Reply(code=250, text="Ok")
    assert [status_for(c) for c in (250, 451, 421, 550, 554)] == [
        RecipientStatus.DELIVERED,
        RecipientStatus.DEFERRED,
        RecipientStatus.DEFERRED,
        RecipientStatus.BOUNCED,
        RecipientStatus.BOUNCED,
    ]


def dispatcher(**kw) -> Dispatcher:
    store = MemoryStore()  # not written to: these rules only compute
    return Dispatcher(store, None, None, None, None, None, **kw)  # type: ignore[arg-type]


def test_retry_delays_follow_the_schedule_and_repeat_the_last() -> None:
    """The n-th retry waits the n-th delay of the schedule; past its end the last delay repeats."""
    d = dispatcher(retry_delays=[60, 300, 900], max_age=3600)
    assert [d.retry_delay(a) for a in (1, 2, 3, 4, 10)] == [60, 300, 900, 900, 900]


def test_deferred_recipients_expire_after_max_age_with_their_last_reply() -> None:
    """Past the maximum age a deferred recipient expires with its last reply (why it never went); a
    delivered one is left as it is."""
    d = dispatcher(retry_delays=[60], max_age=3600)
    reply = Reply(code=451, enhanced="4.7.1", text="later")
    results = [
        RecipientResult(
            recipient_id="a", address="a@x.test", status=RecipientStatus.DEFERRED, reply=reply
        ),
        RecipientResult(
            recipient_id="b",
            address="b@x.test",
            status=RecipientStatus.DELIVERED,
            reply=Reply(code=250),
        ),
    ]

    def job(age: float) -> DeliveryJob:
        return DeliveryJob(
            message_id="m",
            tenant="t",
            mail_from="s@shop.test",
            domain="x.test",
            recipients=(Recipient(id="a", address="a@x.test"),),
            pool="default",
            created_at=utcnow() - timedelta(seconds=age),
        )

    assert d.expire(job(10), results) == results
    expired = d.expire(job(3601), results)
    assert [r.status for r in expired] == [RecipientStatus.EXPIRED, RecipientStatus.DELIVERED]
    assert expired[0].reply == reply


def test_a_tenant_max_age_shortens_the_expiry() -> None:
    """A job's own maximum age (its tenant's) expires deferred recipients before the default."""
    d = dispatcher(retry_delays=[60], max_age=72 * 3600)
    reply = Reply(code=451, text="later")
    results = [
        RecipientResult(
            recipient_id="a", address="a@x.test", status=RecipientStatus.DEFERRED, reply=reply
        )
    ]
    job = DeliveryJob(
        message_id="m",
        tenant="t",
        mail_from="s@shop.test",
        domain="x.test",
        recipients=(Recipient(id="a", address="a@x.test"),),
        pool="default",
        created_at=utcnow() - timedelta(seconds=3601),
        max_age=3600,
    )
    assert d.expire(job, results)[0].status is RecipientStatus.EXPIRED
    assert d.expire(job.model_copy(update={"max_age": None}), results) == results

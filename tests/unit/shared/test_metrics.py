"""The pure parts of shared/metrics.py: provider groups, deferral reasons, reply counting,
and the estimate of the oldest job's age."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from shared import metrics
from shared.schemas import Reply


@pytest.mark.parametrize(
    ("domain", "mx", "group"),
    [
        ("gmail.com", "", "gmail"),
        ("GoogleMail.com.", "", "gmail"),
        ("corp.example", "aspmx.l.google.com", "gmail"),
        ("hotmail.co.jp", "", "outlook"),
        ("outlook.de", "", "outlook"),
        ("corp.example", "corp-example.mail.protection.outlook.com", "outlook"),
        ("yahoo.co.jp", "", "yahoo"),
        ("yahoo.co.uk", "", "yahoo"),
        ("docomo.ne.jp", "", "docomo"),
        ("ezweb.ne.jp", "", "au"),
        ("au.com", "", "au"),
        ("i.softbank.jp", "", "softbank"),
        ("t.vodafone.ne.jp", "", "softbank"),
        ("example.com", "", "other"),
        ("yahoo.example.com", "", "other"),
        ("notgmail.com", "", "other"),
    ],
)
def test_a_destination_belongs_to_one_bounded_provider_group(domain, mx, group) -> None:
    """Recipient domains (and MX hosts of hosted domains) map to the seven groups only."""
    assert metrics.provider_group(domain, mx) == group
    assert group in metrics.PROVIDERS


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(code=421, enhanced="4.7.0", text="slow down"), "throttled"),
        (Reply(code=450, enhanced="4.7.28", text="rate limited"), "throttled"),
        (Reply(code=451, enhanced="4.4.1", text="no answer"), "connection"),
        (Reply(code=451, enhanced="4.4.3", text="dns"), "dns"),
        (Reply(code=452, enhanced="4.2.2", text="full"), "mailbox_full"),
        (Reply(code=450, enhanced="4.2.1", text="busy"), "mailbox"),
        (Reply(code=451, enhanced="4.3.0", text="local error"), "remote_system"),
        (Reply(code=450, enhanced="", text="try later"), "other"),
    ],
)
def test_deferrals_are_counted_by_a_bounded_reason(reply, reason) -> None:
    """A deferral's reason comes from its codes, in DEFERRAL_REASONS."""
    assert metrics.deferral_reason(reply) == reason
    assert reason in metrics.DEFERRAL_REASONS


def _refused(door: str, klass: str, reply: str) -> float:
    value = REGISTRY.get_sample_value(
        "hato_ingest_refused_total", {"door": door, "class": klass, "reply": reply}
    )
    return value or 0.0


def test_smtp_refusals_count_by_code_and_enhanced_code_and_successes_do_not() -> None:
    """A 5xx reply counts once as permanent with its codes; 2xx and 3xx are no refusals."""
    before = _refused("smtp", "permanent", "550 5.7.1")
    metrics.smtp_reply("550 5.7.1 Relaying denied")
    metrics.smtp_reply("250 2.0.0 OK")
    metrics.smtp_reply("354 End data with <CR><LF>.<CR><LF>")
    assert _refused("smtp", "permanent", "550 5.7.1") == before + 1
    before = _refused("smtp", "temporary", "421")
    metrics.smtp_reply("421 closing")
    assert _refused("smtp", "temporary", "421") == before + 1


def test_the_oldest_job_age_grows_while_nobody_takes_from_the_queue() -> None:
    """A queue that did not move and has no other consumer ages by the time between looks."""
    first = metrics.oldest_job_age(
        None, now=100.0, depth=3, consumers=0, consuming=False, taken=0, last_wait=None
    )
    assert first == 0.0
    seen = metrics.QueueSeen(at=100.0, depth=3, taken=0, age=first)
    later = metrics.oldest_job_age(
        seen, now=130.0, depth=3, consumers=0, consuming=False, taken=0, last_wait=None
    )
    assert later == 30.0


def test_the_oldest_job_age_is_the_last_taken_jobs_once_the_queue_moves() -> None:
    """Jobs taken since the last look: the head is no older than the last one taken."""
    seen = metrics.QueueSeen(at=100.0, depth=5, taken=10, age=50.0)
    age = metrics.oldest_job_age(
        seen, now=110.0, depth=5, consumers=1, consuming=True, taken=12, last_wait=2.5
    )
    assert age == 2.5
    assert (
        metrics.oldest_job_age(
            seen, now=110.0, depth=0, consumers=1, consuming=True, taken=12, last_wait=2.5
        )
        == 0.0
    )


def test_a_queue_others_consume_is_left_to_them() -> None:
    """Unmoved here but consumed elsewhere: this process cannot tell, so it says nothing."""
    seen = metrics.QueueSeen(at=100.0, depth=5, taken=10, age=50.0)
    assert (
        metrics.oldest_job_age(
            seen, now=110.0, depth=5, consumers=2, consuming=False, taken=10, last_wait=None
        )
        is None
    )


def test_retry_queues_are_named_as_the_broker_names_them() -> None:
    """retry.<ms>, rounded to 100 ms with a floor of 100 ms."""
    assert metrics.retry_queue(60) == "retry.60000"
    assert metrics.retry_queue(0.01) == "retry.100"


def test_http_requests_are_counted_by_route_template_not_path() -> None:
    """/v1/messages/01J... counts as /v1/messages/{message_id}: ids never become series."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.add_middleware(metrics.HttpMetrics)

    @app.get("/v1/messages/{message_id}")
    async def show(message_id: str) -> dict:
        return {"id": message_id}

    def count(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return REGISTRY.get_sample_value("hato_ingest_http_requests_total", labels) or 0.0

    before = count("/v1/messages/{message_id}", "200"), count("unmatched", "404")
    with TestClient(app) as client:
        assert client.get("/v1/messages/abc").status_code == 200
        assert client.get("/nowhere").status_code == 404
    assert count("/v1/messages/{message_id}", "200") == before[0] + 1
    assert count("unmatched", "404") == before[1] + 1

"""The report consumer (services/bounce/matching.py): a kept report is read, marked and
applied — a per-recipient return path to its own recipient only, a per-message one to that
message's recipients it names; one it cannot read is retried once, then dead-lettered."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from services.bounce.feedback import Addressee
from services.bounce.matching import PARSE_TRIES, ReportConsumer
from services.bounce.reports import ReportState, Unparsed
from shared.bounces.classify import Verdict
from shared.bounces.parse import Kind, NotMail, Report
from shared.broker import Delivery
from shared.errors import Permanent, RetryLater
from shared.schemas import ReportJob
from shared.testing import MemoryStore
from shared.verp import Verp

VERP = Verp(b"inbound test key")


class FakeFeedback:
    def __init__(self) -> None:
        self.applied: list[tuple[Addressee, str]] = []

    async def apply(self, target: Addressee, verdict: Verdict, *, source: str) -> None:
        self.applied.append((target, verdict.recipient))


class FakeRules:
    def classify(self, report: Report) -> list[Verdict]:
        return [
            Verdict(f.recipient, "userunknown", True, True, "5.1.1", "550 5.1.1 unknown")
            for f in report.findings
        ]


class FakeReports:
    """The ``reports`` collection in a dict: raw reports and their states."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}

    def add(self, raw: bytes) -> str:
        report_id = str(uuid.uuid4())
        self.docs[report_id] = {"_id": report_id, "raw": raw, "state": "received"}
        return report_id

    async def get(self, report_id: str) -> dict[str, Any] | None:
        return self.docs.get(report_id)

    async def mark(self, report_id: str, state: ReportState, **fields: str) -> None:
        self.docs[report_id].update(state=state.value, **fields)


class FakeParser:
    """Parses as told: a report, NotMail, or Unparsed."""

    def __init__(self, outcome: Report | Exception) -> None:
        self.outcome = outcome

    async def parse(self, raw: bytes) -> Report:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def handler(
    parsed: Report | Exception | None = None,
) -> tuple[ReportConsumer, MemoryStore, FakeFeedback, FakeReports]:
    """A consumer over fakes whose parser gives ``parsed`` (an unused one by default)."""
    store, feedback, reports = MemoryStore(), FakeFeedback(), FakeReports()
    h = ReportConsumer(
        store,  # type: ignore[arg-type]
        reports,  # type: ignore[arg-type]
        VERP,
        FakeRules(),  # type: ignore[arg-type]
        feedback,  # type: ignore[arg-type]
        parser=FakeParser(parsed or NotMail("-")),  # type: ignore[arg-type]
    )
    return h, store, feedback, reports


def dsn(*addresses: str) -> Report:
    return Report(Kind.DSN, tuple(SimpleNamespace(recipient=a) for a in addresses))  # type: ignore[arg-type]


async def test_a_recipient_token_with_a_dsn_naming_others_acts_on_its_own_recipient() -> None:
    """The attack of issue 16: one recipient's return path and a DSN naming two others too
    bounces that one recipient, not the others."""
    h, store, feedback, _ = handler()
    _, ids = store.messages.add("acme", "me@ok.test", "v1@ok.test", "v2@ok.test")
    token = VERP.for_recipient(ids["me@ok.test"], "shop.test")
    await h.apply(token, dsn("v1@ok.test", "me@ok.test", "v2@ok.test"))
    assert [(t.recipient_id, t.address) for t, _ in feedback.applied] == [
        (ids["me@ok.test"], "me@ok.test")
    ]


async def test_a_recipient_token_with_a_dsn_naming_only_others_acts_on_nothing() -> None:
    """Several verdicts and none about the token's recipient: nothing is applied."""
    h, store, feedback, _ = handler()
    _, ids = store.messages.add("acme", "me@ok.test", "v1@ok.test", "v2@ok.test")
    await h.apply(
        VERP.for_recipient(ids["me@ok.test"], "shop.test"), dsn("v1@ok.test", "v2@ok.test")
    )
    assert feedback.applied == []


async def test_a_single_verdict_about_another_address_applies_to_the_tokens_recipient() -> None:
    """A report naming one address only (the mailbox it was forwarded to) bounces the
    token's own recipient, under its own address."""
    h, store, feedback, _ = handler()
    _, ids = store.messages.add("acme", "me@ok.test", "v1@ok.test")
    await h.apply(VERP.for_recipient(ids["me@ok.test"], "shop.test"), dsn("v1@ok.test"))
    assert [(t.recipient_id, t.address) for t, _ in feedback.applied] == [
        (ids["me@ok.test"], "me@ok.test")
    ]


async def test_a_message_token_acts_on_the_recipients_of_its_message_it_names() -> None:
    """Per-message VERP: the named recipients of that message, none of another message."""
    h, store, feedback, _ = handler()
    message_id, ids = store.messages.add("acme", "a@ok.test", "b@ok.test", "c@ok.test")
    store.messages.add("rival", "x@ok.test")
    await h.apply(
        VERP.for_message(message_id, "shop.test"), dsn("a@ok.test", "c@ok.test", "x@ok.test")
    )
    assert sorted(t.recipient_id for t, _ in feedback.applied) == sorted(
        [ids["a@ok.test"], ids["c@ok.test"]]
    )
    assert all(t.tenant == "acme" for t, _ in feedback.applied)


async def test_a_forged_or_expired_token_acts_on_nothing() -> None:
    """A token under another key names nothing."""
    h, store, feedback, _ = handler()
    _, ids = store.messages.add("acme", "me@ok.test")
    await h.apply(Verp(b"other").for_recipient(ids["me@ok.test"], "shop.test"), dsn("me@ok.test"))
    assert feedback.applied == []


def job(report_id: str, *rcpt_tos: str, attempt: int = 1) -> Delivery:
    return Delivery(ReportJob(report_id=report_id, rcpt_tos=rcpt_tos), b"", attempt, "reports", {})


async def test_a_queued_report_is_read_marked_and_applied() -> None:
    """The consumer reads the kept report, marks it parsed with its kind, and applies it to
    the recipient its return path names."""
    h, store, feedback, reports = handler(dsn("me@ok.test"))
    _, ids = store.messages.add("acme", "me@ok.test")
    report_id = reports.add(b"a dsn")
    await h.handle(job(report_id, VERP.for_recipient(ids["me@ok.test"], "shop.test")))
    assert reports.docs[report_id]["state"] == "parsed"
    assert reports.docs[report_id]["kind"] == "dsn"
    assert [t.recipient_id for t, _ in feedback.applied] == [ids["me@ok.test"]]


async def test_what_is_not_mail_is_marked_and_acked() -> None:
    """Not mail: marked ``not-mail``, nothing applied, the job done (no exception)."""
    h, _, feedback, reports = handler(NotMail("no headers"))
    report_id = reports.add(b"not mail")
    await h.handle(job(report_id, "fbl@hato.test"))
    assert reports.docs[report_id]["state"] == "not-mail"
    assert feedback.applied == []


async def test_an_unreadable_report_is_retried_once_then_dead_lettered() -> None:
    """A parse that fails is tried again later once (another report's timeout may have
    killed it), then the job is dead-lettered with the reason; the report stays
    ``unparsed`` with the error."""
    h, _, _, reports = handler(Unparsed("parsing took longer than 30 s"))
    report_id = reports.add(b"hostile")
    with pytest.raises(RetryLater):
        await h.handle(job(report_id, "fbl@hato.test"))
    with pytest.raises(Permanent, match="unreadable: parsing took longer"):
        await h.handle(job(report_id, "fbl@hato.test", attempt=PARSE_TRIES))
    assert reports.docs[report_id]["state"] == "unparsed"
    assert "longer than 30 s" in reports.docs[report_id]["error"]


async def test_a_report_no_longer_kept_is_acked() -> None:
    """A job whose report is gone (past the retention when a dead job is retried) ends
    without effect instead of failing for ever."""
    h, _, feedback, _ = handler(dsn("me@ok.test"))
    await h.handle(job("gone", "fbl@hato.test"))
    assert feedback.applied == []

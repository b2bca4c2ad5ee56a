"""Parsing inbound reports in worker processes with a deadline (services/bounce/reports.py)."""

from __future__ import annotations

import pytest

from services.bounce.reports import ReportParser, Unparsed
from shared.bounces.parse import Kind, NotMail

BOUNCE = (
    b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail Returned to Sender\n\n"
    b"<u@example.net>: host mx.example.net said: 550 5.1.1 user unknown\n"
)


async def test_a_report_past_its_deadline_is_unparsed_and_the_parser_goes_on() -> None:
    """A parse that overruns raises Unparsed (its worker is killed); the next one works."""
    parser = ReportParser(workers=1, timeout=0.001)
    try:
        with pytest.raises(Unparsed, match="longer than"):
            await parser.parse(BOUNCE + b"x@example.org unknown\n" * 50_000)
        parser.timeout = 60
        report = await parser.parse(BOUNCE)
        assert report.kind is Kind.DSN
        assert [f.recipient for f in report.findings] == ["u@example.net"]
        with pytest.raises(NotMail):
            await parser.parse(b"not mail at all")
    finally:
        parser.close()


def test_a_parser_needs_workers_and_a_deadline() -> None:
    """Constructor arguments are checked at once."""
    with pytest.raises(ValueError):
        ReportParser(workers=0)
    with pytest.raises(ValueError):
        ReportParser(timeout=0)

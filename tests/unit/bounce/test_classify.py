"""Reading bounces (RFC 3464, free text, ARF, auto-replies) and classifying them by the
rules of reasons.toml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.bounce.classify import Rules, rules
from services.bounce.parse import Finding, Kind, parse
from tests.helpers.stack import ROOT

CORPUS = ROOT.parent / "shared" / "corpus" / "bounces"

DSN = b"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: bfoo.bar@bounces.shop.test
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<gone@example.net>: host mx.example.net said: 550 5.1.1 <gone@example.net>:
    Recipient address rejected: User unknown in virtual mailbox table

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; gone@example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected:
    User unknown in virtual mailbox table

Final-Recipient: rfc822; full@example.net
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full

--B--
"""

ARF = b"""From: feedback@isp.example
To: fbl@hato.example
Subject: FW: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="A"

--A
Content-Type: text/plain

This is an email abuse report.

--A
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <angry@isp.example>

--A
Content-Type: message/rfc822

From: news@shop.test
To: angry@isp.example
Subject: Sale

Buy now.
--A--
"""


def test_an_rfc_3464_report_gives_one_finding_per_recipient() -> None:
    report = parse(DSN)
    assert report.kind is Kind.DSN
    verdicts = rules().classify(report)
    assert [(v.recipient, v.status, v.reason, v.hard, v.suppress) for v in verdicts] == [
        ("gone@example.net", "5.1.1", "user_unknown", True, True),
        ("full@example.net", "4.2.2", "mailbox_full", False, "repeated"),
    ]
    assert "User unknown in virtual mailbox table" in verdicts[0].diagnostic


def test_an_arf_report_is_a_complaint_for_the_original_recipient() -> None:
    report = parse(ARF)
    assert (report.kind, report.feedback_type) == (Kind.COMPLAINT, "abuse")
    verdict = rules().classify(report)[0]
    assert (verdict.recipient, verdict.reason, verdict.suppress) == (
        "angry@isp.example",
        "complaint",
        True,
    )


def test_vacation_replies_and_ordinary_mail_are_not_bounces() -> None:
    vacation = parse(
        b"From: boss@example.net\r\nTo: b@bounces.shop.test\r\n"
        b"Subject: Out of Office: back Monday\r\nAuto-Submitted: auto-replied\r\n"
        b"\r\nI am away.\r\n"
    )
    assert vacation.kind is Kind.AUTO_REPLY
    assert rules().classify(vacation)[0].reason == "auto_reply"
    assert rules().classify(vacation)[0].suppress is False
    assert parse(b"From: a@b.test\r\nSubject: hello\r\n\r\nhi\r\n").kind is Kind.NOT_A_BOUNCE


@pytest.mark.parametrize(
    "recipient, status, text, reason, ambiguous",
    [
        ("x@docomo.ne.jp", "5.0.0", "550 Unknown user x@docomo.ne.jp", "user_unknown", True),
        ("x@ezweb.ne.jp", "5.0.0", "The user(s) account is disabled.", "suspended", True),
        ("x@softbank.ne.jp", "5.0.0", "550 Rejected by the recipient's filter", "filtered", False),
        (
            "x@gmail.com",
            "5.7.26",
            "550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy",
            "blocked",
            False,
        ),
        (
            "x@example.net",
            "4.7.0",
            "421 4.7.0 Too many connections, slow down",
            "rate_limited",
            False,
        ),
        (
            "x@example.net",
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
            "blocked",
            False,
        ),
        ("x@example.net", "5.1.2", "Host or domain name not found", "host_unknown", False),
        (
            "x@example.net",
            "5.3.4",
            "552 5.3.4 Message size exceeds fixed limit",
            "message_too_large",
            False,
        ),
        ("x@example.net", "4.4.7", "Message expired after 5 days in queue", "expired", False),
        ("x@example.net", "5.0.0", "something nobody planned for", "other", False),
    ],
)
def test_rules(recipient, status, text, reason, ambiguous) -> None:
    verdict = rules().classify_finding(Finding(recipient, status=status, diagnostic=text))
    assert (verdict.reason, verdict.ambiguous) == (reason, ambiguous)


def test_reputation_and_policy_blocks_never_suppress() -> None:
    for reason in ("blocked", "rate_limited", "spam_filtered", "filtered"):
        assert rules().reasons[reason]["suppress"] is False


def test_every_rule_names_a_documented_reason(tmp_path) -> None:
    assert all(r.reason in rules().reasons for r in rules().rules)
    assert all(meta.get("description") for meta in rules().reasons.values())
    bad = tmp_path / "r.toml"
    bad.write_text(
        '[reasons.a]\nhard=true\nsuppress=true\ndescription="x"\n'
        '[[rules]]\nreason="b"\ntext=["x"]\n'
    )
    with pytest.raises(ValueError, match="unknown reason b"):
        Rules.load(bad)


@pytest.mark.skipif(not CORPUS.exists(), reason="the shared corpus sits beside the checkout")
def test_the_corpus_benchmark_holds_its_floor() -> None:
    """bench.classify over the 154 labelled messages: the accuracy measured when the rules
    were written (0.57) must not drop."""
    from bench.classify import evaluate

    cases, _ = evaluate(CORPUS)
    accuracy = sum(e == p for _, e, p in cases) / len(cases)
    assert accuracy >= 0.55, accuracy


def test_hato_bounce_classify_prints_json_per_recipient(tmp_path) -> None:
    (tmp_path / "dsn.eml").write_bytes(DSN)
    (tmp_path / "plain.eml").write_bytes(b"Subject: hi\r\n\r\nhello\r\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hato.cli",
            "bounce",
            "classify",
            str(tmp_path / "dsn.eml"),
            str(tmp_path / "plain.eml"),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.splitlines()
    rows = [json.loads(line) for line in out]
    assert [(r.get("recipient"), r.get("reason"), r["kind"]) for r in rows] == [
        ("gone@example.net", "user_unknown", "dsn"),
        ("full@example.net", "mailbox_full", "dsn"),
        (None, None, "not-a-bounce"),
    ]
    assert Path(rows[0]["file"]).name == "dsn.eml"


OWN_CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "bounces"


def _labels():
    import csv

    with (OWN_CORPUS / "labels.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.mark.parametrize("row", _labels(), ids=lambda r: r["file"])
def test_our_corpus_of_mta_formats(row) -> None:
    """Each MTA's format, read and classified as labelled."""
    report = parse((OWN_CORPUS / row["file"]).read_bytes())
    if row["reason"] == "not-a-bounce":
        assert report.kind is Kind.NOT_A_BOUNCE
        return
    verdicts = rules().classify(report)
    assert len(verdicts) == 1, verdicts
    v = verdicts[0]
    assert (v.reason, v.hard, v.ambiguous) == (
        row["reason"],
        row["hard"] == "1",
        row["ambiguous"] == "1",
    ), v

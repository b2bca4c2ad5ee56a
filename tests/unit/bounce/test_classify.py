"""Reading bounces (RFC 3464, free text, ARF, auto-replies) and classifying them by the
rules of reasons.toml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.bounces.classify import Rules, rules
from shared.bounces.parse import Finding, Kind, parse
from shared.testing import ROOT

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
    """An RFC 3464 DSN gives a verdict per failed recipient: a user unknown is hard and
    suppressed at once, a full mailbox soft and suppressed only when it repeats."""
    report = parse(DSN)
    assert report.kind is Kind.DSN
    verdicts = rules().classify(report)
    assert [(v.recipient, v.status, v.reason, v.hard, v.suppress) for v in verdicts] == [
        ("gone@example.net", "5.1.1", "userunknown", True, True),
        ("full@example.net", "4.2.2", "mailboxfull", False, "repeated"),
    ]
    assert "User unknown in virtual mailbox table" in verdicts[0].diagnostic


def test_an_arf_report_is_a_complaint_for_the_original_recipient() -> None:
    """An ARF abuse report is a complaint (reason feedback) about the original recipient, who
    is suppressed."""
    report = parse(ARF)
    assert (report.kind, report.feedback_type) == (Kind.COMPLAINT, "abuse")
    verdict = rules().classify(report)[0]
    assert (verdict.recipient, verdict.reason, verdict.hard, verdict.suppress) == (
        "angry@isp.example",
        "feedback",
        False,
        True,
    )


def test_vacation_replies_and_ordinary_mail_are_not_bounces() -> None:
    """An out-of-office reply is a vacation that suppresses nobody, and ordinary mail is no
    bounce at all."""
    vacation = parse(
        b"From: boss@example.net\r\nTo: b@bounces.shop.test\r\n"
        b"Subject: Out of Office: back Monday\r\nAuto-Submitted: auto-replied\r\n"
        b"\r\nI am away.\r\n"
    )
    assert vacation.kind is Kind.AUTO_REPLY
    assert rules().classify(vacation)[0].reason == "vacation"
    assert rules().classify(vacation)[0].suppress is False
    assert parse(b"From: a@b.test\r\nSubject: hello\r\n\r\nhi\r\n").kind is Kind.NOT_A_BOUNCE


@pytest.mark.parametrize(
    "recipient, status, text, reason, ambiguous",
    [
        ("x@docomo.ne.jp", "5.0.0", "550 Unknown user x@docomo.ne.jp", "userunknown", True),
        (
            "x@docomo.ne.jp",
            "5.0.0",
            "550 Unknown user x@docomo.ne.jp (in reply to end of DATA command)",
            "rejected",
            True,
        ),
        (
            "x@docomo.ne.jp",
            "5.2.0",
            "550 Unknown user x@docomo.ne.jp (in reply to end of DATA command)",
            "filtered",
            True,
        ),
        (
            "x@vtext.com",
            "",
            "550 - Requested action not taken: no such user here",
            "userunknown",
            False,
        ),
        (
            "x@example.net",
            "5.4.6",
            "554 5.4.6 Hop count exceeded - possible mail loop",
            "networkerror",
            False,
        ),
        (
            "x@gone.example",
            "4.4.3",
            "Host or domain name not found. Name service error for name=gone.example type=MX: "
            "Host not found, try again",
            "networkerror",
            False,
        ),
        (
            "x@example.net",
            "5.0.0",
            "550 Virus Detected; Content Rejected (in reply to end of DATA command)",
            "virusdetected",
            False,
        ),
        (
            "x@example.net",
            "5.7.1",
            "554 5.7.1 Access denied (in reply to MAIL FROM command)",
            "rejected",
            False,
        ),
        ("x@ezweb.ne.jp", "5.0.0", "The user(s) account is disabled.", "suspend", True),
        ("x@softbank.ne.jp", "5.0.0", "550 Rejected by the recipient's filter", "filtered", False),
        (
            "x@gmail.com",
            "5.7.26",
            "550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy",
            "authfailure",
            False,
        ),
        (
            "x@example.net",
            "4.7.0",
            "421 4.7.0 Too many concurrent SMTP connections from this IP",
            "toomanyconn",
            False,
        ),
        (
            "x@example.net",
            "4.7.28",
            "421 4.7.28 Mail sent from your IP address has been temporarily rate limited",
            "speeding",
            False,
        ),
        (
            "x@example.net",
            "5.7.1",
            "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
            "blocked",
            False,
        ),
        ("x@example.net", "5.1.2", "Host or domain name not found", "hostunknown", False),
        (
            "x@example.net",
            "5.0.0",
            "550 No such user (in reply to RCPT TO command)",
            "userunknown",
            False,
        ),
        ("x@example.net", "5.1.1", "550 5.1.1 Mailbox full", "mailboxfull", False),
        ("x@example.net", "5.7.1", "554 5.7.1 Relay access denied", "norelaying", False),
        ("x@example.net", "5.7.1", "550 5.7.1 Message rejected as spam", "spamdetected", False),
        ("x@example.net", "5.0.0", "521 5.3.2 does not accept mail (null MX)", "notaccept", False),
        (
            "x@example.net",
            "5.3.4",
            "552 5.3.4 Message size exceeds fixed limit",
            "mesgtoobig",
            False,
        ),
        ("x@example.net", "4.4.7", "Message expired after 5 days in queue", "expired", False),
        # providers' published codes decide over the wording (Cox, Spectrum)
        (
            "x@cox.net",
            "5.1.0",
            "550 5.1.0 <s@shop.test> sender rejected AUP#CXSNDR",
            "authfailure",
            False,
        ),
        ("x@charter.net", "4.7.0", "421 4.7.0 Try again later AUP#I-1350", "speeding", False),
        ("x@rr.com", "5.1.0", "550 5.1.0 sender rejected AUP#In-1000", "blocked", False),
        ("x@example.net", "5.0.0", "something nobody planned for", "onhold", False),
        ("x@example.net", "", "", "undefined", False),
    ],
)
def test_rules(recipient, status, text, reason, ambiguous) -> None:
    """Sisimai's semantics: the text first where the code is generic, the SMTP command decides
    between a missing mailbox and the recipient's filter, the carriers' replies stay ambiguous."""
    verdict = rules().classify_finding(Finding(recipient, status=status, diagnostic=text))
    assert (verdict.reason, verdict.ambiguous) == (reason, ambiguous)


def test_reputation_and_policy_blocks_never_suppress() -> None:
    """Reasons about the sender or the message never suppress the recipient."""
    for reason in ("blocked", "badreputation", "speeding", "spamdetected", "policyviolation"):
        assert rules().policy(reason, "5.7.1") == (False, False)


@pytest.mark.parametrize(
    "reason, status, ambiguous, hard, suppress",
    [
        ("userunknown", "5.1.1", False, True, True),
        ("userunknown", "4.1.1", False, True, "repeated"),  # a temporary code: wait and see
        ("userunknown", "5.0.0", True, True, "repeated"),  # a carrier's ambiguous reply
        ("notaccept", "5.3.2", False, True, True),
        ("notaccept", "4.3.2", False, False, "repeated"),
        ("mailboxfull", "5.2.2", False, False, "repeated"),
        ("filtered", "5.0.0", False, False, "repeated"),
        ("feedback", "", False, False, True),
        ("vacation", "", False, False, False),
    ],
)
def test_hard_soft_and_suppression_follow_reason_and_code(
    reason, status, ambiguous, hard, suppress
) -> None:
    """One table: hard/soft and the suppression policy from the reason plus the code."""
    assert rules().policy(reason, status, ambiguous) == (hard, suppress)


def test_sisimai_vocabulary_is_complete() -> None:
    """Every reason name Sisimai documents is one of Hato's."""
    sisimai = """authfailure badreputation blocked contenterror delivered exceedlimit expired
    feedback filtered hasmoved hostunknown mailboxfull mailererror mesgtoobig networkerror
    norelaying notaccept notcompliantrfc onhold policyviolation rejected requireptr
    securityerror spamdetected speeding suppressed suspend syntaxerror systemerror systemfull
    toomanyconn undefined userunknown vacation virusdetected""".split()
    assert set(sisimai) <= set(rules().reasons)


def test_every_rule_names_a_documented_reason(tmp_path) -> None:
    """Every rule's reason is documented in the table, and a rules file naming an unknown
    reason is refused when loaded."""
    assert all(r.reason in rules().reasons for r in rules().rules)
    assert all(meta.get("description") for meta in rules().reasons.values())
    bad = tmp_path / "r.toml"
    bad.write_text(
        '[reasons.a]\nhard=true\nsuppress="at once"\ndescription="x"\n'
        '[[rules]]\nreason="b"\ntext=["x"]\n'
    )
    with pytest.raises(ValueError, match="unknown reason b"):
        Rules.load(bad)


# What bench/classify.py measured on the shared corpus when the rules were last changed
# (before the Sisimai vocabulary: reason 0.59, recipient 0.94, status 0.73, hard/soft 0.80;
# before the network, provider-code and fml rules: 0.82, 0.99, 0.97, 0.94; before the
# wording tables grown against the held-out corpus's dev part: 0.93, 1.00, 0.99, 0.98;
# before the rules were taken to Sisimai's documented phrases: reason 0.94).
SHARED_FLOOR = {"reason": 0.97, "recipient": 1.0, "status": 0.99, "hard": 0.98}


@pytest.mark.skipif(not CORPUS.exists(), reason="the shared corpus sits beside the checkout")
def test_the_shared_corpus_figures_do_not_fall() -> None:
    """bench.classify over the 154 real, labelled bounces: no figure falls below what was
    reached, and no non-bounce is taken for a bounce."""
    from bench.classify import evaluate, summarize

    s = summarize(evaluate(CORPUS))
    got = {"reason": s.reason, "recipient": s.recipient, "status": s.status, "hard": s.hard}
    assert all(round(got[k], 2) >= v for k, v in SHARED_FLOOR.items()), got
    assert s.false_bounces == 0


HELDOUT = ROOT / "tests" / "corpus" / "heldout"
# Real bounces no rule was written from (tests/corpus/heldout/README.md); the holdout part's
# errors are never listed, so its figures stay a held-out measure. The figures when the set
# was grown to 183 cases, before any rule was changed against it: whole 0.83, 0.97, 0.95,
# 0.96; holdout 0.84, 0.98, 0.94, 0.96; before the rules were taken to Sisimai's documented
# phrases (test_sisimai_phrases.py): reason whole 0.94, holdout 0.89. Floors: the figures
# reached since, rounded, so that one case lost fails.
HELDOUT_FLOOR = {"reason": 0.96, "recipient": 1.0, "status": 0.99, "hard": 0.99}
HOLDOUT_FLOOR = {"reason": 0.93, "recipient": 1.0, "status": 0.96, "hard": 0.96}


def test_the_heldout_corpus_figures_do_not_fall() -> None:
    """bench.classify over the held-out real bounces, whole and its untouched holdout part:
    no figure falls below what was reached, and no non-bounce is taken for a bounce."""
    from bench.classify import evaluate, summarize

    for split, floor in ((None, HELDOUT_FLOOR), ("holdout", HOLDOUT_FLOOR)):
        s = summarize(evaluate(HELDOUT, split))
        got = {"reason": s.reason, "recipient": s.recipient, "status": s.status, "hard": s.hard}
        assert all(round(got[k], 2) >= v for k, v in floor.items()), (split, got)
        assert s.false_bounces == 0


def test_bench_errors_never_list_the_holdout_part(capsys) -> None:
    """bench.classify --errors lists dev cases only: the holdout part's files never show."""
    import csv

    from bench.classify import main

    with (HELDOUT / "labels.tsv").open() as f:
        holdout = [r["file"] for r in csv.DictReader(f, delimiter="\t") if r["split"] == "holdout"]
    assert holdout
    main([HELDOUT], show_errors=True)
    out = capsys.readouterr().out
    assert "held-out cases are not listed" in out
    assert not [f for f in holdout if f"  {f}:" in out]


def test_a_delayed_report_naming_a_network_fault_is_networkerror() -> None:
    """A Postfix delay warning (X-Postfix; ... No route to host) is networkerror; one with
    no such words stays expired."""

    def dsn(diagnostic: str) -> bytes:
        return (
            "From: MAILER-DAEMON@mx.example.org\r\nTo: a@example.org\r\n"
            "Subject: Delayed Mail (still being retried)\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
            "--b\r\nContent-Type: text/plain\r\n\r\nwarning only\r\n"
            "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.example.org\r\n\r\n"
            "Final-Recipient: rfc822; b@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
            f"Diagnostic-Code: X-Postfix; {diagnostic}\r\n--b--\r\n"
        ).encode()

    (v,) = rules().classify(parse(dsn("connect to mx.example.net[192.0.2.2]:25: No route to host")))
    assert (v.reason, v.hard) == ("networkerror", False)
    (v,) = rules().classify(
        parse(dsn("connect to mx.example.net[192.0.2.2]:25: Connection timed out"))
    )
    assert v.reason == "expired"


def test_imail_server_wording_names_its_reason() -> None:
    """IMail Server (X-Mailer <SMTP32 v...>) "Unknown user: x" is userunknown, hard."""
    raw = (
        b"From: postmaster@example.org\r\nTo: a@example.org\r\nSubject: Undeliverable Mail\r\n"
        b"X-Mailer: <SMTP32 v8.22>\r\n\r\nUnknown user: b@example.com\r\n\r\n\r\n"
        b"Original message follows.\r\n\r\nTo: b@example.com\r\nSubject: x\r\n\r\nx\r\n"
    )
    (v,) = rules().classify(parse(raw))
    assert (v.recipient, v.reason, v.hard) == ("b@example.com", "userunknown", True)


def test_our_corpus_figures() -> None:
    """bench.classify over tests/corpus/bounces: every labelled case right (but the known
    wrong ones)."""
    from bench.classify import DEFAULT_CORPUS, evaluate, summarize

    s = summarize([c for c in evaluate(DEFAULT_CORPUS) if c.file not in KNOWN_WRONG])
    assert (s.reason, s.recipient, s.status, s.hard, s.false_bounces) == (1, 1, 1, 1, 0), s


def test_hato_bounce_classify_prints_json_per_recipient(tmp_path) -> None:
    """`hato bounce classify` prints a JSON verdict per recipient of each file it is given."""
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
        ("gone@example.net", "userunknown", "dsn"),
        ("full@example.net", "mailboxfull", "dsn"),
        (None, None, "not-a-bounce"),
    ]
    assert Path(rows[0]["file"]).name == "dsn.eml"


def test_hato_bounce_classify_says_clearly_what_is_not_mail(tmp_path) -> None:
    """A missing, empty, binary or directory argument: one error line each, no traceback,
    exit status 1, and the other files still classified."""
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "binary.eml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "dsn.eml").write_bytes(DSN)
    names = ["missing.eml", "empty.eml", "binary.eml", ".", "dsn.eml"]
    done = subprocess.run(
        [sys.executable, "-m", "hato.cli", "bounce", "classify", *names],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    errors = {r["file"]: r["error"] for r in rows if "error" in r}
    assert set(errors) == {"missing.eml", "empty.eml", "binary.eml", "."}
    assert "No such file" in errors["missing.eml"]
    assert "not an email message" in errors["empty.eml"]
    assert "not an email message" in errors["binary.eml"]
    assert "directory" in errors["."]
    assert [r["reason"] for r in rows if "reason" in r] == ["userunknown", "mailboxfull"]


OWN_CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "bounces"


def _labels():
    import csv

    with (OWN_CORPUS / "labels.tsv").open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


# Written before the rules for them (held out): still classified wrong, each for a reason
# issue 15 keeps open. A fix makes its test pass and fail here (strict): then drop it.
KNOWN_WRONG: dict[str, str] = {}


def _row_param(row):
    marks = (
        [pytest.mark.xfail(reason=KNOWN_WRONG[row["file"]], strict=True)]
        if row["file"] in KNOWN_WRONG
        else []
    )
    return pytest.param(row, marks=marks, id=row["file"])


@pytest.mark.parametrize("row", [_row_param(r) for r in _labels()])
def test_our_corpus_of_mta_formats(row) -> None:
    """Each MTA's format, read and classified as labelled (recipient, status, reason,
    hard/soft, ambiguous)."""
    report = parse((OWN_CORPUS / row["file"]).read_bytes())
    if row["reason"] == "not-a-bounce":
        assert report.kind is Kind.NOT_A_BOUNCE
        return
    verdicts = rules().classify(report)
    expected = list(
        zip(
            row["recipient"].split("|"),
            row["status"].split("|"),
            row["reason"].split("|"),
            row["hard"].split("|"),
            row["ambiguous"].split("|"),
            strict=True,
        )
    )
    assert len(verdicts) == len(expected), verdicts
    for v, (recipient, status, reason, hard, ambiguous) in zip(verdicts, expected, strict=True):
        assert (v.recipient, v.reason, v.hard, v.ambiguous) == (
            recipient,
            reason,
            hard == "1",
            ambiguous == "1",
        ), v
        if status:
            assert v.status == status, v


@pytest.mark.parametrize(
    "command, reason", [("RCPT", "userunknown"), ("DATA", "filtered"), (None, "filtered")]
)
def test_a_delivery_result_is_classified_by_the_command_its_reply_answered(command, reason) -> None:
    """The dispatcher's own refusals: a plain "550 No such user" at RCPT is a missing
    mailbox, after DATA (or at an unknown command) the recipient's filter."""
    from services.bounce.service import ResultHandler
    from shared.schemas import DeliveryResult, RecipientResult, RecipientStatus, Reply

    result = DeliveryResult(
        message_id="m1",
        tenant="acme",
        attempt=1,
        destination="mx.example.net",
        results=(
            RecipientResult(
                recipient_id="r1",
                address="x@example.net",
                status=RecipientStatus.BOUNCED,
                reply=Reply(code=550, text="No such user"),
                command=command,
            ),
        ),
    )
    verdict = ResultHandler(timeline=None, rules=rules()).verdicts(result)["r1"]
    assert (verdict.reason, verdict.status) == (reason, "5.0.0")

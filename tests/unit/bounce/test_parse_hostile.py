"""The bounce parser against hostile input: every pattern linear, sizes capped, nothing but
``NotMail`` ever raised (issue 16)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bounces import parse as parse_module
from shared.bounces.classify import Rules, rules
from shared.bounces.parse import Kind, NotMail, parse

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "bounces"
CPU_BOUND = 3.0  # seconds of CPU for a 1 MB hostile input; ~0.2 s on a laptop, noisy CI
HEAD = (
    b"From: MAILER-DAEMON@mx.example.net\nTo: b+1@bounces.shop.test\n"
    b"Subject: Undelivered Mail Returned to Sender\n\n"
)
DSN_HEAD = (
    b"From: MAILER-DAEMON@mx.example.net\nTo: b+1@bounces.shop.test\nSubject: failure\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
    b"--B\nContent-Type: text/plain\n\nfailed\n--B\nContent-Type: message/delivery-status\n\n"
    b"Reporting-MTA: dns; mx.example.net\n\n"
)


def _cpu(raw: bytes) -> float:
    start = time.process_time()
    try:
        report = parse(raw)
        rules().classify(report)
    except NotMail:
        pass
    return time.process_time() - start


def _nested(levels: int, ctype: bytes = b"multipart/mixed") -> bytes:
    raw = b"From: a@example.org\nSubject: Undelivered\nMIME-Version: 1.0\n"
    for i in range(levels):
        raw += b"Content-Type: %s; boundary=b%d\n\n--b%d\n" % (ctype, i, i)
    raw += b"Content-Type: text/plain\n\nuser@example.net: user unknown\n"
    for i in reversed(range(levels)):
        raw += b"--b%d--\n" % i
    return raw


# Bodies of about 1 MB that made the parser quadratic, or could.
HOSTILE = {
    "distinct addresses on one line": b" ".join(b"u%d@e.example" % i for i in range(80_000)),
    "one address on every line": b"\n".join(b"u@e.example" for _ in range(90_000)),
    "addresses with errors": b"\n".join(b"u%d@e.example unknown" % i for i in range(50_000)),
    "local-part characters": b"!" * 1_000_000,
    "dots and at signs": b"a." * 250_000 + b"@" + b"b." * 250_000,
    "unclosed tags": b"<" * 1_000_000,
    "unclosed scripts": b"<script>" * 125_000,
    "blank lines": b"\n \n" * 330_000,
    "rules": (b"-" * 1000 + b"\n") * 1000,
    "status codes": b"5.1.1." * 170_000,
    "reply codes": b"550 " * 250_000,
    "encoded words": b"=?utf-8?q?" * 100_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_megabyte_parses_in_linear_time(name: str) -> None:
    """A 1 MB hostile body, plain or as HTML, costs well under the bound in CPU."""
    assert _cpu(HEAD + HOSTILE[name]) < CPU_BOUND
    html = HEAD.replace(b"\n\n", b"\nContent-Type: text/html\n\n", 1) + HOSTILE[name]
    assert _cpu(html) < CPU_BOUND


def test_a_hostile_megabyte_in_every_header() -> None:
    """Huge Subject, From and X-Failed-Recipients values are read only so far."""
    big = b"=?utf-8?q?" + b"a@b.example " * 80_000
    raw = b"From: %s\nSubject: %s\nX-Failed-Recipients: %s\n\nx\n" % (big, big, big)
    assert _cpu(raw) < CPU_BOUND


def test_eight_thousand_dsn_blocks() -> None:
    """8,000 recipient blocks: quick, and only the first MAX_BLOCKS are read."""
    blocks = b"".join(
        b"Final-Recipient: rfc822; u%d@example.org\nAction: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n" % i
        for i in range(8000)
    )
    raw = DSN_HEAD + blocks + b"--B--\n"
    assert _cpu(raw) < CPU_BOUND
    report = parse(raw)
    assert report.kind is Kind.DSN
    assert len(report.findings) <= parse_module.MAX_BLOCKS


@pytest.mark.parametrize("ctype", [b"multipart/mixed", b"message/rfc822"])
def test_a_thousand_levels_of_mime_nesting(ctype: bytes) -> None:
    """1,000 nested multiparts (or messages) neither exhaust the stack nor take long."""
    raw = _nested(1000, ctype)
    assert _cpu(raw) < CPU_BOUND
    parse(raw)


def test_ten_levels_of_nesting_are_still_read() -> None:
    """The caps leave ordinary nesting alone: the text inside ten multiparts is read."""
    report = parse(_nested(10))
    assert [f.recipient for f in report.findings] == ["user@example.net"]


CRASHES = {
    "8-bit From": b"From: \xff\xfe <a@b.example>\nSubject: Undelivered\n\nx@example.net unknown\n",
    "8-bit Auto-Submitted": b"From: a@b.example\nAuto-Submitted: auto-replied \xff\n"
    b"Subject: hi\n\nx\n",
    "8-bit Return-Path": b"Return-Path: <\xff@b.example>\nFrom: a@b.example\nSubject: hi\n\nx\n",
    "charset idna": b"From: a@b.example\nSubject: Undelivered\n"
    b"Content-Type: text/plain; charset=idna\n\n\xff x@example.net unknown\n",
    "charset with NUL": b"From: a@b.example\nSubject: Undelivered\n"
    b'Content-Type: text/plain; charset="utf\x008"\n\n\xff x@example.net unknown\n',
    "charset base64 codec": b"From: a@b.example\nSubject: Undelivered\n"
    b"Content-Type: text/plain; charset=base64\n\n\xff x@example.net unknown\n",
    "RFC 2231 filename in idna": b"From: a@b.example\nSubject: Undelivered\nMIME-Version: 1.0\n"
    b"Content-Type: multipart/mixed; boundary=X\n\n--X\n"
    b"Content-Type: text/plain; name*=idna''%ff\n"
    b"Content-Disposition: attachment; filename*=idna''%ff\n\nx@example.net unknown\n--X--\n",
    "SES JSON of the wrong shape": b"From: no-reply@sns.amazonaws.com\nSubject: x\n\n"
    b'{"notificationType": "Bounce", "mail": [], "bounce": {"bouncedRecipients": [1, "a"]}}',
    "SES JSON nested deep": b'From: a@b.example\nSubject: x\n\n{"notificationType": '
    + b"[" * 100_000
    + b"}",
    "1,000 levels of nesting": _nested(1000),
}


@pytest.mark.parametrize("name", sorted(CRASHES))
def test_inputs_that_crashed_the_parser(name: str) -> None:
    """Each of these raised (AttributeError, UnicodeError, ValueError, RecursionError)."""
    report = parse(CRASHES[name])
    rules().classify(report)


def _corpus() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]


@settings(
    derandomize=True,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.binary(max_size=4096))
def test_parse_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    """Any bytes: a report, or NotMail."""
    try:
        rules().classify(parse(raw))
    except NotMail:
        pass


@settings(
    derandomize=True,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.sampled_from(_corpus()),
    st.lists(
        st.tuples(st.integers(0, 1 << 16), st.integers(0, 64), st.binary(max_size=64)),
        min_size=1,
        max_size=8,
    ),
)
def test_parse_never_raises_on_mutated_corpus_messages(
    raw: bytes, edits: list[tuple[int, int, bytes]]
) -> None:
    """Real bounce formats with bytes cut, replaced and inserted: a report, or NotMail."""
    data = bytearray(raw)
    for at, cut, insert in edits:
        at %= len(data) + 1
        data[at : at + cut] = insert
    try:
        rules().classify(parse(bytes(data)))
    except NotMail:
        pass


MARKERS = st.sampled_from(
    [
        b"\n",
        b"\n\n",
        b"Content-Type: multipart/mixed; boundary=Q\n\n--Q\n",
        b"Content-Type: message/delivery-status\n\n",
        b"Content-Type: message/rfc822\n\n",
        b"Content-Type: text/plain; charset=iso-2022-jp\n",
        b"Content-Transfer-Encoding: base64\n",
        b"Content-Transfer-Encoding: quoted-printable\n",
        b"--Q--\n",
        b"Final-Recipient: rfc822; a@example.org\n",
        b"Status: 5.1.1\nAction: failed\n",
        b"Diagnostic-Code: smtp; 550 5.1.1 <a@example.org> unknown\n",
        b"Feedback-Type: abuse\nUser-Agent: x\n",
        b"=?utf-8?b?",
        b"\x1b$B",
        b"\xff\xfe",
        b"<a@example.org>",
        b'{"notificationType": "Bounce"',
    ]
)


@settings(
    derandomize=True,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.one_of(MARKERS, st.binary(max_size=16)), max_size=40))
def test_parse_never_raises_on_structured_garbage(pieces: list[bytes]) -> None:
    """Bounce-shaped fragments in any order after a header: a report, or NotMail."""
    raw = b"From: MAILER-DAEMON@example.net\nSubject: Undelivered\n" + b"".join(pieces)
    try:
        rules().classify(parse(raw))
    except NotMail:
        pass


# -- every pattern linear ------------------------------------------------------------------

ALPHABETS = [
    "a", " ", "\n", "\t", "-", ".", "@", "<", ">", "!", "=", "?", "5", "日", "a.", "a@", "5.",
    "550 ", "a-", " \n", "\n\n", "=?", "<a", "a@b.", ".a", "@a.", "x ", "::", "a\n",
]  # fmt: skip


def _patterns() -> list[tuple[str, re.Pattern[str]]]:
    found = [
        (f"parse.{name}", value)
        for name, value in vars(parse_module).items()
        if isinstance(value, re.Pattern) and isinstance(value.pattern, str)
    ]
    r: Rules = rules()
    for name, (pattern, exception) in r.phrases.items():
        found += [(f"phrases.{name}", p) for p in (pattern, exception) if p is not None]
    for i, rule in enumerate(r.rules):
        found += [(f"rules[{i}]", p) for p in (rule.text, rule.not_text) if p is not None]
    return found


def test_every_pattern_is_linear_on_runs_of_any_character() -> None:
    """No pattern in parse.py or reasons.toml backtracks: 10,000-character runs of each
    character (and pair) search in about a second at most (the big alternations of
    reasons.toml take ~10 ms a run; one backtracking pattern took 20 s)."""
    slow = []
    for name, pattern in _patterns():
        start = time.process_time()
        for alphabet in ALPHABETS:
            pattern.search(alphabet * (10_000 // len(alphabet)))
        spent = time.process_time() - start
        if spent > 1.5:
            slow.append((name, round(spent, 2)))
    assert not slow, slow

"""The bounce parser and classifier (services/bounce/) under fuzzing: on arbitrary bytes, on
bounce-shaped fragments and on mutated corpus messages they return a report or ``NotMail``,
never raise anything else. The hostile-size and linear-time checks live beside the parser's
unit tests (tests/unit/bounce/test_parse_hostile.py); this runs the same properties at the
fuzz profile's scale."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bounces.classify import rules
from shared.bounces.parse import NotMail, parse
from tests.unit.bounce.test_parse_hostile import HEAD, MARKERS, _corpus

CORPUS = _corpus()


def _parse_and_classify(raw: bytes) -> None:
    try:
        report = parse(raw)
    except NotMail:
        return
    rules().classify(report)


@given(st.binary(max_size=8192))
def test_arbitrary_bytes(raw: bytes) -> None:
    """Any bytes: a classified report, or NotMail."""
    _parse_and_classify(raw)


@given(st.lists(st.one_of(MARKERS, st.binary(max_size=24)), max_size=60))
def test_bounce_shaped_fragments(pieces: list[bytes]) -> None:
    """DSN, ARF and MIME fragments in any order after a header."""
    _parse_and_classify(
        b"From: MAILER-DAEMON@example.net\nSubject: Undelivered\n" + b"".join(pieces)
    )


@given(
    st.sampled_from(CORPUS),
    st.lists(
        st.tuples(
            st.integers(0, 1 << 16),
            st.integers(0, 64),
            st.one_of(st.binary(max_size=64), MARKERS),
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_mutated_corpus_messages(raw: bytes, edits: list[tuple[int, int, bytes]]) -> None:
    """Real bounces (tests/corpus/bounces) with bytes cut, replaced and inserted."""
    data = bytearray(raw)
    for at, cut, insert in edits:
        at %= len(data) + 1
        data[at : at + cut] = insert
    _parse_and_classify(bytes(data))


MEGABYTE = 1_000_000
CPU_BOUND = 1.0  # seconds of CPU for a 1 MB body (issue 16); ~0.2 s is usual


@settings(max_examples=max(5, settings.default.max_examples // 20))
@given(
    st.lists(st.one_of(MARKERS, st.binary(min_size=1, max_size=12)), min_size=1, max_size=6),
    st.booleans(),
)
def test_a_hostile_megabyte_parses_in_under_a_second(pieces: list[bytes], html: bool) -> None:
    """Any short fragment repeated to 1 MB, as plain text or HTML, parses and classifies in
    under a second of CPU."""
    unit = b"".join(pieces)
    head = HEAD.replace(b"\n\n", b"\nContent-Type: text/html\n\n", 1) if html else HEAD
    raw = head + unit * (MEGABYTE // len(unit) + 1)
    start = time.process_time()
    _parse_and_classify(raw)
    assert time.process_time() - start < CPU_BOUND

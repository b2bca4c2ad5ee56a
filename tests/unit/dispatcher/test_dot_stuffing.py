"""The dispatcher sends a message's DATA as aiosmtplib would, and BDAT with the same bytes: its
shortcut for messages in CRLF must give aiosmtplib's bytes for every message."""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from services.dispatcher.pipelining import _dot_stuffed, bdat


def aiosmtplibs(message: bytes) -> bytes:
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


_octets = st.lists(
    st.sampled_from([b"a", b".", b"..", b"\r\n", b"\r", b"\n", b" ", b"\r\n.\r\n"]), max_size=30
).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(message=_octets)
def test_data_is_aiosmtplibs(message: bytes) -> None:
    """Any message, line ends mixed or not, goes out as aiosmtplib would send it."""
    assert _dot_stuffed(message) == aiosmtplibs(message)


def test_a_leading_dot_and_a_lone_dot_line_are_doubled() -> None:
    """The first line and a line holding only a dot are stuffed too."""
    assert _dot_stuffed(b".a\r\n.\r\nb") == b"..a\r\n..\r\nb\r\n.\r\n"


@settings(max_examples=500, deadline=None)
@given(message=_octets)
def test_a_bdat_chunk_is_the_message_as_data_would_deliver_it(message: bytes) -> None:
    """A last BDAT chunk carries what a server would store from DATA: CRLF line ends, a
    final CRLF, dots as they are, and its size counts exactly those bytes."""
    chunk = bdat(message)
    command, _, data = chunk.partition(b"\r\n")
    assert data == normalize_message_line_endings(message)
    assert command == b"BDAT %d LAST" % len(data)

"""Hato's SMTP listeners read a plain path without the RFC 5322 parser: it must answer
exactly what the parser answers, for every input its shortcut takes."""

from __future__ import annotations

from email.errors import HeaderParseError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.smtp_server import PLAIN_PATH, Protocol, parse_path


def parsed(arg: str) -> tuple[str, str] | None:
    try:
        return parse_path(arg)
    except HeaderParseError:
        return None


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.c>",
        "<taro.yamada@docomo.ne.jp> SIZE=1024",
        " <A.B@C.D>  BODY=8BITMIME SIZE=3 ",
        "<x+tag@mail.example> ",
        "<o'brien@example.com> SMTPUTF8",
    ],
)
def test_plain_paths_take_the_shortcut_and_agree(arg: str) -> None:
    """Everyday MAIL and RCPT arguments (tags, apostrophes, parameters, extra blanks) take the
    shortcut and read as the parser reads them."""
    plain = PLAIN_PATH.match(arg)
    assert plain is not None
    assert (plain.group(1), plain.group(2)) == parsed(arg)


@pytest.mark.parametrize(
    "arg",
    [
        "<a@b.c>SIZE=1",  # no space: the parser's business
        "<a@b.c> (comment) SIZE=1",
        '<"quoted local"@b.c>',
        "<a..b@c.d>",
        "<.a@b.c>",
        "<a@[127.0.0.1]>",
        "<a@b.c>\n",
        "<太郎@例え.jp>",
        "a@b.c",
    ],
)
def test_anything_else_goes_to_the_parser(arg: str) -> None:
    """No space before a parameter, comments, quoting, dots out of place, address literals, line
    breaks, non-ASCII or no brackets: left to the parser."""
    assert PLAIN_PATH.match(arg) is None


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=" \t<>@.()\"'+-_=aZ09\n[]:\\", max_size=30))
def test_the_shortcut_never_disagrees_with_the_parser(arg: str) -> None:
    """On random text made of the characters of paths, whatever the shortcut takes it reads as the
    parser does."""
    plain = PLAIN_PATH.match(arg)
    if plain is not None:
        assert (plain.group(1), plain.group(2)) == parsed(arg)


_piece = st.text(alphabet="aZ09.+-'=_\"()[] \\@", max_size=8)


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(["", " ", "\t"]),
    _piece,
    _piece,
    st.sampled_from(["", " ", "  ", "\t", " (", " \n", "\n"]),
    st.text(alphabet="SIZE=0189 ()BODY\t\n", max_size=12),
)
def test_path_shaped_input_never_disagrees_with_the_parser(
    lead: str, local: str, domain: str, sep: str, rest: str
) -> None:
    """On generated `<local@domain>` arguments with odd blanks and parameters, whatever the shortcut
    takes it reads as the parser does."""
    arg = f"{lead}<{local}@{domain}>{sep}{rest}"
    plain = PLAIN_PATH.match(arg)
    if plain is not None:
        assert (plain.group(1), plain.group(2)) == parsed(arg)


class _Handler:
    pass


async def test_every_listener_reads_the_null_path_and_refuses_source_routes() -> None:
    """``MAIL FROM:<>`` (RFC 5321 4.5.5, what bounces use) reads as ``<>``; a source route
    is refused; a plain path keeps its parameters."""
    protocol = Protocol(_Handler(), hostname="h.test")
    assert protocol._getaddr("<> SIZE=10") == ("<>", " SIZE=10")
    assert protocol._getaddr("<@relay.test:a@b.test>") == (None, None)
    assert protocol._getaddr("<a@b.test> BODY=8BITMIME") == ("a@b.test", "BODY=8BITMIME")

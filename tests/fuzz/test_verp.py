"""VERP return paths (shared/verp.py) under fuzzing: ``parse`` never raises, only what
``for_recipient``/``for_message`` wrote verifies, and a changed character never does."""

from __future__ import annotations

import uuid
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from shared.verp import TokenKind, Verp

KEY = b"fuzz-verp-key"
TODAY = date(2026, 12, 2)
VERP = Verp(KEY)
LOCAL = "abcdefghijklmnopqrstuvwxyz234567ABCXYZ018=.@-_ "

_ids = st.uuids().map(str)
_domains = st.sampled_from(["shop.test", "Mail.Example.COM", "a.b"])
_kinds = st.sampled_from(list(TokenKind))


def _issue(kind: TokenKind, id_: str, domain: str) -> str:
    if kind is TokenKind.RECIPIENT:
        return VERP.for_recipient(id_, domain, today=TODAY)
    return VERP.for_message(id_, domain, today=TODAY)


@given(st.one_of(st.text(max_size=200), st.text(alphabet=LOCAL, max_size=60)))
def test_parse_never_raises_and_refuses_what_it_did_not_write(address: str) -> None:
    """Any text: None (a forgery needs the MAC: 64 bits), never an exception."""
    assert VERP.parse(address, today=TODAY) is None


@given(_kinds, _ids, _domains)
def test_what_it_writes_verifies_and_names_the_same_id(
    kind: TokenKind, id_: str, domain: str
) -> None:
    """A return path it wrote parses back to its kind, id and day, and only with its key."""
    address = _issue(kind, id_, domain)
    token = VERP.parse(address, today=TODAY)
    assert token is not None
    assert (token.kind, token.id, token.issued) == (kind, str(uuid.UUID(id_)), TODAY)
    assert Verp(b"another key").parse(address, today=TODAY) is None
    assert len(address.partition("@")[0]) <= 64  # RFC 5321 4.5.3.1.1


@given(_kinds, _ids, st.data())
def test_a_changed_character_never_verifies(kind: TokenKind, id_: str, data) -> None:
    """Any one character of the local part replaced, dropped or doubled: refused."""
    address = _issue(kind, id_, "shop.test")
    local, _, domain = address.partition("@")
    at = data.draw(st.integers(0, len(local) - 1))
    edit = data.draw(st.sampled_from(["replace", "drop", "double", "upper"]))
    if edit == "replace":
        new = data.draw(st.sampled_from(LOCAL).filter(lambda c: c != local[at]))
        changed = local[:at] + new + local[at + 1 :]
    elif edit == "drop":
        changed = local[:at] + local[at + 1 :]
    elif edit == "double":
        changed = local[:at] + local[at] + local[at:]
    else:
        changed = local[:at] + local[at].upper() + local[at + 1 :]
    if changed == local:  # upper-casing a digit
        return
    assert VERP.parse(f"{changed}@{domain}", today=TODAY) is None

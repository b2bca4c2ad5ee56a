"""VERP return paths (shared/verp.py): a token names one recipient or one message, carries a
64-bit MAC and its issue day, and verifies only in its one canonical spelling, unexpired, under
its own key."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest

from shared.verp import (
    DEFAULT_TTL_DAYS,
    MAC_BYTES,
    TOKEN_PATTERN,
    Token,
    TokenKind,
    Verp,
    unverified_message_id,
)

KEY = b"verp test key"
TODAY = date(2026, 12, 2)
ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


def ids() -> str:
    return str(uuid.uuid4())


def test_a_recipient_token_names_its_recipient_and_its_day() -> None:
    """The return path of a recipient parses back to that recipient and the day it was made."""
    rid = ids()
    address = Verp(KEY).for_recipient(rid, "Shop.Test", today=TODAY)
    assert address.endswith("@bounces.shop.test")
    assert Verp(KEY).parse(address, today=TODAY) == Token(TokenKind.RECIPIENT, rid, TODAY)


def test_a_message_token_names_its_message() -> None:
    """Per-message VERP names the message, and the unverified helper reads it back."""
    mid = ids()
    address = Verp(KEY, "rp").for_message(mid, "shop.test", today=TODAY)
    assert address.endswith("@rp.shop.test")
    assert Verp(KEY, "rp").parse(address, today=TODAY) == Token(TokenKind.MESSAGE, mid, TODAY)
    assert unverified_message_id(address) == mid
    assert unverified_message_id(Verp(KEY).for_recipient(ids(), "shop.test")) is None


def test_the_local_part_fits_rfc_5321_and_the_mac_has_64_bits() -> None:
    """43 characters of local part, within RFC 5321's 64; a MAC of at least 64 bits."""
    local = Verp(KEY).for_recipient(ids(), "shop.test").partition("@")[0]
    assert len(local) == 43 <= 64
    assert MAC_BYTES * 8 >= 64


def test_every_changed_character_is_refused_including_the_last() -> None:
    """Canonical: no other spelling verifies, not even one that differs only in the unused
    bits of the last base32 character, nor the same token in capitals."""
    verp = Verp(KEY)
    address = verp.for_recipient(ids(), "shop.test", today=TODAY)
    local, _, domain = address.partition("@")
    for i in range(len(local)):
        for c in ALPHABET:
            if c != local[i]:
                changed = local[:i] + c + local[i + 1 :]
                assert verp.parse(f"{changed}@{domain}", today=TODAY) is None, (i, c)
    assert verp.parse(local.upper() + "@" + domain, today=TODAY) is None
    assert verp.parse(local + "a@" + domain, today=TODAY) is None
    assert verp.parse(local[:-1] + "@" + domain, today=TODAY) is None


def test_a_token_expires_after_its_ttl() -> None:
    """Valid for ttl_days after its issue day (and one day early, for a clock ahead); not after."""
    verp = Verp(KEY)
    address = verp.for_recipient(ids(), "shop.test", today=TODAY)
    ttl = timedelta(days=DEFAULT_TTL_DAYS)
    assert verp.parse(address, today=TODAY + ttl) is not None
    assert verp.parse(address, today=TODAY + ttl + timedelta(days=1)) is None
    assert verp.parse(address, today=TODAY - timedelta(days=1)) is not None
    assert verp.parse(address, today=TODAY - timedelta(days=2)) is None
    short = Verp(KEY, ttl_days=3)
    assert short.parse(address, today=TODAY + timedelta(days=4)) is None


def test_a_token_under_another_key_is_refused() -> None:
    """The MAC is keyed: a token made with another key does not verify."""
    address = Verp(b"another key").for_recipient(ids(), "shop.test", today=TODAY)
    assert Verp(KEY).parse(address, today=TODAY) is None


def test_a_recipient_token_cannot_become_a_message_token() -> None:
    """The kind is signed: flipping r to m (to act on a whole message) breaks the MAC."""
    address = Verp(KEY).for_recipient(ids(), "shop.test", today=TODAY)
    assert Verp(KEY).parse("m" + address[1:], today=TODAY) is None


def test_old_and_foreign_return_paths_do_not_parse() -> None:
    """The earlier 40-bit layout, plain addresses and junk are not tokens."""
    verp = Verp(KEY)
    old = "b" + "a" * 52 + "." + "a" * 8 + "@bounces.shop.test"
    for address in (old, "postmaster@bounces.shop.test", "", "@", "r@x", "r" + "é" * 42 + "@x"):
        assert verp.parse(address, today=TODAY) is None
        assert unverified_message_id(address) is None


def test_a_token_is_found_in_a_header_value() -> None:
    """TOKEN_PATTERN finds a return path inside the headers of a returned original."""
    address = Verp(KEY).for_recipient(ids(), "shop.test")
    assert TOKEN_PATTERN.findall(f"from x (envelope-from <{address}>)") == [address]


def test_a_verp_needs_a_key_and_a_positive_ttl() -> None:
    """Constructor arguments are checked at once."""
    with pytest.raises(ValueError):
        Verp(b"")
    with pytest.raises(ValueError):
        Verp(KEY, ttl_days=0)

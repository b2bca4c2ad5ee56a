"""One-click unsubscribe tokens and header fields: genuine ones are read back, forged, altered
and other keys' ones are refused, and the fields are what RFC 2369 and RFC 8058 ask."""

from __future__ import annotations

import base64
from datetime import date

import pytest

from shared.ids import new_id
from shared.unsubscribe import (
    BadListName,
    Ticket,
    Unsubscribe,
    field_value,
    list_name,
    list_or_tag,
    scope_of,
    shown,
    without_fields,
)

U = Unsubscribe(b"k" * 32, "https://mail.example.com/", "bounces")
DAY = date(2026, 12, 3)


def _flip(token: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[at] ^= 1
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def test_a_link_token_names_its_tenant_list_and_address() -> None:
    """The token is read back to the tenant, list and (lower-cased) address it was made for."""
    token = U.link_token("shop", "news", "Alice@Example.com", today=DAY)
    assert U.parse_link(token) == Ticket("shop", "news", "alice@example.com", DAY)
    assert U.link("shop", "news", "a@b.test").startswith("https://mail.example.com/u/")


def test_a_forged_link_token_is_refused() -> None:
    """Random bytes, a token of another key, junk and the empty string name nothing."""
    assert U.parse_link(base64.urlsafe_b64encode(b"\x01" * 40).decode().rstrip("=")) is None
    other = Unsubscribe(b"x" * 32).link_token("shop", "news", "a@b.test")
    assert U.parse_link(other) is None
    for junk in ("", "!!!", "é", "a" * 700, "AQ"):
        assert U.parse_link(junk) is None


def test_a_tampered_link_token_is_refused() -> None:
    """Any changed byte (the day, the MAC, the tenant, the address) breaks the MAC, and a
    second spelling of the same bytes is no token either."""
    token = U.link_token("shop", "news", "a@b.test", today=DAY)
    for at in (1, 5, 20, len(base64.urlsafe_b64decode(token + "==")) - 1):
        assert U.parse_link(_flip(token, at)) is None
    assert U.parse_link(token + "=") is None


def test_another_tenants_token_does_not_name_this_tenant() -> None:
    """A token made for one tenant's list, with the tenant name swapped, is not genuine."""
    token = U.link_token("rival", "news", "a@b.test", today=DAY)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    swapped = raw.replace(b"rival\0", b"shop1\0")
    forged = base64.urlsafe_b64encode(swapped).decode().rstrip("=")
    assert U.parse_link(forged) is None
    assert U.parse_link(token).tenant == "rival"  # type: ignore[union-attr]


def test_a_mailto_address_fits_a_local_part_and_names_its_recipient() -> None:
    """The mailto's local part is at most 64 octets (RFC 5321) and names the recipient; a
    changed character or another key's address names nothing."""
    rid = new_id()
    address = U.mailto_address(rid, "Shop.test", today=DAY)
    local, _, domain = address.partition("@")
    assert len(local) <= 64 and domain == "bounces.shop.test"
    assert U.parse_mailto(address) == rid
    assert U.parse_mailto(address.upper()) is None
    changed = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    assert U.parse_mailto(changed) is None
    assert Unsubscribe(b"x" * 32).parse_mailto(address) is None
    assert U.parse_mailto("r" + local[1:] + "@" + domain) is None  # a VERP kind, not ours


def test_header_fields_carry_link_mailto_and_one_click() -> None:
    """List-Unsubscribe holds the HTTPS link first, then the mailto; List-Unsubscribe-Post
    says One-Click; without a public URL only the mailto is given, and no Post field."""
    rid = new_id()
    fields = U.header_fields(
        tenant="shop", list_="news", address="a@b.test", recipient_id=rid, domain="shop.test"
    )
    value = field_value(fields + b"\r\n", b"list-unsubscribe")
    assert value is not None
    link, mailto = (u.strip().strip("<>") for u in value.split(","))
    assert U.parse_link(link.rpartition("/u/")[2]).address == "a@b.test"  # type: ignore[union-attr]
    assert mailto.startswith("mailto:u")
    assert mailto.endswith("@bounces.shop.test?subject=unsubscribe")
    assert field_value(fields + b"\r\n", b"list-unsubscribe-post") == "List-Unsubscribe=One-Click"
    assert all(len(line) <= 998 for line in fields.split(b"\r\n"))
    plain = Unsubscribe(b"k" * 32).header_fields(
        tenant="shop", list_="news", address="a@b.test", recipient_id=rid, domain="shop.test"
    )
    assert b"List-Unsubscribe-Post" not in plain and b"mailto:" in plain


def test_list_names_and_scopes() -> None:
    """A list name is 1-64 safe characters; its suppression scope is list:<name>."""
    assert list_name("news-2026.jp_x") == "news-2026.jp_x"
    assert scope_of("news") == "list:news"
    for bad in ("", "-x", "a b", "a\0b", "x" * 65, "ニュース"):
        with pytest.raises(BadListName):
            list_name(bad)


def test_fields_are_removed_with_their_folded_lines() -> None:
    """without_fields drops every instance of the named fields and their continuation lines,
    and leaves the rest and the body alone."""
    msg = (
        b"From: a@b.test\r\nList-Unsubscribe: <https://x>,\r\n <mailto:y>\r\n"
        b"Subject: s\r\nlist-unsubscribe-post: List-Unsubscribe=One-Click\r\n\r\n"
        b"List-Unsubscribe: in the body\r\n"
    )
    out = without_fields(msg, frozenset({b"list-unsubscribe", b"list-unsubscribe-post"}))
    assert out == b"From: a@b.test\r\nSubject: s\r\n\r\nList-Unsubscribe: in the body\r\n"


def test_a_tag_can_be_left_like_a_list() -> None:
    """``tag:<tag>`` names a tag: its token reads back, its scope is itself, a reader is shown
    the tag; an empty, overlong or control-character tag is refused."""
    token = U.link_token("shop", "tag:Sale 2026", "a@b.test", today=DAY)
    assert U.parse_link(token) == Ticket("shop", "tag:Sale 2026", "a@b.test", DAY)
    assert scope_of("tag:Sale 2026") == "tag:Sale 2026" and shown("tag:Sale 2026") == "Sale 2026"
    assert list_or_tag("news") == "news" and shown("news") == "news"
    for bad in ("tag:", "tag:" + "x" * 201, "tag:a\x01b", "tag:a\x00b"):
        with pytest.raises(BadListName):
            list_or_tag(bad)

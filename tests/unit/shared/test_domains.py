"""The domain of an address, and the walk from a domain to its parents."""

from __future__ import annotations

from shared.domains import domain_of, walk_up


def test_the_domain_of_an_address_is_lower_cased() -> None:
    """The part after the last @, lower-cased (all of a text without one)."""
    assert domain_of('"a@b"@Shop.Example') == "shop.example"
    assert domain_of("postmaster") == "postmaster"  # no @: the whole is read as the domain
    assert domain_of("x@") == ""


def test_the_walk_goes_up_to_the_registered_domain_or_to_the_top() -> None:
    """Nearest first, without the trailing dot; the top-level label only when asked."""
    assert list(walk_up("Mail.Shop.Example.")) == ["mail.shop.example", "shop.example"]
    assert list(walk_up("mail.shop.example", top=True))[-1] == "example"
    assert list(walk_up("localhost")) == []

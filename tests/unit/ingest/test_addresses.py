"""Envelope addresses: classic relay tricks are not mailboxes."""

from __future__ import annotations

import pytest

from services.ingest.addresses import split


@pytest.mark.parametrize(
    "address",
    ["bob@ok.test", "first.last+tag@Sub.Example.COM", "o'neil@ok.test", "x@a-b.example"],
)
def test_plain_mailboxes_are_accepted(address: str) -> None:
    """Ordinary mailboxes pass: tags, dots, apostrophes, hyphens and mixed case."""
    assert split(address) is not None


@pytest.mark.parametrize(
    "address",
    [
        "victim%elsewhere.test@ok.test",  # percent hack
        "elsewhere.test!victim@ok.test",  # bang path
        '"victim@elsewhere.test"@ok.test',  # quoted local part hiding an @
        "victim",  # unqualified
        "victim@localhost",  # unqualified domain
        "victim@[192.0.2.1]",  # address literal
        "a..b@ok.test",
        "@relay.test:victim@ok.test",
        "x" * 65 + "@ok.test",  # RFC 5321 4.5.3.1.1
    ],
)
def test_relay_tricks_and_malformed_addresses_are_refused(address: str) -> None:
    """Percent hacks, bang paths, quoted local parts, source routes, unqualified or literal domains,
    doubled dots and over-long local parts are not mailboxes: no relay goes through them."""
    assert split(address) is None


def test_the_domain_is_lower_cased() -> None:
    """The domain comes back lower-cased; the local part keeps its case, which only its own server
    may judge (RFC 5321 2.4)."""
    assert split("Bob@OK.Test") == ("Bob", "ok.test")

"""Domains of addresses, and the walk from a domain up to its parents."""

from __future__ import annotations

from collections.abc import Iterator


def domain_of(address: str) -> str:
    """The domain of an address (what follows its last @; all of it when it has none),
    lower-cased."""
    return address.rpartition("@")[2].lower()


def walk_up(domain: str, *, top: bool = False) -> Iterator[str]:
    """``mail.shop.example``, ``shop.example``: the domain and each parent, nearest first,
    lower-cased and without a trailing dot; the top-level label alone only when ``top``
    (a route for ``example`` is a catch-all, a preset, key or owner never is)."""
    labels = domain.lower().rstrip(".").split(".")
    for i in range(len(labels) if top else len(labels) - 1):
        yield ".".join(labels[i:])

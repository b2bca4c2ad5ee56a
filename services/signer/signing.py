"""DKIM signing (RFC 6376) with the domain's active key, and the key ring that finds keys.

Keys are read from the ``domains`` collection, opened with the master key and
kept in memory for ``key_cache_seconds``.
"""

from __future__ import annotations

import time

import dkim

from shared.dkim import DkimKey, from_document
from shared.secrets import SecretBox
from shared.store import Store

CANONICALIZATION = (b"relaxed", b"relaxed")


class KeyRing:
    """The active signing key of each domain, cached."""

    def __init__(self, store: Store, box: SecretBox, *, ttl: float) -> None:
        self.store = store
        self.box = box
        self.ttl = ttl
        self._cache: dict[str, tuple[float, DkimKey | None]] = {}

    async def for_domain(self, domain: str) -> DkimKey | None:
        domain = domain.lower()
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        doc = await self.store.directory.domain(domain)
        key = None
        for k in (doc or {}).get("dkim", []):
            if k.get("active") and k.get("algorithm") == "rsa-sha256":
                key = from_document(domain, k, self.box)
                break
        self._cache[domain] = (time.monotonic() + self.ttl, key)
        return key


def sign(raw: bytes, key: DkimKey) -> bytes:
    """``raw`` with a DKIM-Signature header field prepended."""
    signature = dkim.sign(
        raw,
        key.selector.encode(),
        key.domain.encode(),
        key.private_pem,
        canonicalize=CANONICALIZATION,
        linesep=b"\r\n" if b"\r\n" in raw[:2000] or not raw else b"\n",
    )
    return signature + raw

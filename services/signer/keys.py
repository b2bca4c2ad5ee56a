"""Which keys sign a message: the key ring.

For a tenant's message with header From ``domain`` the ring looks for active keys of
``domain``, then of its parent domains, among the tenant's domains (relaxed DMARC alignment);
failing that, the tenant's fallback signing domain (``signing_domain`` on the tenant), which is
not aligned and is said so in the events. Keys come from the ``domains`` collection (private
keys sealed with the master key) and from PEM files in ``keys_dir`` (mounted secrets), named
``<selector>._domainkey.<domain>.pem``; they are kept in memory for ``ttl`` seconds, and
forgotten at once when an operator's change is announced (a key activated, a domain added),
so the first mail after a change is signed as the change says.

Loading an RSA key into OpenSSL takes about 50 ms (it checks the key), a hundred signatures'
worth: a key is loaded once and kept by its sealed form, so reading a domain again (each
``ttl``, after each change) loads only keys that changed, and messages that find a domain
missing at the same moment wait for one read of it instead of each making its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cachetools import LRUCache, TTLCache

from services.signer.dkim_sign import SigningKey
from shared import logging as hlog
from shared.directory import Directory
from shared.dkim import ACTIVE, DkimKey, from_document, from_pem, status
from shared.domains import walk_up
from shared.errors import ConfigError
from shared.secrets import SecretBox

log = hlog.get_logger(__name__)

CACHED_DOMAINS = 10_000  # domains (and tenants' fallback domains) a signer keeps at most


class _Found(NamedTuple):
    """A key a domain has: from a file (a DkimKey) or its stored document (still sealed)."""

    algorithm: str
    selector: str
    material: Any  # what tells this key from another: its sealed or its PEM form
    source: DkimKey | dict[str, Any]


@dataclass(frozen=True, slots=True)
class Choice:
    """The keys to sign with and what they mean for alignment."""

    keys: tuple[SigningKey, ...]
    domain: str | None
    aligned: bool

    @property
    def selectors(self) -> str:
        return ",".join(f"{k.key.selector}({k.key.algorithm})" for k in self.keys)


def load_key_files(folder: str) -> dict[str, list[DkimKey]]:
    """``<selector>._domainkey.<domain>.pem`` files → keys by domain."""
    keys: dict[str, list[DkimKey]] = {}
    if not folder:
        return keys
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"HATO_SIGNER_KEYS_DIR {folder} is not a folder")
    for file in sorted(path.glob("*._domainkey.*.pem")):
        selector, _, domain = file.name[: -len(".pem")].partition("._domainkey.")
        try:
            key = from_pem(domain.lower(), selector, file.read_bytes())
        except ValueError as exc:
            raise ConfigError(f"{file}: {exc}") from None
        keys.setdefault(key.domain, []).append(key)
        log.info("key from file", domain=key.domain, selector=selector, algorithm=key.algorithm)
    return keys


class KeyRing:
    def __init__(
        self,
        directory: Directory,
        box: SecretBox | None,
        *,
        ttl: float,
        files: dict[str, list[DkimKey]] | None = None,
    ) -> None:
        self.directory = directory
        self.box = box
        self.ttl = ttl
        self.files = files or {}
        # Bounded: a stream of mail from ever new domains does not grow the signer.
        self._domains: TTLCache[str, tuple[str | None, tuple[SigningKey, ...]]] = TTLCache(
            CACHED_DOMAINS, ttl
        )
        self._fallback: TTLCache[str, str | None] = TTLCache(CACHED_DOMAINS, ttl)
        self._loaded: LRUCache[tuple[str, str, Any], SigningKey] = LRUCache(CACHED_DOMAINS)
        self._reading: dict[str, asyncio.Future[tuple[str | None, tuple[SigningKey, ...]]]] = {}
        self._generation = 0  # announced changes so far

    def forget(self) -> None:
        """Drop every cached domain and fallback domain: the next message reads them again
        (and loads the keys that changed)."""
        self._generation += 1
        self._domains.clear()
        self._fallback.clear()
        self._reading.clear()

    async def choose(self, tenant: str, from_domain: str) -> Choice:
        for domain in walk_up(from_domain):
            owner, keys = await self._domain(domain)
            if owner == tenant and keys:
                return Choice(keys, domain, aligned=True)
            if owner is not None:  # an owned domain without a key: stop at it
                break
        fallback = await self._fallback_domain(tenant)
        if fallback:
            owner, keys = await self._domain(fallback)
            if owner == tenant and keys:
                return Choice(keys, fallback, aligned=False)
        return Choice((), None, aligned=False)

    async def _domain(self, domain: str) -> tuple[str | None, tuple[SigningKey, ...]]:
        hit = self._domains.get(domain)
        if hit is not None:
            return hit
        reading = self._reading.get(domain)
        if reading is None:  # the first to miss reads; the others wait for its answer
            reading = self._reading[domain] = asyncio.ensure_future(self._read(domain))
            reading.add_done_callback(
                lambda done: (
                    self._reading.pop(domain, None) if self._reading.get(domain) is done else None
                )
            )
        return await asyncio.shield(reading)

    async def _read(self, domain: str) -> tuple[str | None, tuple[SigningKey, ...]]:
        generation = self._generation
        doc = await self.directory.domain(domain)
        owner = doc["tenant"] if doc else None
        found = [
            _Found(k.algorithm, k.selector, ("file", k.private_pem), k)
            for k in self.files.get(domain, [])
        ]
        file_selectors = {f.selector for f in found}
        if doc and self.box is not None:
            found += [
                _Found(k["algorithm"], k["selector"], k["private_key_sealed"], k)
                for k in doc.get("dkim", [])
                if status(k) == ACTIVE and k["selector"] not in file_selectors
            ]
        # One RSA and one Ed25519 at most; RSA first (the signature most receivers check).
        chosen: dict[str, _Found] = {}
        for f in found:
            chosen.setdefault(f.algorithm, f)
        loaded = tuple(
            self._load(domain, f)
            for f in sorted(chosen.values(), key=lambda f: f.algorithm != "rsa-sha256")
        )
        if generation == self._generation:  # not if a change was announced meanwhile
            self._domains[domain] = (owner, loaded)
        return owner, loaded

    def _load(self, domain: str, found: _Found) -> SigningKey:
        """The loaded key of this material: loaded once, whatever the reads of its domain."""
        cached = (domain, found.selector, found.material)
        key = self._loaded.get(cached)
        if key is None:
            source = found.source
            if isinstance(source, DkimKey):
                dkim_key = source
            elif self.box is not None:  # stored keys are read only with a box
                dkim_key = from_document(domain, source, self.box)
            else:
                raise ConfigError(f"{domain}: a stored key, and no master key to open it")
            key = self._loaded[cached] = SigningKey.load(dkim_key)
        return key

    async def _fallback_domain(self, tenant: str) -> str | None:
        if tenant in self._fallback:
            return self._fallback[tenant]
        doc = await self.directory.tenant(tenant)
        fallback = (doc or {}).get("signing_domain")
        self._fallback[tenant] = fallback
        return fallback

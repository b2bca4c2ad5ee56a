"""Which keys sign a message: the key ring.

For a tenant's message with header From ``domain`` the ring looks for active keys of
``domain``, then of its parent domains, among the tenant's domains (relaxed DMARC alignment);
failing that, the tenant's fallback signing domain (``signing_domain`` on the tenant), which is
not aligned and is said so in the events. Keys come from the ``domains`` collection (private
keys sealed with the master key) and from PEM files in ``keys_dir`` (mounted secrets), named
``<selector>._domainkey.<domain>.pem``; they are kept in memory for ``ttl`` seconds, and
forgotten at once when an operator's change is announced (a key activated, a domain added),
so the first mail after a change is signed as the change says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cachetools import TTLCache

from services.signer.dkim_sign import SigningKey
from shared import logging as hlog
from shared.directory import Directory
from shared.dkim import ACTIVE, DkimKey, from_document, from_pem, status
from shared.domains import walk_up
from shared.errors import ConfigError
from shared.secrets import SecretBox

log = hlog.get_logger(__name__)

CACHED_DOMAINS = 10_000  # domains (and tenants' fallback domains) a signer keeps at most


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

    def forget(self) -> None:
        """Drop every cached key and fallback domain: the next message loads them again."""
        self._domains.clear()
        self._fallback.clear()

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
        doc = await self.directory.domain(domain)
        owner = doc["tenant"] if doc else None
        keys: list[DkimKey] = list(self.files.get(domain, []))
        file_selectors = {k.selector for k in keys}
        if doc and self.box is not None:
            keys += [
                from_document(domain, k, self.box)
                for k in doc.get("dkim", [])
                if status(k) == ACTIVE and k["selector"] not in file_selectors
            ]
        # One RSA and one Ed25519 at most; RSA first (the signature most receivers check).
        chosen: dict[str, DkimKey] = {}
        for k in keys:
            chosen.setdefault(k.algorithm, k)
        loaded = tuple(
            SigningKey.load(k)
            for k in sorted(chosen.values(), key=lambda k: k.algorithm != "rsa-sha256")
        )
        self._domains[domain] = (owner, loaded)
        return owner, loaded

    async def _fallback_domain(self, tenant: str) -> str | None:
        if tenant in self._fallback:
            return self._fallback[tenant]
        doc = await self.directory.tenant(tenant)
        fallback = (doc or {}).get("signing_domain")
        self._fallback[tenant] = fallback
        return fallback

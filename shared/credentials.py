"""Secrets tenants authenticate with: SMTP passwords (Argon2id, slow on purpose) and API keys
(long random tokens, stored as SHA-256: their entropy makes a slow hash unnecessary).

An API key reads ``hato_<prefix>_<secret>``; the prefix is stored in the clear to name the key
in lists and logs, the secret never is.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # Argon2id, RFC 9106 second recommended parameters
_API_KEY = re.compile(r"hato_([a-z0-9]{8})_([A-Za-z0-9_-]{32,})")
_DUMMY_HASH = _hasher.hash("no such user")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown user (None) costs the same time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A freshly made key: ``token`` is shown once; ``prefix`` and ``digest`` are stored."""

    token: str
    prefix: str
    digest: str


def new_api_key() -> NewApiKey:
    prefix = secrets.token_hex(4)
    token = f"hato_{prefix}_{secrets.token_urlsafe(32)}"
    return NewApiKey(token, prefix, api_key_digest(token))


def api_key_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_key_prefix(token: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    m = _API_KEY.fullmatch(token)
    return m.group(1) if m else None


def digest_matches(token: str, digest: str) -> bool:
    return hmac.compare_digest(api_key_digest(token), digest)

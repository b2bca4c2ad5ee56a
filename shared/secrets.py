"""Encryption at rest for private keys: Fernet (AES-128-CBC + HMAC-SHA256) under a master key
that comes from the environment or a mounted file, never from the database or a log line."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from shared.errors import ConfigError
from shared.settings import SecretsSettings


class SecretsError(ConfigError):
    """Raised when there is no usable master key, or a ciphertext does not open with it."""


def generate_master_key() -> str:
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts and decrypts small secrets (private keys) with the master key."""

    def __init__(self, master_key: str) -> None:
        try:
            self._fernet = Fernet(master_key.strip().encode())
        except (ValueError, TypeError):
            raise SecretsError("the master key is not a valid Fernet key") from None
        self._master = master_key.strip().encode()
        # Names the key without revealing it, so that "sealed with another master key" can
        # be told from a damaged ciphertext: stored beside every sealed secret.
        self.fingerprint = hmac.new(
            master_key.strip().encode(), b"hato master key fingerprint", hashlib.sha256
        ).hexdigest()[:12]

    def derive(self, purpose: str) -> bytes:
        """A key for ``purpose`` that only holders of the master key can make."""
        return hmac.new(self._master, f"hato key for {purpose}".encode(), hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: SecretsSettings) -> SecretBox:
        key = settings.master_key.get_secret_value()
        if not key and settings.master_key_file:
            try:
                key = Path(settings.master_key_file).read_text()
            except OSError as exc:
                raise SecretsError(f"cannot read the master key file: {exc.strerror}") from None
        if not key:
            raise SecretsError("no master key: set HATO_MASTER_KEY_FILE (or HATO_MASTER_KEY)")
        return cls(key)

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    def seal(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def open(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise SecretsError("a secret does not open with this master key") from None

"""DKIM key material: generation, the DNS record to publish, and the stored form of a key.

Private keys are stored sealed by ``SecretBox``; the public half is kept in
the clear for ``hato dkim show``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from shared.secrets import SecretBox, SecretsError

RSA_BITS = 2048  # RFC 8301 3.2: at least 1024, 2048 recommended
RSA = "rsa-sha256"
ED25519 = "ed25519-sha256"  # RFC 8463
ALGORITHMS = {"rsa-2048": RSA, "ed25519": ED25519}


class KeyState(StrEnum):
    """A key's life: pending (generated, its record not yet seen in DNS), active (signs),
    retired (kept in DNS a while for mail in flight, never signs again)."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


PENDING, ACTIVE, RETIRED = KeyState.PENDING, KeyState.ACTIVE, KeyState.RETIRED


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One usable signing key of a domain."""

    domain: str
    selector: str
    algorithm: str  # "rsa-sha256" or "ed25519-sha256"
    private_pem: bytes
    public_b64: str

    def __repr__(self) -> str:  # never print the private key
        return f"DkimKey({self.domain!r}, {self.selector!r}, {self.algorithm!r})"


def generate_rsa(domain: str, selector: str, bits: int = RSA_BITS) -> DkimKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(
        domain, selector, "rsa-sha256", private_pem, base64.b64encode(public_der).decode()
    )


def generate_ed25519(domain: str, selector: str) -> DkimKey:
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    # RFC 8463 4.2: p= is the base64 of the raw 32-byte public key.
    return DkimKey(domain, selector, ED25519, private_pem, base64.b64encode(raw).decode())


def generate(domain: str, selector: str, algorithm: str = RSA) -> DkimKey:
    return (
        generate_ed25519(domain, selector)
        if algorithm == ED25519
        else generate_rsa(domain, selector)
    )


def from_pem(domain: str, selector: str, private_pem: bytes) -> DkimKey:
    """A key given as a PEM private key (a mounted secret); its algorithm from its type."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return DkimKey(domain, selector, ED25519, private_pem, base64.b64encode(raw).decode())
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return DkimKey(domain, selector, RSA, private_pem, base64.b64encode(der).decode())
    raise ValueError(f"{selector}._domainkey.{domain}: not an RSA or Ed25519 private key")


def status(doc: dict[str, Any]) -> KeyState:
    """A stored key's status (documents from before key rotation only had ``active``)."""
    return KeyState(doc.get("status") or (ACTIVE if doc.get("active") else RETIRED))


def txt_record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def txt_record_value(key: DkimKey | dict[str, Any]) -> str:
    """The TXT value to publish (RFC 6376 3.6.1)."""
    public = key.public_b64 if isinstance(key, DkimKey) else key["public_key"]
    algorithm = key.algorithm if isinstance(key, DkimKey) else key["algorithm"]
    k = "ed25519" if algorithm.startswith("ed25519") else "rsa"
    return f"v=DKIM1; k={k}; p={public}"


def to_document(key: DkimKey, box: SecretBox, *, state: KeyState = ACTIVE) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "selector": key.selector,
        "algorithm": key.algorithm,
        "public_key": key.public_b64,
        "private_key_sealed": box.seal(key.private_pem),
        "sealed_with": box.fingerprint,
        "status": state,
        "created_at": now,
        "activated_at": now if state == ACTIVE else None,
    }


def from_document(domain: str, doc: dict[str, Any], box: SecretBox) -> DkimKey:
    """The usable key of a stored one; raises SecretsError naming why it does not open."""
    try:
        private_pem = box.open(doc["private_key_sealed"])
    except SecretsError:
        raise SecretsError(unopenable(domain, doc, box)) from None
    return DkimKey(
        domain=domain,
        selector=doc["selector"],
        algorithm=doc["algorithm"],
        private_pem=private_pem,
        public_b64=doc["public_key"],
    )


def unopenable(domain: str, doc: dict[str, Any], box: SecretBox) -> str:
    """Why a stored key does not open with ``box``, in words an operator can act on."""
    name = txt_record_name(domain, doc["selector"])
    sealed_with = doc.get("sealed_with")
    if sealed_with and sealed_with != box.fingerprint:
        return (
            f"the DKIM key {name} was sealed with another master key (fingerprint "
            f"{sealed_with}; this process has {box.fingerprint}): the database holds another "
            f"installation's keys, or HATO_MASTER_KEY_FILE names the wrong file"
        )
    return (
        f"the DKIM key {name} does not open with this master key (fingerprint "
        f"{box.fingerprint}): it was sealed with another one, or it is damaged"
    )


def unopenable_keys(domains: list[dict[str, Any]], box: SecretBox) -> list[str]:
    """Why each live (active or pending) stored key of ``domains`` does not open with
    ``box``: one line per key, none when all open."""
    problems = []
    for domain in domains:
        for doc in domain.get("dkim", []):
            if status(doc) == RETIRED:
                continue
            try:
                box.open(doc["private_key_sealed"])
            except SecretsError:
                problems.append(unopenable(domain["_id"], doc, box))
    return problems

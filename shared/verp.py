"""VERP return paths: the envelope sender of each delivery names the message and recipient,
signed, so an asynchronous bounce can be matched to its recipient and a forged one refused.

``b<base32(message id + recipient id)>.<base32(40-bit HMAC-SHA256)>@<label>.<domain>`` —
62 characters of local part (RFC 5321 allows 64); ids are UUIDs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

_MAC_BYTES = 5


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _unb32(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


@dataclass(frozen=True, slots=True)
class Verp:
    key: bytes
    label: str = "bounces"

    def address(self, message_id: str, recipient_id: str | None, domain: str) -> str:
        ids = uuid.UUID(message_id).bytes + (
            uuid.UUID(recipient_id).bytes if recipient_id else b"\0" * 16
        )
        mac = hmac.new(self.key, ids, hashlib.sha256).digest()[:_MAC_BYTES]
        return f"b{_b32(ids)}.{_b32(mac)}@{self.label}.{domain.lower()}"

    def parse(self, address: str) -> tuple[str, str | None] | None:
        """(message id, recipient id or None) of a genuine return path; None otherwise."""
        local, _, _ = address.partition("@")
        body, dot, mac_text = local.lower().partition(".")
        if not dot or not body.startswith("b"):
            return None
        try:
            ids, mac = _unb32(body[1:]), _unb32(mac_text)
        except (ValueError, base64.binascii.Error):
            return None
        expected = hmac.new(self.key, ids, hashlib.sha256).digest()[:_MAC_BYTES]
        if len(ids) != 32 or not hmac.compare_digest(mac, expected):
            return None
        recipient = ids[16:]
        return str(uuid.UUID(bytes=ids[:16])), (
            None if recipient == b"\0" * 16 else str(uuid.UUID(bytes=recipient))
        )


def unverified_message_id(address: str) -> str | None:
    """The message id a VERP return path names, without checking its MAC: for tools that only
    label what they saw (the dev sink's file names), never for matching a bounce."""
    body, dot, _ = address.partition("@")[0].lower().partition(".")
    if not dot or not body.startswith("b"):
        return None
    try:
        ids = _unb32(body[1:])
    except (ValueError, base64.binascii.Error):
        return None
    return str(uuid.UUID(bytes=ids[:16])) if len(ids) == 32 else None

"""VERP return paths: the envelope sender of each delivery names what a bounce to it may act on,
signed and dated, so an asynchronous bounce is matched to its recipient and a forged, altered or
stale one is refused.

``<kind><base32(id · issue day · MAC)>@<label>.<domain>``, all lowercase:

- kind ``r``: the id is a recipient's (per-recipient VERP): a bounce to it acts on that one
  recipient only, whatever other addresses the report names;
- kind ``m``: the id is a message's (``HATO_VERP_MODE=message``): a bounce acts on the
  recipients of that message it names;
- id: the 16 bytes of the UUID; issue day: 2 bytes, days since 1970-01-01 (UTC);
- MAC: the first 8 bytes (64 bits) of HMAC-SHA256 over a version label, the kind, the id and
  the day.

43 characters of local part (RFC 5321 4.5.3.1.1 allows 64). A token is accepted only in its one
canonical spelling (re-encoding what it decodes to must give it back: base32's spare bits in the
last character cannot be flipped) and for ``ttl_days`` after the day it was issued.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

MAC_BYTES = 8  # 64 bits: guessing one takes 2**63 tries on average
_ID_BYTES = 16
_DAY_BYTES = 2
_PAYLOAD_BYTES = _ID_BYTES + _DAY_BYTES + MAC_BYTES
_ENCODED_LENGTH = -(-_PAYLOAD_BYTES * 8 // 5)  # 42 base32 characters
_MAC_LABEL = b"hato-verp-2\0"  # a new layout gets a new label: old tokens never verify
_EPOCH = date(1970, 1, 1)
DEFAULT_TTL_DAYS = 14  # retries last up to 3 days; bounces can arrive days after that

# What a token looks like, to find one in the headers of a returned original.
TOKEN_PATTERN = re.compile(rf"\b[rm][a-z2-7]{{{_ENCODED_LENGTH}}}@[A-Za-z0-9.-]+")


class TokenKind(StrEnum):
    RECIPIENT = "r"
    MESSAGE = "m"


class VerpMode(StrEnum):
    """Which return path the dispatcher gives a message (``HATO_VERP_MODE``)."""

    RECIPIENT = "recipient"  # one per recipient, so one transaction per recipient
    MESSAGE = "message"  # one per message
    OFF = "off"  # the envelope sender as submitted


@dataclass(frozen=True, slots=True)
class Token:
    """What a genuine return path names: a recipient or a message, and the day it was issued."""

    kind: TokenKind
    id: str
    issued: date


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _day_number(day: date) -> int:
    return (day - _EPOCH).days


def _today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True, slots=True)
class Verp:
    key: bytes
    label: str = "bounces"
    ttl_days: int = DEFAULT_TTL_DAYS

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("a VERP key must not be empty")
        if self.ttl_days < 1:
            raise ValueError(f"ttl_days must be at least 1, not {self.ttl_days}")

    def _mac(self, kind: TokenKind, raw_id: bytes, day: bytes) -> bytes:
        signed = _MAC_LABEL + kind.value.encode() + raw_id + day
        return hmac.new(self.key, signed, hashlib.sha256).digest()[:MAC_BYTES]

    def _address(self, kind: TokenKind, id_: str, domain: str, today: date | None) -> str:
        raw_id = uuid.UUID(id_).bytes
        day = _day_number(today or _today()).to_bytes(_DAY_BYTES, "big")
        payload = raw_id + day + self._mac(kind, raw_id, day)
        return f"{kind.value}{_b32(payload)}@{self.label}.{domain.lower()}"

    def for_recipient(self, recipient_id: str, domain: str, *, today: date | None = None) -> str:
        """The return path of one recipient's delivery: a bounce to it acts on that recipient."""
        return self._address(TokenKind.RECIPIENT, recipient_id, domain, today)

    def for_message(self, message_id: str, domain: str, *, today: date | None = None) -> str:
        """The return path shared by all recipients of a message (``HATO_VERP_MODE=message``)."""
        return self._address(TokenKind.MESSAGE, message_id, domain, today)

    def parse(self, address: str, *, today: date | None = None) -> Token | None:
        """What a genuine, canonical, unexpired return path names; None for anything else."""
        decoded = _decode(address)
        if decoded is None:
            return None
        kind, raw_id, day, mac = decoded
        if not hmac.compare_digest(mac, self._mac(kind, raw_id, day)):
            return None
        age = _day_number(today or _today()) - int.from_bytes(day, "big")
        if not -1 <= age <= self.ttl_days:  # -1: a dispatcher's clock a little ahead
            return None
        issued = date.fromordinal(_EPOCH.toordinal() + int.from_bytes(day, "big"))
        return Token(kind, str(uuid.UUID(bytes=raw_id)), issued)


def _decode(address: str) -> tuple[TokenKind, bytes, bytes, bytes] | None:
    """(kind, id, day, MAC) of a token in its one canonical spelling; None otherwise."""
    local = address.partition("@")[0]
    if len(local) != 1 + _ENCODED_LENGTH or not local.isascii():
        return None
    try:
        kind = TokenKind(local[0])
        payload = base64.b32decode(local[1:].upper() + "=" * (-_ENCODED_LENGTH % 8))
    except (ValueError, binascii.Error):
        return None
    # Lowercase only, and no second spelling through the unused bits of the last character.
    if len(payload) != _PAYLOAD_BYTES or _b32(payload) != local[1:]:
        return None
    raw_id = payload[:_ID_BYTES]
    day = payload[_ID_BYTES : _ID_BYTES + _DAY_BYTES]
    return kind, raw_id, day, payload[_ID_BYTES + _DAY_BYTES :]


def unverified_message_id(address: str) -> str | None:
    """The message id a per-message return path names, without checking its MAC or age: for
    tools that only label what they saw (the dev sink's file names), never to match a bounce.
    A per-recipient return path names no message: None."""
    decoded = _decode(address)
    if decoded is None or decoded[0] is not TokenKind.MESSAGE:
        return None
    return str(uuid.UUID(bytes=decoded[1]))

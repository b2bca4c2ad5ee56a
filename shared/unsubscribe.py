"""One-click unsubscribe (RFC 8058, RFC 2369): the signed tokens of a recipient's
``List-Unsubscribe`` links, the two header fields, and what an unsubscribe does.

Where the per-recipient header is made, and why there. A token names one recipient, so each
recipient's copy of a message carries its own ``List-Unsubscribe`` field, and that field must
be covered by the DKIM signature (receivers ignore an unsigned one, and an unsigned one could be
changed on the way). The dispatcher never signs, so the field cannot be added at delivery like
a VERP return path; the signer, which holds the keys, adds it: for a message with unsubscribe
on, it hashes the body once, then signs each recipient's header block (one RSA signature per
recipient, about a millisecond) and fans out one delivery job per recipient with its own copy.
Messages without unsubscribe are signed once for all, as before. Bulk mail is written one
message per recipient nearly always, so the cost is the one signature it had anyway.

Two tokens, both HMAC-SHA256 with ``HATO_UNSUBSCRIBE_KEY`` and checked in constant time:

- the link ``<public url>/u/<token>`` is self-contained: base64url of a version byte, the issue
  day, a 96-bit MAC, and ``tenant NUL list NUL address``. It is checked without the database
  and keeps working after the message has been deleted (retention), as long as the mail sits in
  an inbox; changing any byte (another tenant, list or address) breaks the MAC;
- the mailto address ``u<token>@<label>.<sender domain>`` reaches the bounce listener; an
  address's local part is at most 64 octets (RFC 5321 4.5.3.1.1), too short for the link's
  token, so it names the recipient (16 bytes), the day and a 64-bit MAC, base32 — 43
  characters, like a VERP return path — and the tenant, list and address are read from the
  recipient's record: it works while the message is kept (``HATO_BOUNCE_RETENTION_DAYS``).

An unsubscribe puts the address on the tenant's suppression list scoped to the list
(``list:<name>``): mail to that list stops, other mail of the tenant still goes. A message may
instead be sent with unsubscribe from its tag (``tag:<tag>``, the HTTP field ``true``): leaving
it stops every later message carrying that tag. It is idempotent:
a second POST of the same link finds the suppression there and emits nothing.
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
from typing import TYPE_CHECKING, Any

from shared import metrics
from shared.schemas import Event, EventType

if TYPE_CHECKING:
    from shared.suppressions import Suppressions
    from shared.timeline import Timeline

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058 3.1: the POST body, and the header's value
LIST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CONTROL_HEADER = "X-Hato-Unsubscribe"  # the SMTP and raw doors' way to ask; removed at ingest
OFF = "off"  # the control header's value that turns a tenant's default off for one message

_VERSION = 1
_LINK_LABEL = b"hato-unsubscribe-link-1\0"
_MAILTO_LABEL = b"hato-unsubscribe-mailto-1\0"
_LINK_MAC = 12  # 96 bits
_MAILTO_MAC = 8  # 64 bits, as VERP's: what 64 octets of local part leave room for
_DAY = 2
_ID = 16
_EPOCH = date(1970, 1, 1)
_MAILTO_LENGTH = -(-(_ID + _DAY + _MAILTO_MAC) * 8 // 5)  # 42 base32 characters
MAILTO_PREFIX = "u"


class BadListName(ValueError):
    """Raised when a list name is not 1-64 letters, digits, dots, dashes and underscores."""


def list_name(value: str) -> str:
    """``value`` as a list name; BadListName when it is not one."""
    if not LIST_NAME.match(value):
        raise BadListName(
            f"unsubscribe list {value[:80]!r}: 1-64 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit"
        )
    return value


TAG = "tag:"  # a "list" that is a tag: ``tag:<tag>`` (list names never hold a colon)
MAX_TAG = 200


def list_or_tag(value: str) -> str:
    """``value`` as what an unsubscribe leaves: a list name, or ``tag:<tag>`` (a message tag:
    1-200 characters, no control character); BadListName otherwise."""
    if value.startswith(TAG):
        tag = value[len(TAG) :]
        if not tag or len(tag) > MAX_TAG or any(ord(c) < 32 or ord(c) == 127 for c in tag):
            raise BadListName(f"unsubscribe tag {tag[:80]!r}: 1-{MAX_TAG} characters, no controls")
        return value
    return list_name(value)


def scope_of(list_: str) -> str:
    """The suppression scope of an unsubscribe from ``list_``: ``list:<name>``, or
    ``tag:<tag>`` for a tag."""
    return list_ if list_.startswith(TAG) else f"list:{list_}"


def shown(list_: str) -> str:
    """What a reader is told they leave: the list's name, or the tag."""
    return list_.removeprefix(TAG)


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a genuine link names: who unsubscribes from which tenant's list, since when."""

    tenant: str
    list: str
    address: str
    issued: date


def _today() -> date:
    return datetime.now(UTC).date()


def _day(day: date) -> bytes:
    return (day - _EPOCH).days.to_bytes(_DAY, "big")


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Makes and checks the tokens; ``public_url`` is where ingest's HTTP door is reached
    (empty: no link, so no one-click, only the mailto); ``label`` the bounce subdomain."""

    key: bytes
    public_url: str = ""
    label: str = "bounces"

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("an unsubscribe key must not be empty")

    # -- the link ------------------------------------------------------------------------------

    def _link_mac(self, day: bytes, body: bytes) -> bytes:
        return hmac.new(self.key, _LINK_LABEL + day + body, hashlib.sha256).digest()[:_LINK_MAC]

    def link_token(
        self, tenant: str, list_: str, address: str, *, today: date | None = None
    ) -> str:
        """The token of ``address``'s link to leave ``tenant``'s list ``list_``."""
        body = "\0".join((tenant, list_or_tag(list_), address.lower())).encode()
        day = _day(today or _today())
        payload = bytes([_VERSION]) + day + self._link_mac(day, body) + body
        return base64.urlsafe_b64encode(payload).decode().rstrip("=")

    def parse_link(self, token: str) -> Ticket | None:
        """What a genuine link token names; None for anything else (forged, altered, not one
        canonical spelling)."""
        if not token.isascii() or len(token) > 600:
            return None
        try:
            payload = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            return None
        if base64.urlsafe_b64encode(payload).decode().rstrip("=") != token:
            return None  # one spelling only: base64's spare bits cannot be flipped
        head = 1 + _DAY + _LINK_MAC
        if len(payload) <= head or payload[0] != _VERSION:
            return None
        day, mac, body = payload[1 : 1 + _DAY], payload[1 + _DAY : head], payload[head:]
        if not hmac.compare_digest(mac, self._link_mac(day, body)):
            return None
        try:
            tenant, list_, address = body.decode().split("\0")
        except ValueError:  # not UTF-8, or not three parts: made by no key of ours
            return None
        issued = date.fromordinal(_EPOCH.toordinal() + int.from_bytes(day, "big"))
        return Ticket(tenant, list_, address, issued)

    def link(self, tenant: str, list_: str, address: str, *, today: date | None = None) -> str:
        """The one-click link of ``address`` to leave ``tenant``'s list ``list_``."""
        token = self.link_token(tenant, list_, address, today=today)
        return f"{self.public_url.rstrip('/')}/u/{token}"

    # -- the mailto ----------------------------------------------------------------------------

    def _mailto_mac(self, raw_id: bytes, day: bytes) -> bytes:
        signed = _MAILTO_LABEL + raw_id + day
        return hmac.new(self.key, signed, hashlib.sha256).digest()[:_MAILTO_MAC]

    def mailto_address(self, recipient_id: str, domain: str, *, today: date | None = None) -> str:
        """The address a mail unsubscribes ``recipient_id`` at (on the bounce listener)."""
        raw_id = uuid.UUID(recipient_id).bytes
        day = _day(today or _today())
        local = MAILTO_PREFIX + _b32(raw_id + day + self._mailto_mac(raw_id, day))
        return f"{local}@{self.label}.{domain.lower()}"

    def parse_mailto(self, address: str) -> str | None:
        """The recipient id a genuine mailto address names; None for anything else."""
        local = address.partition("@")[0]
        if len(local) != 1 + _MAILTO_LENGTH or not local.isascii() or local[0] != MAILTO_PREFIX:
            return None
        try:
            payload = base64.b32decode(local[1:].upper() + "=" * (-_MAILTO_LENGTH % 8))
        except (ValueError, binascii.Error):
            return None
        if _b32(payload) != local[1:]:
            return None
        raw_id, day, mac = payload[:_ID], payload[_ID : _ID + _DAY], payload[_ID + _DAY :]
        if not hmac.compare_digest(mac, self._mailto_mac(raw_id, day)):
            return None
        return str(uuid.UUID(bytes=raw_id))

    # -- the header fields ----------------------------------------------------------------------

    def header_fields(
        self, *, tenant: str, list_: str, address: str, recipient_id: str, domain: str
    ) -> bytes:
        """``List-Unsubscribe`` (the link, then the mailto; RFC 2369 3.2: the client takes the
        first it can use) and, with a link, ``List-Unsubscribe-Post`` (RFC 8058), as header
        lines in CRLF, each URI on a line of its own."""
        uris = []
        if self.public_url:
            uris.append(self.link(tenant, list_, address))
        uris.append(f"mailto:{self.mailto_address(recipient_id, domain)}?subject=unsubscribe")
        out = b"List-Unsubscribe: " + b",\r\n ".join(f"<{u}>".encode() for u in uris) + b"\r\n"
        if self.public_url:
            out += f"List-Unsubscribe-Post: {ONE_CLICK}\r\n".encode()
        return out


_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)


def without_fields(message: bytes, names: frozenset[bytes]) -> bytes:
    """``message`` (CRLF) without the header fields named in ``names`` (lowercase), their
    folded continuation lines included; the body is not touched."""
    split = message.find(b"\r\n\r\n")
    head, rest = (message, b"") if split < 0 else (message[: split + 2], message[split + 2 :])
    lines = head.split(b"\r\n")
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        match = _FIELD_START.match(line)
        dropping = bool(match and match.group(1).lower() in names)
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + rest


def field_value(message: bytes, name: bytes) -> str | None:
    """The unfolded value of the first header field named ``name`` (lowercase), if any."""
    split = message.find(b"\r\n\r\n")
    head = message if split < 0 else message[: split + 2]
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        match = _FIELD_START.match(line)
        if match and match.group(1).lower() == name:
            value = line[match.end() :]
            for more in lines[i + 1 :]:
                if more[:1] not in (b" ", b"\t"):
                    break
                value += more
            return value.decode("utf-8", "replace").strip()
    return None


async def unsubscribe(
    suppressions: Suppressions,
    timeline: Timeline,
    ticket: Ticket,
    *,
    source: str,
    message: dict[str, Any] | None = None,
    recipient_id: str | None = None,
) -> bool:
    """Put the ticket's address on its tenant's suppression list for its list, and emit the
    ``unsubscribed`` event the first time (of ``message``, the stored message the
    unsubscribe came from, when known); True when this call made the suppression. A repeat
    emits nothing; one whose first run was cut before its event was written (the store or the
    broker failed) writes and publishes it now, under the same id."""
    doc, created = await suppressions.unsubscribe(
        ticket.tenant, ticket.address, scope=scope_of(ticket.list), source=source
    )
    if created:
        metrics.UNSUBSCRIBES.labels(ticket.tenant, source).inc()
    if doc.get("announced"):
        return created
    detail: dict[str, Any] = {"list": ticket.list, "scope": scope_of(ticket.list), "source": source}
    # The message's tags and metadata, as every event of it has them (event consumers and
    # the providers' webhook formats match an unsubscribe to their campaign by them).
    event = Event.of(
        EventType.UNSUBSCRIBED,
        tenant=ticket.tenant,
        message_id=message["_id"] if message else None,
        recipient_id=recipient_id,
        address=ticket.address,
        step=("unsubscribe", str(doc["_id"])),  # one event per suppression, however often asked
        detail=detail,
        tags=(message or {}).get("tags") or (),
        metadata=(message or {}).get("metadata") or {},
    )
    await timeline.record([event])
    await suppressions.announced(doc["_id"])
    return created

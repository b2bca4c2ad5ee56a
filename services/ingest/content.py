"""What a message must be before Hato signs it for a tenant, whichever door it came through.

The lines drawn here stop a message from meaning one thing to the check that admits it and
another to the parsers downstream (the signer's, the recipient's):

- no NUL anywhere, and in the header block no CR that does not end a line: the SMTP door
  reads lines at LF, but Python's email package and many receivers take a bare CR for a line
  break too, so ``Subject: a<CR>Bcc: v@victim.example`` would become a real ``Bcc`` line. A
  bare LF ends a line for every reader alike (many clients write LF only; it is made CRLF on
  acceptance), so it is taken;
- no line over the door's limit (``max_line``, 2,048 octets by default as in Postfix;
  ``HATO_INGEST_MAX_LINE_LENGTH``); lines over RFC 5322's 998 octets up to it are taken and
  repaired before the message is stored (``services/ingest/lines.py``);
- at most ``MAX_HOPS`` Received fields: more is a mail loop (RFC 5321 6.3), refused with
  ``554 5.4.6`` rather than relayed once more;
- at most one ``X-Hato-Unsubscribe`` field (the SMTP and raw doors' way to ask for one-click
  unsubscribe), holding a list name or ``off``;
- exactly one From field holding exactly one mailbox (RFC 5322 3.6.2 allows a list only with a
  Sender field; a relay that signs for the first of several addresses signs for all of them),
  read alike by a strict RFC 5322 parser and by the lenient one the rest of Hato uses.

A message that fails is refused whole (SMTP ``554 5.6.0``, HTTP 400); ``accepted`` returns
what passes as it will be stored: long lines repaired (``lines.repair``), then at most 998
octets each.
"""

from __future__ import annotations

import email.utils
import functools
import re
from email.headerregistry import HeaderRegistry

from services.ingest import lines
from shared import unsubscribe
from shared.message import normalize_line_endings

MAX_LINE = 998  # octets, without the CRLF (RFC 5322 2.1.1)
DEFAULT_MAX_LINE = 2048  # octets a door takes in a line (Postfix's line_length_limit)
MAX_HOPS = 50  # Received fields a message may carry when it comes in (as Postfix counts)

# Characters that end a line for str.splitlines() (and so for the email package), and the
# other C0 and C1 controls: never inside a one-line value the API composes into a header.
LINE_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)
_REGISTRY = HeaderRegistry()
_UNSUBSCRIBE = unsubscribe.CONTROL_HEADER.lower().encode()


class ContentError(ValueError):
    """A message Hato will not sign; the text says why, for the sender."""


class TooManyHops(ContentError):
    """A message that has passed through too many servers: a mail loop."""


def header_block(raw: bytes) -> bytes:
    """The header block of ``raw`` with the line break that ends it (all of ``raw`` if it has
    no body)."""
    match = _HEADER_END.search(raw)
    return raw[: match.end()] if match else raw


def with_crlf(raw: bytes) -> bytes:
    """A message written with LF line ends (a Unix file) in CRLF; any other left as it is, so
    that a mix of the two is still seen by ``check``."""
    return raw.replace(b"\n", b"\r\n") if b"\r" not in raw else raw


class LineTooLong(ContentError):
    """A line over the door's limit."""


def too_long(raw: bytes, max_line: int) -> int:
    """The length of a line of ``raw`` over ``max_line`` octets (CR and LF not counted), or
    0."""
    return lines.line_over(raw, max_line)


def check(raw: bytes, *, max_line: int = DEFAULT_MAX_LINE) -> str:
    """Check ``raw`` and return its From address; ContentError if refused."""
    if b"\0" in raw:
        raise ContentError("the message contains a NUL byte")
    longest = too_long(raw, max_line)
    if longest:
        raise LineTooLong(f"a line is {longest} octets; the limit is {max_line}")
    head = header_block(raw)
    if _BARE_CR.search(head):
        raise ContentError("a header contains a CR that does not end a line")
    head = head.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # as it is stored
    fields = [(m.group(1).lower(), m) for m in _FIELD.finditer(head)]  # one pass for all
    hops = sum(1 for name, _ in fields if name == b"received")
    if hops > MAX_HOPS:
        raise TooManyHops(f"{hops} Received fields: a mail loop (the limit is {MAX_HOPS})")
    asks = [m for name, m in fields if name == _UNSUBSCRIBE]
    if len(asks) > 1:
        raise ContentError(f"the message has {len(asks)} {unsubscribe.CONTROL_HEADER} fields")
    if asks:
        value = _field_value(head, asks[0].end(), what=unsubscribe.CONTROL_HEADER)
        if value.lower() != unsubscribe.OFF:
            try:
                unsubscribe.list_name(value)
            except unsubscribe.BadListName as exc:
                raise ContentError(f"{unsubscribe.CONTROL_HEADER}: {exc} (or 'off')") from None
    froms = [m for name, m in fields if name == b"from"]
    if len(froms) != 1:
        raise ContentError(f"the message has {len(froms)} From fields; exactly one is required")
    return one_mailbox(_field_value(head, froms[0].end()), what="From")


class MissingFields(ContentError):
    """A message without Message-ID or Date, from a tenant that refuses such mail."""


def complete_header(raw: bytes, domain: str, *, refuse: bool = False) -> bytes:
    """``raw`` with a Date and a Message-ID added when it has none (at the top of the header),
    on every door: some receivers refuse mail without them (SoftBank without Message-ID).
    With ``refuse``, MissingFields names what is missing instead."""
    end = raw.find(b"\r\n\r\n")
    head = (raw if end < 0 else raw[: end + 2]).lower()
    missing = [
        name
        for name, field in (("Message-ID", b"message-id:"), ("Date", b"date:"))
        if not head.startswith(field) and b"\r\n" + field not in head
    ]
    if not missing:
        return raw
    if refuse:
        raise MissingFields(
            f"the message has no {' and no '.join(missing)} field; this sender's mail must "
            "carry Message-ID and Date (RFC 5322 3.6)"
        )
    added = b""
    if "Date" in missing:
        added += b"Date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
    if "Message-ID" in missing:
        added += b"Message-ID: " + email.utils.make_msgid(domain=domain).encode() + b"\r\n"
    return added + raw


def accepted(raw: bytes, *, max_line: int = DEFAULT_MAX_LINE) -> bytes:
    """``raw`` checked and with its long lines repaired, as it will be stored and signed;
    ContentError if refused."""
    check(raw, max_line=max_line)
    if not lines.has_long_lines(raw):
        return raw
    try:
        return lines.repair(normalize_line_endings(raw))
    except lines.UnfoldableHeader as exc:
        raise ContentError(str(exc)) from None


def one_mailbox(value: str, *, what: str = "the address") -> str:
    """The address of ``value``, which must be exactly one mailbox (``addr@domain`` or
    ``Name <addr@domain>``) read alike by the strict and the lenient parser."""
    return _one_mailbox(value, what)


@functools.lru_cache(maxsize=4096)
def _one_mailbox(value: str, what: str) -> str:
    # Remembered: a sender writes the same few From fields again and again (a shop's order
    # mails), and the strict parser is the dearest step of the check. Refusals are not kept.
    if LINE_BREAKING.search(value):
        raise ContentError(f"{what} contains a line break or control character")
    try:
        header = _REGISTRY("From", value)
        strict = [a.addr_spec for a in header.addresses]
        lenient = [a for _, a in email.utils.getaddresses([value])]
    except Exception:  # the standard library's parser fails on some junk (AttributeError ...)
        raise ContentError(f"{what} cannot be read as a mailbox: {value[:200]!r}") from None
    if len(strict) != 1 or len(lenient) != 1 or header.defects:
        raise ContentError(f"{what} must hold exactly one mailbox: {value[:200]!r}")
    address = strict[0]
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or address.lower() != lenient[0].lower():
        raise ContentError(f"{what} must hold exactly one mailbox: {value[:200]!r}")
    return address


def _field_value(head: bytes, start: int, *, what: str = "From") -> str:
    """The unfolded value of the field whose name ends at ``start``."""
    end = start
    while True:
        nl = head.find(b"\r\n", end)
        if nl == -1:
            end = len(head)
            break
        end = nl + 2
        if head[end : end + 1] not in (b" ", b"\t"):
            end = nl
            break
    value = head[start:end].replace(b"\r\n", b"")
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ContentError(f"the {what} field is neither ASCII nor UTF-8") from None

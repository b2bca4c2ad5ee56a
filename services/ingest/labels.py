"""Tags and metadata: the rules for what a sender may attach to a message, and reading them
from the header fields that hosted relays' SMTP clients write.

A message moved from SendGrid, Postmark or Mailgun to Hato keeps its labels: the fields below
set the message's tags and metadata exactly as ``tags`` and ``metadata`` of the JSON API do,
and are removed from the message before it is stored and signed (they are instructions to
the relay, not part of the mail):

- ``X-SMTPAPI`` (SendGrid): a JSON object; ``category`` (a string or a list) gives tags,
  ``unique_args`` metadata, ``send_at`` (Unix time) a time to send at;
- ``X-PM-Tag`` (Postmark) a tag, ``X-PM-Metadata-<key>`` one metadata value each;
- ``X-Mailgun-Tag`` (Mailgun, may be repeated) a tag each, ``X-Mailgun-Variables`` a JSON
  object of metadata;
- ``X-Hato-Tags`` (Hato's own) tags separated by commas, ``X-Hato-Metadata`` a JSON object.

A field that cannot be read is an error with a precise text (the SMTP door answers
``550 5.6.0``, the HTTP door 400): a label silently dropped would leave a sender's event
consumers without what they filter on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header

from services.ingest.content import LINE_BREAKING, ContentError

MAX_TAGS = 10
MAX_METADATA = 20
MAX_LABEL = 255  # characters of a tag or a metadata value
METADATA_KEY = re.compile(r"[\w-]{1,64}")  # letters, digits, _ and -: a key the store takes

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)
_SINGLE = {b"x-smtpapi", b"x-pm-tag", b"x-mailgun-variables", b"x-hato-tags", b"x-hato-metadata"}
_PM_METADATA = b"x-pm-metadata-"


class LabelError(ContentError):
    """Tags or metadata that cannot be taken: too many, too long, a bad key, bad JSON."""


@dataclass(frozen=True, slots=True)
class Labels:
    """What a message's header fields asked for besides the mail itself."""

    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    send_at: datetime | None = None


def check_tag(tag: str) -> str:
    if not tag or len(tag) > MAX_LABEL or LINE_BREAKING.search(tag):
        raise LabelError(f"a tag is 1-{MAX_LABEL} characters on one line: {tag[:70]!r}")
    return tag


def check_metadata(values: dict[str, str]) -> dict[str, str]:
    if len(values) > MAX_METADATA:
        raise LabelError(f"{len(values)} metadata values; at most {MAX_METADATA}")
    for key, value in values.items():
        if not METADATA_KEY.fullmatch(key):
            raise LabelError(f"metadata keys are 1-64 letters, digits, _ or -: {key[:70]!r}")
        if len(value) > MAX_LABEL or LINE_BREAKING.search(value):
            raise LabelError(f"metadata {key}: at most {MAX_LABEL} characters on one line")
    return values


def merged(tags: list[str] | tuple[str, ...], *more: tuple[str, ...]) -> tuple[str, ...]:
    """Tags without duplicates, in order, at most ``MAX_TAGS``."""
    out = tuple(dict.fromkeys(check_tag(t) for t in (*tags, *(t for m in more for t in m))))
    if len(out) > MAX_TAGS:
        raise LabelError(f"{len(out)} tags; at most {MAX_TAGS}")
    return out


def as_text(value: object) -> str:
    """A metadata value as text: strings as they are, anything else as its JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _json_object(name: str, value: str) -> dict[str, object]:
    try:
        parsed = json.loads(value)
    except ValueError:
        raise LabelError(f"{name} is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise LabelError(f"{name} must be a JSON object")
    return parsed


def _text(value: bytes) -> str:
    unfolded = re.sub(rb"\r?\n(?=[ \t])", b"", value).strip().decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(unfolded)))  # RFC 2047 encoded words
    except (ValueError, LookupError):
        return unfolded


def _fields(head: bytes) -> list[tuple[bytes, bytes, int, int]]:
    """(name, value, start, end) of every field of a header block."""
    starts = [(m.group(1), m.end(), m.start()) for m in _FIELD_START.finditer(head)]
    out = []
    for i, (name, value_at, start) in enumerate(starts):
        end = starts[i + 1][2] if i + 1 < len(starts) else len(head)
        out.append((name, head[value_at:end], start, end))
    return out


def _is_label(name: bytes) -> bool:
    lower = name.lower()
    return lower in _SINGLE or lower == b"x-mailgun-tag" or lower.startswith(_PM_METADATA)


def extract(raw: bytes) -> tuple[bytes, Labels]:
    """``raw`` without the label fields, and the labels they gave. Raises LabelError."""
    end = _HEADER_END.search(raw)
    # The fields with the line break ending the last one; the blank line and body are kept.
    fields_end = end.start() + raw[end.start() : end.end()].index(b"\n") + 1 if end else len(raw)
    head = raw[:fields_end]
    fields = _fields(head)
    found = [f for f in fields if _is_label(f[0])]
    if not found:
        return raw, Labels()
    tags: list[str] = []
    metadata: dict[str, str] = {}
    send_at: datetime | None = None
    seen: set[bytes] = set()
    for name, value, _, _ in found:
        lower = name.lower()
        label = name.decode("ascii")
        if lower in _SINGLE and lower in seen:
            raise LabelError(f"{label} is given twice")
        seen.add(lower)
        text = _text(value)
        if lower == b"x-smtpapi":
            api = _json_object(label, text)
            category = api.get("category", [])
            categories = [category] if isinstance(category, str) else category
            if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
                raise LabelError("X-SMTPAPI category must be a string or a list of strings")
            tags += categories
            args = api.get("unique_args", {})
            if not isinstance(args, dict):
                raise LabelError("X-SMTPAPI unique_args must be a JSON object")
            metadata |= {str(k): as_text(v) for k, v in args.items()}
            if "send_at" in api:
                send_at = unix_time("X-SMTPAPI send_at", api["send_at"])
        elif lower in (b"x-pm-tag", b"x-mailgun-tag"):
            tags.append(text)
        elif lower.startswith(_PM_METADATA):
            metadata[label[len(_PM_METADATA) :]] = text
        elif lower == b"x-hato-tags":
            tags += [t.strip() for t in text.split(",") if t.strip()]
        else:  # X-Mailgun-Variables, X-Hato-Metadata
            metadata |= {str(k): as_text(v) for k, v in _json_object(label, text).items()}
    kept = b"".join(head[s:e] for n, _, s, e in fields if not _is_label(n))
    # What precedes the first field (nothing in a well-formed message) stays as it was.
    prefix = head[: fields[0][2]]
    labels = Labels(merged(tags), check_metadata(metadata), send_at)
    return prefix + kept + raw[fields_end:], labels


def unix_time(name: str, value: object) -> datetime:
    """A Unix time (seconds) as a UTC datetime, within the years the store holds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabelError(f"{name} must be a Unix time in seconds")
    if not 0 <= value < 253_370_764_800:  # before the year 9999
        raise LabelError(f"{name} is out of range")
    return datetime.fromtimestamp(value, UTC)

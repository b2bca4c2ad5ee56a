"""Long lines made fit for SMTP before a message is stored and signed.

Office devices and old CRMs write lines longer than RFC 5322's 998 octets, and Postfix takes
them; docomo answers ``500 Line Too Long`` to any over 1,000 octets with the CRLF. Ingest
takes lines up to its limit (``HATO_INGEST_MAX_LINE_LENGTH``) and repairs them here, once,
before the message is stored: so the signer signs the repaired bytes, every later hop sends
them as they are, and the stored size is what goes out. What a reader sees does not change:

- a header line over 998 octets is folded at its last space or tab before the limit (RFC
  5322 2.2.3: unfolding gives the same value); one with no place to fold is refused;
- a body part (each leaf of a multipart, recursively) with a line over 998 octets is
  re-encoded: 7bit, 8bit or binary text and malformed quoted-printable become
  quoted-printable (``binascii.b2a_qp``, whose soft line breaks decoding removes), base64 is
  re-wrapped at 76 characters; the MIME preamble and epilogue, which no reader shows, are cut.

The standard library's email package could parse and write the message again, but it also
changes what needs no change (header folding, boundaries, 8-bit headers); this touches only
the lines and parts that are too long and leaves every other byte as it was.
"""

from __future__ import annotations

import binascii
import email.parser
import email.policy
import re

from shared.message import normalize_line_endings

MAX_LINE = 998  # octets, without the CRLF (RFC 5322 2.1.1)
BASE64_LINE = 76  # RFC 2045 6.8

_PARSER = email.parser.BytesHeaderParser(policy=email.policy.compat32)
_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*\r\n(?:[ \t].*\r\n)*")


class UnfoldableHeader(ValueError):
    """A header line over 998 octets with no space or tab to fold it at."""


_CHUNK = 1 << 20  # a big message is measured a mebibyte at a time (no list of all its lines)


def _line_end(raw: bytes, start: int) -> int:
    ends = [i for i in (raw.find(b"\n", start), raw.find(b"\r", start)) if i >= 0]
    return min(ends) if ends else len(raw)


def line_over(raw: bytes, limit: int) -> int:
    """The length of the longest line of ``raw`` over ``limit`` octets (CR, LF and CRLF end
    a line, as ``normalize_line_endings`` reads them), or 0 when none is; a big message is
    measured up to its first line over the limit.

    ``bytes.splitlines`` runs in C: a regular expression that finds a long line tries every
    start position of every short line too, quadratic in the line length (milliseconds for a
    20 KB message, seconds for a megabyte of 990-octet lines)."""
    if len(raw) <= limit:
        return 0
    if len(raw) <= _CHUNK:
        longest = max(map(len, raw.splitlines()), default=0)
        return longest if longest > limit else 0
    start = 0  # where the line now measured begins
    for offset in range(0, len(raw), _CHUNK):
        piece = raw[start : offset + _CHUNK]
        lines = piece.splitlines()
        if lines and piece[-1:] not in (b"\n", b"\r") and offset + _CHUNK < len(raw):
            last = lines.pop()  # goes on in the next piece
            start = offset + _CHUNK - len(last)
        else:
            start = offset + _CHUNK
        longest = max(map(len, lines), default=0)
        if longest > limit:
            return longest
        if (offset + _CHUNK) - start > limit:  # the unfinished line is long already
            return _line_end(raw, start) - start
    return 0


def has_long_lines(raw: bytes) -> bool:
    """Some line of ``raw`` is over 998 octets."""
    return line_over(raw, MAX_LINE) > 0


def repair(raw: bytes) -> bytes:
    """``raw`` (CRLF line ends) with no line over 998 octets and the same content for its
    reader; ``raw`` itself when it has none. UnfoldableHeader when a header cannot be folded."""
    if not has_long_lines(raw):
        return raw
    return _entity(raw, top=True)


def fold(head: bytes) -> bytes:
    """A header block with every line over 998 octets folded at its last blank before the
    limit."""
    out: list[bytes] = []
    for line in head.split(b"\r\n"):
        while len(line) > MAX_LINE:
            at = max(line.rfind(b" ", 1, MAX_LINE + 1), line.rfind(b"\t", 1, MAX_LINE + 1))
            colon = line.find(b":")
            if at <= colon + 1 or at <= 0:
                name = line[: max(colon, 0)][:76].decode("ascii", "replace")
                raise UnfoldableHeader(
                    f"the header line {name or '?'} is {len(line)} octets with no space to "
                    f"fold it at within {MAX_LINE}"
                )
            out.append(line[:at])
            line = line[at:]  # the blank stays: CRLF + WSP is the fold
        out.append(line)
    return b"\r\n".join(out)


def _split(raw: bytes) -> tuple[bytes, bytes | None]:
    """(header block with its last CRLF, body); body None when there is no blank line."""
    if raw.startswith(b"\r\n"):
        return b"", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, None
    return raw[: end + 2], raw[end + 4 :]


def _entity(raw: bytes, *, top: bool) -> bytes:
    head, body = _split(raw)
    head = fold(head)
    if body is None:
        return head
    fields = _PARSER.parsebytes(head)
    ctype = fields.get_content_type()
    boundary = fields.get_boundary() if ctype.startswith("multipart/") else None
    if boundary:
        body = _multipart(body, boundary.encode("ascii", "replace"))
    elif ctype == "message/rfc822":
        body = _entity(body, top=False) if has_long_lines(body) else body
    elif has_long_lines(body):
        head, body = _reencoded(head, fields, body, top=top)
    return head + b"\r\n" + body


def _multipart(body: bytes, boundary: bytes) -> bytes:
    delimiter = re.compile(
        rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?:\r\n|$)", re.MULTILINE
    )
    found = [m for m in delimiter.finditer(body) if m.start() == 0 or body[m.start()] == 13]
    if not found:
        return _cut(body)
    out = [_cut(body[: found[0].start()])]
    for i, match in enumerate(found):
        out.append(match.group())
        if match.group(1):  # the close delimiter: the epilogue follows
            out.append(_cut(body[match.end() :]))
            break
        end = found[i + 1].start() if i + 1 < len(found) else len(body)
        part = body[match.end() : end]
        out.append(_entity(part, top=False) if has_long_lines(part) else part)
    return b"".join(out)


def _cut(text: bytes) -> bytes:
    """A preamble or epilogue, which no reader shows, with long lines cut."""
    if not has_long_lines(text):
        return text
    lines = []
    for line in text.split(b"\r\n"):
        lines += [line[i : i + MAX_LINE] for i in range(0, len(line), MAX_LINE)] or [b""]
    return b"\r\n".join(lines)


def _reencoded(head: bytes, fields, body: bytes, *, top: bool) -> tuple[bytes, bytes]:
    cte = str(fields.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if cte == "base64":
        data = re.sub(rb"[^A-Za-z0-9+/=]", b"", body)
        lines = [data[i : i + BASE64_LINE] for i in range(0, len(data), BASE64_LINE)]
        return head, b"\r\n".join(lines) + b"\r\n"
    if cte == "quoted-printable":
        data = binascii.a2b_qp(body)
    elif cte in ("7bit", "8bit", "binary"):
        data = body
    else:  # x-uuencode and such: what decodes it is unknown; cut like an unseen part
        return head, _cut(body)
    text = fields.get_content_maintype() in ("text", "message") or cte != "binary"
    # b2a_qp breaks lines as the data's first line ends, LF when it has none: CRLF always.
    encoded = normalize_line_endings(binascii.b2a_qp(data, istext=text))
    head = _CTE_FIELD.sub(b"", head) + b"Content-Transfer-Encoding: quoted-printable\r\n"
    if top and fields.get("MIME-Version") is None:
        head += b"MIME-Version: 1.0\r\n"
    return head, encoded

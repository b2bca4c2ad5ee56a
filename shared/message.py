"""Small facts about RFC 5322 messages as bytes, shared by ingest and the signer."""

from __future__ import annotations

import re

_LINE_ENDING = re.compile(rb"\r\n|\r|\n")


def normalize_line_endings(raw: bytes) -> bytes:
    """Every line ending as CRLF (RFC 5322 2.3). A bare CR or LF can then never pose as the
    end of DATA further down the line (SMTP smuggling): a "<LF>.<LF>" inside a message becomes
    a line holding a dot, which the next hop dot-stuffs."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf:
        return raw  # CRLF only already: no copy
    return _LINE_ENDING.sub(b"\r\n", raw)

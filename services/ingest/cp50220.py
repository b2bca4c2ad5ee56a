"""ISO-2022-JP as Japanese mail software writes it: Microsoft's CP50220.

Plain ISO-2022-JP (RFC 1468) carries JIS X 0208 only, and Python's ``iso-2022-jp`` codec
refuses the rest. Everyday Japanese needs more: circled numbers (①), Roman numerals and units
(NEC row 13), and kanji such as 髙 and 﨑 (the NEC-selected IBM extensions, rows 89-92).
Outlook, Thunderbird's Japanese users' add-ons, Becky! and the carriers' phones read them in
the JIS X 0208 escape (``ESC $ B``), where CP932 (Shift_JIS as Windows writes it) keeps them;
that is CP50220, which also writes half-width katakana as full-width ones (7-bit mail has no
place for them).

No package on PyPI does this (checked: there is no CP50220 codec for Python), so it is built
here on the standard library's ``iso-2022-jp`` and ``cp932`` codecs: a character plain
ISO-2022-JP can write is written as it does, any other is looked up in CP932 and its
Shift_JIS code moved to JIS rows (IBM extensions to their NEC-selected twins, which lie
within the 94 x 94 rows). ``decode`` reads it back, for tests and for readers of stored mail:
JIS X 0208 as the standard library reads it, the extension rows as CP932. A few characters
Windows and JIS tell apart share one code (fullwidth tilde U+FF5E and wave dash U+301C,
fullwidth hyphen-minus U+FF0D and minus sign U+2212, and four more); they read back as JIS's,
which the reader sees alike.

Registered as the codec ``cp50220`` (``"①".encode("cp50220")``) when this module is imported.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata

NAME = "cp50220"
ESC_ASCII = b"\x1b(B"
ESC_JIS = b"\x1b$B"
_HALF_WIDTH_KANA = re.compile("[\uff61-\uff9f]+")
_ESCAPE = re.compile(rb"\x1b(?:\(B|\(J|\$B|\$@)")


def _twins() -> dict[str, bytes]:
    """Characters with their Shift_JIS code in NEC row 13 or the NEC-selected IBM extensions:
    where CP50220 writes a character that CP932 also has among the IBM extensions (rows
    0xFA-0xFC of Shift_JIS, beyond JIS's 94 rows)."""
    out: dict[str, bytes] = {}
    for lead in (0x87, 0xED, 0xEE):
        for trail in (*range(0x40, 0x7F), *range(0x80, 0xFD)):
            code = bytes((lead, trail))
            try:
                char = code.decode("cp932")
            except UnicodeDecodeError:
                continue
            out.setdefault(char, code)
    return out


_TWINS = _twins()


def _plain_chars() -> str:
    """Every character plain ISO-2022-JP writes: ASCII, JIS-Roman's two and JIS X 0208."""
    chars = {chr(c) for c in range(0x80)} | {"\u00a5", "\u203e"}
    for row in range(0x21, 0x7F):
        for col in range(0x21, 0x7F):
            try:
                chars.add((ESC_JIS + bytes((row, col)) + ESC_ASCII).decode("iso-2022-jp"))
            except UnicodeDecodeError:
                continue
    return "".join(sorted(chars))


# Runs the standard library's codec writes at once; the characters between are looked up.
_PLAIN_RUN = re.compile(f"[{re.escape(_plain_chars())}]+")


def _sjis_to_jis(code: bytes) -> bytes:
    c1, c2 = code
    c1 -= 0x40 if c1 >= 0xE0 else 0
    odd = c2 < 0x9F
    row = (c1 - 0x81) * 2 + (1 if odd else 2)
    col = (c2 - 0x40 + 1 - (1 if c2 > 0x7F else 0)) if odd else c2 - 0x9F + 1
    return bytes((row + 0x20, col + 0x20))


def _jis_to_sjis(code: bytes) -> bytes:
    row, col = code[0] - 0x20, code[1] - 0x20
    c1 = (row + 1) // 2 + 0x80
    c1 += 0x40 if c1 >= 0xA0 else 0
    if row % 2:
        c2 = col + 0x3F
        c2 += 1 if c2 >= 0x7F else 0
    else:
        c2 = col + 0x9E
    return bytes((c1, c2))


@functools.lru_cache(maxsize=8192)
def _char(char: str) -> tuple[bytes, bytes] | None:
    """(escape, bytes) of one character, or None when CP50220 cannot write it."""
    if char < "\x80":
        return ESC_ASCII, char.encode("ascii")
    try:
        plain = char.encode("iso-2022-jp")  # ESC $ B xx xx ESC ( B, or JIS-Roman's ESC ( J
    except UnicodeEncodeError:
        pass
    else:
        return plain[:3], plain[3:-3]
    code = _TWINS.get(char)
    if code is None:
        try:
            code = char.encode("cp932")
        except UnicodeEncodeError:
            return None
    if len(code) != 2 or not 0x81 <= code[0] <= 0xEF:  # user-defined rows 0xF0-0xF9 stay out
        return None
    return ESC_JIS, _sjis_to_jis(code)


def full_width(text: str) -> str:
    """``text`` with half-width katakana made full-width (ｶﾞ: ガ), as CP50220 writes them."""
    return _HALF_WIDTH_KANA.sub(_full_width_run, text)


def _full_width_run(match: re.Match[str]) -> str:
    # NFKC joins ｶﾞ into ガ; a voiced mark with nothing to join stays a combining mark,
    # which JIS writes as the spacing ゛ / ゜.
    return unicodedata.normalize("NFKC", match.group()).translate(_SPACING_MARKS)


_SPACING_MARKS = str.maketrans({"\u3099": "\u309b", "\u309a": "\u309c"})


def unencodable(text: str) -> str | None:
    """The first character of ``text`` CP50220 cannot write (an emoji, an accented letter ...),
    or None."""
    for char in full_width(text):
        if _char(char) is None:
            return char
    return None


def encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    """``text`` in CP50220; UnicodeEncodeError names the first character it cannot write.

    The standard library's codec writes the runs it can (fast, in C); only the characters it
    refuses are written here, one by one."""
    normal = full_width(text)
    try:
        return normal.encode("iso-2022-jp"), len(text)  # ends in ASCII, as RFC 1468 wants
    except UnicodeEncodeError:
        pass
    out = bytearray()
    pos = 0
    for run in _PLAIN_RUN.finditer(normal):
        out += _extended(normal, pos, run.start(), errors)
        try:
            out += run.group().encode("iso-2022-jp")
        except UnicodeEncodeError:  # not expected: the run is what the codec decodes to
            out += _extended(normal, run.start(), run.end(), errors)
        pos = run.end()
    out += _extended(normal, pos, len(normal), errors)
    return _tidy(bytes(out)), len(text)


def _tidy(data: bytes) -> bytes:
    """``data`` without the escapes that change nothing: where one run ends in ASCII and the
    next begins in JIS again, the text stays in JIS."""
    out = bytearray()
    said = mode = ESC_ASCII
    pos = 0
    for match in (*_ESCAPE.finditer(data), None):
        chunk = data[pos : match.start() if match else len(data)]
        if chunk:
            if mode != said:
                out += mode
                said = mode
            out += chunk
        if match:
            mode, pos = match.group(), match.end()
    if said != ESC_ASCII:
        out += ESC_ASCII
    return bytes(out)


def _extended(normal: str, start: int, end: int, errors: str) -> bytes:
    """``normal[start:end]``, characters plain ISO-2022-JP refuses, ending in ASCII."""
    out = bytearray()
    mode = ESC_ASCII
    for i in range(start, end):
        found = _char(normal[i])
        if found is None:
            if errors == "strict":
                raise UnicodeEncodeError(NAME, normal, i, i + 1, "not in CP50220")
            found = _char("?")
            assert found is not None
        escape, code = found
        if escape != mode:
            out += escape
            mode = escape
        out += code
    if mode != ESC_ASCII:
        out += ESC_ASCII
    return bytes(out)


def decode(data: bytes, errors: str = "strict") -> tuple[str, int]:
    """CP50220 (or plain ISO-2022-JP) bytes as text."""
    data = bytes(data)
    parts: list[str] = []
    mode = ESC_ASCII
    pos = 0
    for match in (*_ESCAPE.finditer(data), None):
        end = match.start() if match else len(data)
        chunk = data[pos:end]
        if mode in (ESC_JIS, b"\x1b$@"):
            parts.append(_decode_jis(chunk, errors))
        elif mode == b"\x1b(J":
            parts.append((b"\x1b(J" + chunk).decode("iso-2022-jp", errors))
        else:
            parts.append(chunk.decode("ascii", errors))
        if match:
            mode, pos = match.group(), match.end()
    return "".join(parts), len(data)


def _decode_jis(chunk: bytes, errors: str) -> str:
    """JIS X 0208 codes as the standard library reads them (〜 stays U+301C, as written),
    the extension rows as CP932 does."""
    try:
        return (ESC_JIS + chunk + ESC_ASCII).decode("iso-2022-jp")
    except UnicodeDecodeError:
        pass
    out = []
    for i in range(0, len(chunk) - 1, 2):
        code = chunk[i : i + 2]
        try:
            out.append((ESC_JIS + code + ESC_ASCII).decode("iso-2022-jp"))
        except UnicodeDecodeError:
            out.append(_jis_to_sjis(code).decode("cp932", errors))
    return "".join(out)


def _search(name: str) -> codecs.CodecInfo | None:
    if name.replace("-", "_").lower() != NAME:
        return None
    return codecs.CodecInfo(encode, decode, name=NAME)


codecs.register(_search)

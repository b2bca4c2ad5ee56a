"""Long lines repaired before signing: headers folded, body parts re-encoded, what the reader
sees unchanged, and nothing docomo's rule would refuse left."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest

from services.ingest import content, lines

LONG_TEXT = ("長い行です。" * 100 + "end").encode()  # 1,803 octets of UTF-8 on one line


def docomo_refuses(raw: bytes) -> bool:
    """docomo's rule: ``500 Line Too Long`` for a line over 1,000 octets with its CRLF."""
    return any(len(line) + 2 > 1000 for line in raw.split(b"\r\n"))


def _decoded(raw: bytes) -> list[tuple[str, bytes]]:
    """Each leaf part's content type and decoded content, as a reader gets them."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [
        (p.get_content_type(), p.get_payload(decode=True))
        for p in parsed.walk()
        if not p.is_multipart()
    ]


def test_a_message_without_long_lines_is_left_as_it_is() -> None:
    """No line over 998 octets: the very same bytes come back."""
    raw = b"From: a@shop.test\r\nSubject: x\r\n\r\nshort\r\n"
    assert lines.repair(raw) is raw


def test_a_plain_8bit_body_line_becomes_quoted_printable() -> None:
    """A 1,803-octet UTF-8 body line without MIME: quoted-printable with MIME-Version, the
    same decoded text, and nothing docomo refuses."""
    raw = b"From: a@shop.test\r\nSubject: x\r\n\r\n" + LONG_TEXT + b"\r\nsecond line\r\n"
    assert docomo_refuses(raw)
    fixed = lines.repair(raw)
    assert not docomo_refuses(fixed)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in fixed
    assert b"MIME-Version: 1.0\r\n" in fixed
    assert _decoded(fixed) == [("text/plain", LONG_TEXT + b"\r\nsecond line\r\n")]


def test_a_header_over_998_octets_is_folded_at_a_space() -> None:
    """A 1,500-octet header with spaces is folded under 998 octets and unfolds to the same
    value."""
    value = " ".join(["word"] * 300)
    raw = f"From: a@shop.test\r\nX-Words: {value}\r\n\r\nbody\r\n".encode()
    fixed = lines.repair(raw)
    assert not docomo_refuses(fixed)
    parsed = email.message_from_bytes(fixed, policy=email.policy.compat32)
    assert parsed["X-Words"].replace("\r\n", "") == value
    assert fixed.endswith(b"\r\n\r\nbody\r\n")


def test_a_header_with_no_place_to_fold_is_refused() -> None:
    """A header line over 998 octets without a space or tab cannot be folded: refused, named."""
    raw = b"From: a@shop.test\r\nX-Token: " + b"t" * 1500 + b"\r\n\r\nbody\r\n"
    with pytest.raises(lines.UnfoldableHeader, match="X-Token"):
        lines.repair(raw)
    with pytest.raises(content.ContentError, match="no space to fold"):
        content.accepted(raw)


def test_only_the_long_part_of_a_multipart_changes() -> None:
    """In a multipart, the part with a long line is re-encoded, the others and the boundaries
    stay byte for byte; every part decodes as before."""
    short = b"Content-Type: text/plain; charset=utf-8\r\n\r\nshort part\r\n"
    long = b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>" + LONG_TEXT + b"</p>\r\n"
    raw = (
        b"From: a@shop.test\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        b"--b1\r\n" + short + b"--b1\r\n" + long + b"--b1--\r\n"
    )
    fixed = lines.repair(raw)
    assert not docomo_refuses(fixed)
    assert b"--b1\r\n" + short + b"--b1\r\n" in fixed
    assert _decoded(fixed) == _decoded(raw)
    assert fixed.count(b"MIME-Version") == 1


def test_a_nested_multipart_is_repaired_inside() -> None:
    """A long line two multiparts deep is found and re-encoded."""
    inner = (
        b'Content-Type: multipart/alternative; boundary="in"\r\n\r\n'
        b"--in\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 1500 + b"\r\n--in--\r\n"
    )
    raw = (
        b"From: a@shop.test\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="out"\r\n\r\n'
        b"--out\r\n" + inner + b"--out--\r\n"
    )
    fixed = lines.repair(raw)
    assert not docomo_refuses(fixed)
    assert _decoded(fixed) == _decoded(raw)


def test_base64_on_one_long_line_is_rewrapped() -> None:
    """Base64 written on one line is wrapped at 76 characters; the data is the same."""
    data = bytes(range(256)) * 8
    raw = (
        b"From: a@shop.test\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(data) + b"\r\n"
    )
    fixed = lines.repair(raw)
    assert max(len(line) for line in fixed.split(b"\r\n")) == 76
    assert _decoded(fixed) == [("application/pdf", data)]


def test_quoted_printable_with_long_lines_is_encoded_again() -> None:
    """Quoted-printable written without soft breaks is encoded again, to the same text."""
    body = "=E3=81=82" * 200 + " end"
    raw = (
        b"From: a@shop.test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + body.encode() + b"\r\n"
    )
    fixed = lines.repair(raw)
    assert not docomo_refuses(fixed)
    assert fixed.count(b"Content-Transfer-Encoding") == 1
    assert _decoded(fixed) == _decoded(raw)


def test_accepted_checks_then_repairs() -> None:
    """The door's step: a 1,500-octet line is taken and repaired; one over the limit is
    refused with the limit named."""
    raw = b"From: a@shop.test\r\n\r\n" + b"y" * 1500 + b"\r\n"
    assert not docomo_refuses(content.accepted(raw))
    with pytest.raises(content.LineTooLong, match="2100 octets; the limit is 2048"):
        content.accepted(b"From: a@shop.test\r\n\r\n" + b"y" * 2100 + b"\r\n")


@pytest.mark.parametrize("before", [0, 1 << 20, (1 << 20) - 600, 2 * (1 << 20) + 7])
def test_a_long_line_is_found_anywhere_in_a_big_message(before: int) -> None:
    """A big message is measured a mebibyte at a time: a 1,200-octet line is found wherever
    it lies, across the pieces' boundaries too, with its length; CR, LF and CRLF end lines."""
    short = b"s" * 98 + b"\r\n"
    head = (short * (before // len(short) + 1))[:before]
    head = head[: head.rfind(b"\r\n") + 2] if head else b""
    raw = head + b"L" * 1200 + b"\n" + short * 20_000
    assert lines.line_over(raw, 998) == 1200
    assert lines.line_over(raw, 1200) == 0
    assert lines.line_over(short * 40_000 + b"x" * 999 + b"\r" + b"y", 998) == 999

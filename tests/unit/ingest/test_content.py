"""What a message must be before Hato signs it: one From with one mailbox, no header line a
downstream parser could split, no over-long line."""

from __future__ import annotations

import email
import email.policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.content import (
    ContentError,
    LineTooLong,
    TooManyHops,
    check,
    one_mailbox,
    with_crlf,
)

OK = b"From: Shop <orders@shop.test>\r\nTo: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n"


def test_a_plain_message_passes_and_names_its_from() -> None:
    """An ordinary message passes, and the check names the From address it read: the one whose
    domain signs."""
    assert check(OK) == "orders@shop.test"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"From: a@shop.test\r\nSubject: a\rBcc: v@victim.test\r\n\r\nx", "CR"),
        (b"From: a@shop.test\r\nSubject: a\0b\r\n\r\nx", "NUL"),
        (b"From: a@shop.test\r\n\r\nbody\0", "NUL"),
        (b"From: a@shop.test\r\nX-Long: " + b"y" * 5001 + b"\r\n\r\nx", "5009 octets"),
        (b"Subject: none\r\n\r\nx", "0 From"),
        (b"From: a@shop.test\r\nFrom: ceo@bank.test\r\n\r\nx", "2 From"),
        (b"From: a@shop.test\r\nfrom : ceo@bank.test\r\n\r\nx", "2 From"),
        (b"From: a@shop.test, ceo@bank.test\r\n\r\nx", "one mailbox"),
        (b"From: a@shop.test <ceo@bank.test>\r\n\r\nx", "one mailbox"),
        (b"From: undisclosed:;\r\n\r\nx", "one mailbox"),
        (b"From: nobody\r\n\r\nx", "one mailbox"),
        (b"From: \xff@shop.test\r\n\r\nx", "UTF-8"),
    ],
)
def test_refused(raw: bytes, why: str) -> None:
    """A bare CR or a NUL in the header, a NUL in the body, a header line over 998 octets, no From
    or two, a From that is not one mailbox, or bytes that are not UTF-8: the message is refused
    whole, with the reason."""
    with pytest.raises(ContentError, match=why):
        check(raw)


def test_a_folded_from_and_a_long_body_line_pass() -> None:
    """A From folded over two lines with an encoded name passes, and so does a body line of 2,048
    octets (the door's default limit); 2,049 is refused, naming the limit, and a higher limit
    takes it."""
    raw = b"From: =?utf-8?b?44K344On44OD44OX?=\r\n <orders@shop.test>\r\n\r\n" + b"z" * 2048
    assert check(raw) == "orders@shop.test"
    with pytest.raises(LineTooLong, match="a line is 2049 octets; the limit is 2048"):
        check(raw + b"z")
    assert check(raw + b"z" * 5000, max_line=8000) == "orders@shop.test"


def test_a_bare_lf_ends_a_line_for_every_reader_alike() -> None:
    """Many clients write LF only (Python's smtplib with bytes, for one): every reader, the
    SMTP door included, ends the line there, so it is taken (and made CRLF on acceptance)."""
    assert check(b"From: a@shop.test\nSubject: x\n\nbody\n") == "a@shop.test"
    assert check(with_crlf(b"From: a@shop.test\nSubject: x\n\nbody\n")) == "a@shop.test"
    mixed = b"From: a@shop.test\r\nSubject: x\nFrom: ceo@bank.test\r\n\r\n"
    with pytest.raises(ContentError, match="2 From"):
        check(mixed)  # read as the line it is: a second From


@pytest.mark.parametrize(
    "value",
    ["a@b.test,c@victim.test", "a@b.test c@victim.test", "a@b.test\x0cBcc: c@v.test", "x", ""],
)
def test_one_mailbox_refuses_lists_and_junk(value: str) -> None:
    """A list, two bare addresses, a control character hiding a header, or no address at all is not
    one mailbox."""
    with pytest.raises(ContentError):
        one_mailbox(value)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ('"Shop, Inc" <a@shop.test>', "a@shop.test"),
        ("a@shop.test (orders)", "a@shop.test"),
        ("ショップ <a@shop.test>", "a@shop.test"),
    ],
)
def test_one_mailbox_reads_a_named_mailbox(value: str, address: str) -> None:
    """A display name around one address (quoted with a comma, as a comment, or not ASCII) gives
    that address."""
    assert one_mailbox(value) == address


_header_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Z", "Cc")),
    max_size=60,
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(subject=_header_text, sender=_header_text)
def test_what_passes_has_the_headers_it_was_checked_with(subject: str, sender: str) -> None:
    """Whatever passes, the email package sees exactly the fields the check saw: one From, with
    the checked address, and no field the sender did not write as a line of its own."""
    raw = f"From: {sender}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    try:
        address = check(raw)
    except ContentError:
        return
    parsed = email.message_from_string(raw.decode(), policy=email.policy.default)
    assert [k.lower() for k in parsed] == ["from", "subject"]
    assert [a.addr_spec for a in parsed["From"].addresses] == [address]


def test_a_mail_loop_is_refused_by_its_received_count() -> None:
    """Fifty Received fields pass; the fifty-first marks a mail loop, refused rather than relayed
    once more."""
    hops = b"Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
    assert check(hops * 50 + OK) == "orders@shop.test"
    with pytest.raises(TooManyHops, match="51 Received"):
        check(hops * 51 + OK)

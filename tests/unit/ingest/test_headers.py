"""What ingest reads from a message's header block."""

from __future__ import annotations

import pytest

from services.ingest.accept import summarize_headers


def test_from_subject_and_message_id_are_read() -> None:
    """From, Subject and Message-ID are read from the header block only (a 'From:' line in the body
    is not), the From domain lower-cased."""
    raw = (
        b'From: "Shop" <Orders@Shop.Test>\r\nSubject: Hi\r\n'
        b"Message-ID: <1@shop.test>\r\n\r\nFrom: body@x.test\r\n"
    )
    h = summarize_headers(raw)
    assert (h.from_address, h.from_domain) == ("Orders@Shop.Test", "shop.test")
    assert (h.subject, h.message_id) == ("Hi", "<1@shop.test>")


def test_bare_lf_messages_and_missing_from() -> None:
    """A bare-LF message parses; a missing From is None, not the body's 'From:' line."""
    h = summarize_headers(b"Subject: x\n\nFrom: someone@else.test\n")
    assert h.from_domain is None
    assert h.subject == "x"


def test_the_body_is_not_parsed() -> None:
    """A 5 MB body is never parsed: only the header block before it is read."""
    big = b"From: a@shop.test\r\n\r\n" + b"x" * 5_000_000
    assert summarize_headers(big).from_domain == "shop.test"


def test_a_submission_gets_date_and_message_id_only_when_missing() -> None:
    """A submission without Date or Message-ID gets them at the top, the Message-ID in the From
    domain (RFC 6409 8.2, 8.3); one that has both is left byte for byte."""
    from services.ingest.smtp import complete_header

    bare = b"From: a@shop.test\r\nSubject: x\r\n\r\nbody\r\n"
    done = complete_header(bare, "shop.test")
    h = summarize_headers(done)
    assert h.message_id and h.message_id.endswith("@shop.test>")
    assert done.startswith(b"Date: ") and done.endswith(bare)
    full = b"Date: Sun, 1 Nov 2026 00:00:00 +0000\r\nMessage-ID: <1@x>\r\n" + bare
    assert complete_header(full, "shop.test") == full


@pytest.mark.parametrize(
    "head, missing",
    [
        (b"", "no Message-ID and no Date"),
        (b"Date: Sun, 1 Nov 2026 00:00:00 +0000\r\n", "no Message-ID field"),
        (b"Message-ID: <1@x>\r\n", "no Date field"),
    ],
)
def test_a_tenant_that_refuses_names_what_is_missing(head: bytes, missing: str) -> None:
    """With the tenant's refuse option, a message without Message-ID or Date is refused with
    a reason naming the missing fields, not completed."""
    from services.ingest.content import MissingFields, complete_header

    bare = head + b"From: a@shop.test\r\nSubject: x\r\n\r\nbody\r\n"
    with pytest.raises(MissingFields, match=missing):
        complete_header(bare, "shop.test", refuse=True)


def test_a_complete_message_passes_the_refuse_option() -> None:
    """A message with both fields passes the refuse option unchanged."""
    from services.ingest.content import complete_header

    full = b"Date: Sun, 1 Nov 2026 00:00:00 +0000\r\nMessage-ID: <1@x>\r\nFrom: a@s.test\r\n\r\nb"
    assert complete_header(full, "s.test", refuse=True) is full

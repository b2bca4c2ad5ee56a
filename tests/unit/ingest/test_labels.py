"""Tags and metadata from the header fields of SendGrid's, Postmark's, Mailgun's and Hato's SMTP
clients (services/ingest/labels.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.ingest.labels import LabelError, Labels, extract

HEAD = b"From: a@shop.test\r\nTo: b@ok.test\r\nSubject: hi\r\n"
BODY = b"\r\nX-PM-Tag: in the body\r\n"


def test_sendgrid_x_smtpapi_gives_categories_unique_args_and_send_at() -> None:
    """X-SMTPAPI's category (string or list), unique_args and send_at are read, even folded over
    lines, and the field is removed."""
    raw = (
        HEAD
        + b'X-SMTPAPI: {"category": ["welcome", "trial"],\r\n "unique_args": {"uid": 7},'
        + b'\r\n\t"send_at": 1900000000}\r\n'
        + BODY
    )
    kept, labels = extract(raw)
    assert kept == HEAD + BODY
    assert labels == Labels(
        ("welcome", "trial"), {"uid": "7"}, datetime.fromtimestamp(1900000000, UTC)
    )
    assert extract(HEAD + b'X-SMTPAPI: {"category": "one"}\r\n' + BODY)[1].tags == ("one",)


def test_postmark_mailgun_and_hato_fields_are_read_and_removed() -> None:
    """X-PM-Tag, X-PM-Metadata-*, X-Mailgun-Tag (repeated), X-Mailgun-Variables, X-Hato-Tags and
    X-Hato-Metadata all label the message and none stays in it; the body is left alone."""
    raw = (
        b"X-PM-Tag: receipts\r\nX-PM-Metadata-order: 42\r\n"
        + HEAD
        + b"X-Mailgun-Tag: a\r\nX-Mailgun-Tag: b\r\n"
        + b'X-Mailgun-Variables: {"user": "u1", "n": 3}\r\n'
        + b'X-Hato-Tags: c, d\r\nX-Hato-Metadata: {"team": "shop"}\r\n'
        + BODY
    )
    kept, labels = extract(raw)
    assert kept == HEAD + BODY
    assert labels.tags == ("receipts", "a", "b", "c", "d")
    assert labels.metadata == {"order": "42", "user": "u1", "n": "3", "team": "shop"}


def test_a_message_without_labels_is_left_byte_for_byte() -> None:
    """No label field: the very same bytes come back, with empty labels."""
    raw = HEAD + BODY
    kept, labels = extract(raw)
    assert kept is raw and labels == Labels()


@pytest.mark.parametrize(
    ("field", "error"),
    [
        (b"X-SMTPAPI: {nope", "X-SMTPAPI is not valid JSON"),
        (b"X-SMTPAPI: [1]", "X-SMTPAPI must be a JSON object"),
        (b'X-SMTPAPI: {"category": 5}', "category must be a string or a list"),
        (b'X-SMTPAPI: {"send_at": "soon"}', "send_at must be a Unix time"),
        (b'X-Mailgun-Variables: {"a.b": "1"}', "metadata keys are 1-64 letters"),
        (b"X-Hato-Tags: " + b",".join(b"t%d" % i for i in range(11)), "11 tags; at most 10"),
    ],
)
def test_unreadable_labels_are_refused_with_the_reason(field: bytes, error: str) -> None:
    """A label field that cannot be taken is an error that says which and why."""
    with pytest.raises(LabelError, match=error):
        extract(HEAD + field + b"\r\n" + BODY)


def test_a_field_given_twice_is_refused() -> None:
    """Two X-SMTPAPI fields are ambiguous: refused, not one of them picked."""
    with pytest.raises(LabelError, match="given twice"):
        extract(HEAD + b'X-SMTPAPI: {}\r\nX-SMTPAPI: {"category": "x"}\r\n' + BODY)

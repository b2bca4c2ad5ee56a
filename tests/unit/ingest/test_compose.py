"""What the JSON API's composer writes, read back as receivers read it."""

from __future__ import annotations

import email
import email.policy

import pytest
from pydantic import ValidationError

from services.ingest.api_models import MessageIn
from services.ingest.compose import compose


def _filenames(filename: str) -> list[str | None]:
    message = MessageIn.model_validate(
        {
            "from": "shop@shop.test",
            "to": ["a@example.test"],
            "text": "hi",
            "attachments": [{"filename": filename, "content": "aGk="}],
        }
    )
    raw = compose(message, message_id_domain="shop.test")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return [p.get_filename() for p in parsed.walk() if p.get_content_disposition()]


@pytest.mark.parametrize("filename", ["x'y.txt", "a=b.txt", "report (1);2.pdf", "[draft] #1.pdf"])
def test_an_ascii_filename_is_read_back_as_given(filename: str) -> None:
    """Found by make fuzz: names went out bare (filename=x'y.txt) and came back as no name."""
    assert _filenames(filename) == [filename]


def test_a_japanese_filename_is_read_back_as_given() -> None:
    """A non-ASCII filename goes out in RFC 2231 form and is read back as given."""
    assert _filenames("請求書.pdf") == ["請求書.pdf"]


@pytest.mark.parametrize(
    "filename", ['""', 'say "hi".txt', "<>", "<a>.txt", "a\\b.txt", "../etc/passwd", "*", "a:b"]
)
def test_a_filename_no_reader_reads_back_alike_is_refused(filename: str) -> None:
    """Found by make fuzz: '""' and '<>' came back from Python's parser as no name. What
    Windows refuses in a file name is refused."""
    with pytest.raises(ValidationError, match="must not contain any of"):
        _filenames(filename)


@pytest.mark.parametrize("field", ["text", "html"])
def test_a_nul_in_the_text_is_refused_by_the_schema(field: str) -> None:
    """Found by make fuzz: the message was composed, then refused by the content check."""
    body = {"from": "shop@shop.test", "to": ["a@example.test"], field: "a\x00b"}
    with pytest.raises(ValidationError, match="NUL"):
        MessageIn.model_validate(body)


def test_a_header_named_twice_in_two_cases_is_refused() -> None:
    """Found by make fuzz: {"X-S": "", "X-s": ""} went out as the same field twice."""
    body = {"from": "shop@shop.test", "to": ["a@example.test"], "text": "hi"}
    with pytest.raises(ValidationError, match="given twice"):
        MessageIn.model_validate({**body, "headers": {"X-S": "", "X-s": ""}})

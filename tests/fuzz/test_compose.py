"""Composing JSON messages (services/ingest/compose.py) under fuzzing: whatever the API's
schema admits composes to a message the From check accepts, with short lines, only the header
fields the sender asked for, and never a Bcc."""

from __future__ import annotations

import base64
import email
import email.policy
import re

from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.ingest import cp50220
from services.ingest.api_models import RESERVED_HEADERS, MessageIn, address_of
from services.ingest.compose import compose
from services.ingest.content import LINE_BREAKING, MAX_LINE, ContentError, accepted, check
from services.ingest.send import beyond_jis
from tests.fuzz.test_addresses import valid_addresses

JAPANESE = "ご注文ありがとうございます。山田太郎様、発送しました！（株）ｶﾀｶﾅ①㈱〜−"  # noqa: RUF001
BCC_MARK = "bcc-hidden-"
# ASCII header text is folded at white space, never rewritten: with a run this long it may not
# fold under 998 octets, and then the check refuses the message (a 400), by design.
UNFOLDABLE = re.compile(r"[!-~]{400}|[ \t]{400}")


def _one_line(text: str) -> str:
    return LINE_BREAKING.sub(" ", text)


# Text of every kind: any Unicode, Japanese, and the characters MIME and headers care about.
_texts = st.one_of(
    st.text(max_size=120),
    st.text(alphabet=JAPANESE + " \t\n.,;:\"'<>()=?_", max_size=120),
    st.lists(
        st.sampled_from(["a", " ", "=?", "?=", "\r\n", "\n", ":", ";", "\t"]), max_size=40
    ).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "あ", " ", "é"]), st.integers(990, 3000)),
)
_one_lines = _texts.map(_one_line)
_names = _one_lines.map(lambda s: s[:60])


def _mailbox(name: str, address: str, style: int) -> str:
    if style == 0 or not name.strip():
        return address
    if style == 1:
        return f"{name} <{address}>"
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + f'" <{address}>'


_mailboxes = st.builds(_mailbox, _names, valid_addresses, st.integers(0, 2))
_header_names = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True).filter(
    lambda n: n.lower() not in RESERVED_HEADERS
)
_attachments = st.fixed_dictionaries(
    {
        "filename": _one_lines.filter(lambda s: 1 <= len(s) <= 255),
        "content": st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
    },
    optional={
        "content_type": st.sampled_from(["text/plain", "image/png", "application/pdf"]),
        "content_id": st.from_regex(r"[a-z0-9.]{1,20}@[a-z]{1,10}", fullmatch=True),
    },
)
messages = st.fixed_dictionaries(
    {
        "from": _mailboxes,
        "to": st.lists(_mailboxes, min_size=1, max_size=3),
        "text": _texts,
    },
    optional={
        "cc": st.lists(_mailboxes, max_size=3),
        "bcc": st.lists(valid_addresses.map(lambda a: BCC_MARK + a), min_size=1, max_size=3),
        "reply_to": st.lists(_mailboxes, max_size=2),
        "subject": _one_lines.map(lambda s: s[:998]),
        "html": _texts,
        "headers": st.dictionaries(_header_names, _one_lines, max_size=3),
        "attachments": st.lists(_attachments, max_size=2),
        "charset": st.sampled_from(["utf-8", "iso-2022-jp"]),
    },
)


def _valid(body: dict) -> MessageIn:
    try:
        message = MessageIn.model_validate(body)
    except ValidationError:
        assume(False)
        raise
    # Characters plain ISO-2022-JP lacks are the tenant's choice (send.charset_for, refused
    # or sent otherwise before compose; tests/unit/ingest/test_japanese.py), and Python's
    # parser, which reads the message back here, does not read Microsoft's extensions.
    assume(message.charset != "iso-2022-jp" or message.unwritable(beyond_jis) is None)
    return message


def _expected_fields(m: MessageIn) -> set[str]:
    fields = {"from", "subject", "date", "message-id", "mime-version", "content-type"}
    fields |= {"to"} if m.to else set()
    fields |= {"cc"} if m.cc else set()
    fields |= {"reply-to"} if m.reply_to else set()
    return fields | {name.lower() for name in m.headers}


@given(messages)
def test_what_the_schema_admits_composes_to_a_message_hato_accepts(body: dict) -> None:
    """Valid JSON composes (no exception), passes the From check with the sender's address,
    has no line over 998 octets once accepted, only the header fields asked for, and no trace
    of Bcc."""
    message = _valid(body)
    raw = compose(message, message_id_domain="shop.test")

    try:
        raw = accepted(raw)  # as the door stores it: long header lines folded
        assert check(raw) == address_of(message.from_)
    except ContentError as exc:
        ascii_header_text = [message.subject, *message.headers.values()]
        ascii_header_text += [m for m in (message.from_, *message.to, *message.cc) if m.isascii()]
        assert "octets" in str(exc)
        assert any(UNFOLDABLE.search(t) for t in ascii_header_text if t.isascii())
        return
    assert all(len(line) <= MAX_LINE for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")

    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    names = [k.lower() for k in parsed]
    assert len(names) == len(set(names))
    assert set(names) - {"content-transfer-encoding"} == _expected_fields(message)
    assert "bcc" not in names and BCC_MARK.encode() not in raw
    assert [a.addr_spec for a in parsed["From"].addresses] == [address_of(message.from_)]
    assert " ".join(str(parsed["Subject"]).split()) == " ".join(message.subject.split())
    for name, value in message.headers.items():
        assert " ".join(str(parsed[name]).split()) == " ".join(value.split())
    files = [p.get_filename() or "" for p in parsed.walk() if p.get_content_disposition()]
    assert sorted(f.strip() for f in files) == sorted(
        a.filename.strip() for a in message.attachments
    )


EXTENDED = "丸数字①②Ⅲ㈱髙﨑橋ｶﾞｯ〜−ご注文 a=?_\t"  # noqa: RUF001
_WORD = re.compile(r"=\?iso-2022-jp\?b\?([A-Za-z0-9+/=]+)\?=")


@given(
    st.text(alphabet=EXTENDED, max_size=300).map(_one_line),
    st.text(alphabet=EXTENDED + "\n", max_size=3000),
)
def test_iso_2022_jp_with_extensions_composes_and_reads_back(subject: str, text: str) -> None:
    """With characters beyond JIS X 0208 (written as CP50220), a message composes to 7 bits
    with no line over 998 octets, and its subject and body read back as CP50220."""
    message = _valid({"from": "s@shop.test", "to": ["a@ok.test"], "text": text})
    message = message.model_copy(update={"subject": subject, "charset": "iso-2022-jp"})
    raw = accepted(compose(message, message_id_domain="shop.test"))
    assert raw.isascii()
    assert all(len(line) <= MAX_LINE for line in raw.split(b"\r\n"))
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    words = str(parsed["Subject"] or "").replace("\r\n", "")
    read = "".join(base64.b64decode(w).decode(cp50220.NAME) for w in _WORD.findall(words))
    if subject.isascii():  # written as it is, folded: white space is the parser's
        assert " ".join(words.split()) == " ".join(subject.split())
    else:
        assert read == cp50220.full_width(subject)
    body = parsed.get_payload(decode=True).decode(cp50220.NAME).replace("\r\n", "\n")
    assert body == cp50220.full_width(text).replace("\r\n", "\n")

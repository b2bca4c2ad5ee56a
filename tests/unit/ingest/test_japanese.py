"""Japanese text beyond JIS X 0208 in ISO-2022-JP mail: the CP50220 codec, the composer's
headers, display names and bodies, and the tenant's choice (CP50220, UTF-8 or refuse)."""

from __future__ import annotations

import base64
import email
import email.policy
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest import cp50220
from services.ingest.api_models import MessageIn
from services.ingest.compose import compose, jis_words
from services.ingest.send import Refused, charset_for
from shared.directory import Identity, TenantLimits
from shared.schemas import EventType

EVERYDAY = "丸数字①と髙橋、﨑、Ⅲ、㈱、№"
_WORD = re.compile(r"=\?iso-2022-jp\?b\?([A-Za-z0-9+/=]+)\?=")


def _words(value: str) -> str:
    """The text of a header's ISO-2022-JP encoded words, read as CP50220."""
    return "".join(
        base64.b64decode(w).decode(cp50220.NAME) for w in _WORD.findall(value.replace("\r\n", ""))
    )


@pytest.mark.parametrize(
    "text", [EVERYDAY, "ⅰⅱⅲ纊褜鍈銈", "ご注文ありがとうございます", "mixed ① and ascii", "〜", ""]
)
def test_cp50220_round_trips(text: str) -> None:
    """What CP50220 writes reads back as the same text, in 7 bits, ending in ASCII."""
    data = text.encode(cp50220.NAME)
    assert data.isascii()
    assert data.rfind(b"\x1b") == data.rfind(b"\x1b(B")  # the last escape is back to ASCII
    assert data.decode(cp50220.NAME) == text


def test_plain_jis_is_written_as_iso_2022_jp_writes_it() -> None:
    """Text within JIS X 0208 is written byte for byte as plain ISO-2022-JP."""
    text = "山田太郎です。よろしく"
    assert text.encode(cp50220.NAME) == text.encode("iso-2022-jp")


def test_extensions_go_in_the_jis_escape_at_the_nec_codes() -> None:
    """① is NEC row 13 (0x2D21), 髙 and 﨑 the NEC-selected IBM extensions (rows 89-92),
    all in the JIS X 0208 escape ESC $ B."""
    assert "①".encode(cp50220.NAME) == b"\x1b$B-!\x1b(B"
    assert "髙".encode(cp50220.NAME) == b"\x1b$B|b\x1b(B"  # Shift_JIS 0xEEE0, row 92
    assert "﨑".encode(cp50220.NAME) == b"\x1b$Byu\x1b(B"


def test_half_width_katakana_become_full_width() -> None:
    """CP50220 writes half-width katakana as full-width ones, voiced marks joined."""
    assert "ｶﾞｯｺｳ".encode(cp50220.NAME).decode(cp50220.NAME) == "ガッコウ"


def test_what_cp50220_cannot_write_is_named() -> None:
    """An emoji or an accented letter has no place in CP50220: the codec names it."""
    assert cp50220.unencodable("①と😀") == "😀"
    with pytest.raises(UnicodeEncodeError) as caught:
        "caf\u00e9".encode(cp50220.NAME)
    assert caught.value.object[caught.value.start] == "\u00e9"


def _message(**kw: object) -> MessageIn:
    body = {
        "from": f"{EVERYDAY} <shop@shop.test>",
        "to": ["髙橋 <taro@docomo.test>"],
        "subject": EVERYDAY,
        "text": f"{EVERYDAY}\n二行目",
        "charset": "iso-2022-jp",
    } | kw
    return MessageIn.model_validate(body)


def test_subject_display_name_and_body_are_written_in_cp50220() -> None:
    """①, 髙 and 﨑 in the subject, the display names and the body go out in 7-bit ISO-2022-JP
    labelled iso-2022-jp, and read back as written."""
    raw = compose(_message(), message_id_domain="shop.test")
    assert raw.isascii()
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert _words(parsed["Subject"]) == EVERYDAY
    assert _words(parsed["From"]) == EVERYDAY and "<shop@shop.test>" in parsed["From"]
    assert _words(parsed["To"]) == "髙橋"
    assert parsed.get_content_charset() == "iso-2022-jp"
    body = parsed.get_payload(decode=True).decode(cp50220.NAME)
    assert body.replace("\r\n", "\n").strip() == f"{EVERYDAY}\n二行目"


def test_a_long_subject_is_many_encoded_words_each_whole() -> None:
    """A long subject is split into encoded words of at most 75 characters, each ending in
    ASCII, that together read back as the subject."""
    subject = EVERYDAY * 6
    words = jis_words(subject).split(" ")
    assert len(words) > 1 and all(len(w) <= 75 for w in words)
    for w in words:
        assert base64.b64decode(_WORD.fullmatch(w).group(1)).endswith(b"\x1b(B")  # type: ignore[union-attr]
    assert _words(jis_words(subject)) == subject


def _identity(choice: str | None) -> Identity:
    return Identity("acme", "default", TenantLimits(jis_extensions=choice))


@pytest.mark.parametrize("choice", [None, "cp50220"])
def test_the_default_writes_the_extensions(choice: str | None) -> None:
    """By default (and under cp50220) the message stays ISO-2022-JP, with no event."""
    assert charset_for(_identity(choice), _message()) == ("iso-2022-jp", ())


def test_the_utf8_choice_sends_in_utf8_with_an_event() -> None:
    """Under utf-8 the message goes in UTF-8, and a charset_fallback event names the field
    and the character."""
    charset, notices = charset_for(_identity("utf-8"), _message(subject="①"))
    assert charset == "utf-8"
    [(kind, said)] = notices
    assert kind is EventType.CHARSET_FALLBACK
    assert said == {
        "asked": "iso-2022-jp",
        "charset": "utf-8",
        "field": "subject",
        "character": "①",
    }


def test_the_refuse_choice_answers_400_naming_the_character() -> None:
    """Under refuse, 400 naming the field and the character with its code point."""
    with pytest.raises(Refused) as caught:
        charset_for(_identity("refuse"), _message(subject="丸数字①と髙橋"))
    assert caught.value.status == 400
    assert "subject" in caught.value.detail and "U+2460" in caught.value.detail


def test_plain_japanese_needs_no_choice() -> None:
    """Text within JIS X 0208 is ISO-2022-JP under every choice."""
    plain = _message(
        subject="ご注文", text="本文", to=["taro@docomo.test"], **{"from": "s@shop.test"}
    )
    for choice in ("cp50220", "utf-8", "refuse"):
        assert charset_for(_identity(choice), plain) == ("iso-2022-jp", ())


def test_an_emoji_is_refused_even_under_cp50220() -> None:
    """What CP50220 cannot write either (an emoji) is a 400 naming it, never a 500."""
    with pytest.raises(Refused) as caught:
        charset_for(_identity(None), _message(text="① 😀"))
    assert caught.value.status == 400 and "U+1F600" in caught.value.detail


def test_one_escape_per_change_of_set() -> None:
    """Extensions inside Japanese text stay in the one JIS run: an escape only where the set
    changes, as Japanese mail software writes it."""
    assert "丸数字①と髙橋".encode(cp50220.NAME) == b"\x1b$B4]?t;z-!$H|b66\x1b(B"
    assert "¥①".encode(cp50220.NAME) == b"\x1b(J\\\x1b$B-!\x1b(B"


_ALPHABET = "abc ¥\n山田髙﨑①②Ⅲ\u2170ｶﾞ㈱\uff5eご注文"


# Pairs that Windows and JIS write with one code (fullwidth tilde and wave dash, fullwidth
# hyphen-minus and minus sign, ...): read back as JIS's.
_ONE_CODE = str.maketrans(
    "\uff5e\uff0d\u2225\uffe0\uffe1\uffe2", "\u301c\u2212\u2016\u00a2\u00a3\u00ac"
)


@given(st.text(alphabet=_ALPHABET, max_size=60))
def test_any_mix_round_trips(text: str) -> None:
    """Any mix of ASCII, JIS-Roman, JIS X 0208 and the extensions reads back as written
    (half-width katakana as full-width; of a pair that shares a code, JIS's one), and what
    is read back is written to the same bytes."""
    data = text.encode(cp50220.NAME)
    assert data.isascii()
    read = data.decode(cp50220.NAME)
    assert read == cp50220.full_width(text).translate(_ONE_CODE)
    assert read.encode(cp50220.NAME) == data

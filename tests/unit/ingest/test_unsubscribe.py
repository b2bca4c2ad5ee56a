"""One-click unsubscribe at ingest: which list a message is sent to, the control header's
check, and the page's language and button."""

from __future__ import annotations

import pytest

from services.ingest import content
from services.ingest.accept import FrontDoor, Submission, summarize_headers, unsubscribe_list
from services.ingest.http.unsubscribe import language, page
from shared.directory import Identity, TenantLimits


def test_the_page_speaks_japanese_or_english() -> None:
    """Accept-Language picks the page's language by preference; the page's button POSTs the
    one-click form, and the list name is escaped."""
    assert language("ja,en;q=0.8") == "ja"
    assert language("en-US,ja;q=0.5") == "en"
    assert language("fr, ja-JP;q=0.9") == "ja"
    assert language("") == language("de") == "en"
    assert language("ja;q=abc, en;q=0") == "en"
    ja = page("ja", "news", done=False)
    assert 'lang="ja"' in ja and "配信を停止する" in ja
    assert 'name="List-Unsubscribe" value="One-Click"' in ja and 'method="post"' in ja
    assert "<b>" not in page("en", "<b>", done=True)


def _submission(raw: bytes, *, field: str | None = None, default: str | None = None):
    identity = Identity("shop", "default", TenantLimits(unsubscribe_list=default))
    return Submission(
        identity=identity,
        mail_from="a@shop.test",
        recipients=("b@ok.test",),
        raw=raw,
        headers=summarize_headers(raw),
        door=FrontDoor.SMTP,
        client="127.0.0.1",
        unsubscribe=field,
    )


def test_which_list_a_message_is_sent_to() -> None:
    """The door's field wins, then X-Hato-Unsubscribe (``off`` for none), then the tenant's
    default — which a message with a List-Unsubscribe of its own does not get."""
    plain = b"From: a@shop.test\r\nSubject: s\r\n\r\nbody\r\n"
    asks = b"X-Hato-Unsubscribe: weekly\r\n" + plain
    off = b"X-Hato-Unsubscribe: OFF\r\n" + plain
    own = b"List-Unsubscribe: <mailto:u@shop.test>\r\n" + plain
    assert unsubscribe_list(_submission(plain)) is None
    assert unsubscribe_list(_submission(plain, default="news")) == "news"
    assert unsubscribe_list(_submission(asks, default="news")) == "weekly"
    assert unsubscribe_list(_submission(off, default="news")) is None
    assert unsubscribe_list(_submission(own, default="news")) is None
    assert unsubscribe_list(_submission(own, field="offers")) == "offers"
    assert unsubscribe_list(_submission(asks, field="")) is None


def test_a_bad_unsubscribe_header_is_refused() -> None:
    """X-Hato-Unsubscribe holds a list name or off, once; anything else refuses the message
    with a reason naming the field."""
    plain = b"From: a@shop.test\r\nSubject: s\r\n\r\nbody\r\n"
    content.check(b"X-Hato-Unsubscribe: news\r\n" + plain)
    content.check(b"X-Hato-Unsubscribe: off\r\n" + plain)
    for bad in (b"a b", b"", "ニュース".encode(), b"x" * 70):
        with pytest.raises(content.ContentError, match="X-Hato-Unsubscribe"):
            content.check(b"X-Hato-Unsubscribe: " + bad + b"\r\n" + plain)
    with pytest.raises(content.ContentError, match="2 X-Hato-Unsubscribe"):
        content.check(b"X-Hato-Unsubscribe: a\r\nX-Hato-Unsubscribe: b\r\n" + plain)

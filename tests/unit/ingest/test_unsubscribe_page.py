"""The unsubscribe page: its language and its button."""

from __future__ import annotations

from services.ingest.http.unsubscribe import language, page


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

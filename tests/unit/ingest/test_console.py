"""The console's words and helpers: the language picked, every English text of the pages in
the Japanese catalogue, headers shown decoded, times marked for the viewer's zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from services.ingest.console.i18n import JA, language, translator
from services.ingest.console.pages import HERE, _before, _local_path, decoded, when

SAID = re.compile(r"""\bt\(\s*(['"])(.+?)\1""")


def test_the_language_is_the_cookie_else_the_browsers_else_english() -> None:
    """The switch's cookie wins; Accept-Language is read by q-value; English otherwise."""
    assert language("ja", "en-US") == "ja"
    assert language(None, "en;q=0.4, ja-JP;q=0.9") == "ja"
    assert language(None, "fr, de;q=0.8") == "en"
    assert language("xx", "") == "en"


def test_every_text_the_templates_say_has_its_japanese() -> None:
    """No page shows English to a Japanese reader by a forgotten catalogue entry."""
    missing = set()
    for template in (HERE / "templates").glob("*.html"):
        for _, text in SAID.findall(template.read_text()):
            if text not in JA:
                missing.add(text)
    assert not missing
    assert (
        translator("ja")("Remove the suppression of %s?", "a@b.jp")
        == "a@b.jp の配信停止を解除しますか?"
    )


def test_japanese_headers_are_shown_decoded() -> None:
    """An ISO-2022-JP encoded subject reads as Japanese; plain text stays as it is."""
    assert decoded("=?ISO-2022-JP?B?GyRCJCpDbUo4GyhC?=") == "お注文"
    assert decoded("Order 7") == "Order 7"


def test_times_are_utc_in_the_page_and_marked_for_the_script() -> None:
    """<time datetime> carries the ISO moment; a missing time renders nothing."""
    shown = when(datetime(2026, 12, 3, 1, 2, 3, tzinfo=UTC))
    assert 'datetime="2026-12-03T01:02:03+00:00"' in shown and "01:02:03 UTC" in shown
    assert when(None) == ""


def test_going_back_after_sign_in_stays_inside_the_console() -> None:
    """An open redirect through ?next= is not possible."""
    assert _local_path("/console/messages?x=1") == "/console/messages?x=1"
    assert _local_path("https://evil.example/console") == "/console/messages"
    assert _local_path("//evil.example/console") == "/console/messages"
    assert _local_path("/admin/v1/tenants") == "/console/messages"


def test_a_suppression_search_starts_just_below_its_prefix() -> None:
    """Every address starting with the prefix sorts after the bound; none before it does."""
    bound = _before("tar")
    assert "tar" > bound and "taro@x.jp" > bound and "tap@x.jp" < bound
    assert _before("") == "" and _before("a\x00") == "a"


def test_the_overview_sums_reasons_per_provider() -> None:
    """ezweb.ne.jp and au.com are one provider, au; a domain of no known provider
    stays itself; the largest count first."""
    from services.ingest.console.pages import by_provider

    report = [
        {"domain": "ezweb.ne.jp", "type": "deferred", "reason": "throttled", "count": 3},
        {"domain": "example.org", "type": "bounced", "reason": "userunknown", "count": 2},
        {"domain": "au.com", "type": "deferred", "reason": "throttled", "count": 4},
    ]
    assert by_provider(report) == [
        {"provider": "au", "type": "deferred", "reason": "throttled", "count": 7},
        {"provider": "example.org", "type": "bounced", "reason": "userunknown", "count": 2},
    ]

"""A message's status follows its recipients' states."""

from __future__ import annotations

import pytest

from shared.views import message_status


@pytest.mark.parametrize(
    ("stage", "statuses", "expected"),
    [
        ("accepted", ["queued", "queued"], "accepted"),
        ("signed", ["queued"], "signed"),
        ("signed", ["delivered", "queued"], "signed"),
        ("signed", ["delivered", "deferred"], "deferred"),
        ("signed", ["delivered", "delivered"], "delivered"),
        ("signed", ["bounced"], "bounced"),
        ("signed", ["complained"], "complained"),
        ("accepted", ["suppressed", "suppressed"], "suppressed"),
        ("failed", ["failed"], "failed"),
        ("signed", ["expired"], "expired"),
        ("signed", ["delivered", "bounced", "suppressed"], "partially_delivered"),
        ("signed", ["bounced", "expired"], "undelivered"),
        ("accepted", [], "accepted"),
    ],
)
def test_message_status(stage: str, statuses: list[str], expected: str) -> None:
    """Final once every recipient is: their common state, or partially_delivered /
    undelivered when they differ; before that the stage, or deferred while one waits."""
    assert message_status(stage, statuses) == expected

"""The table of a recipient's life: which change moves a recipient from where to where."""

from __future__ import annotations

import pytest

from shared.schemas import TRANSITIONS, WAITING, Change, RecipientStatus, moves_from


def test_every_change_starts_from_a_waiting_recipient_or_a_named_final_one() -> None:
    """Only feedback (over delivered) and an operator's retry (of failed) move a final
    recipient; nothing moves one that expired, was suppressed or complained."""
    for change, (sources, _) in TRANSITIONS.items():
        final = {s for s in sources if s.is_final}
        assert final <= {RecipientStatus.DELIVERED, RecipientStatus.FAILED}, change
    untouchable = {RecipientStatus.EXPIRED, RecipientStatus.SUPPRESSED, RecipientStatus.COMPLAINED}
    assert not untouchable & {s for sources, _ in TRANSITIONS.values() for s in sources}
    assert WAITING | {RecipientStatus.SCHEDULED} == {s for s in RecipientStatus if not s.is_final}


def test_a_move_the_table_does_not_have_is_refused() -> None:
    """A store write asking for a move the table lacks is a programming error, said at once."""
    assert moves_from(Change.FEEDBACK, RecipientStatus.BOUNCED) == [
        "deferred",
        "delivered",
        "queued",
    ]
    with pytest.raises(ValueError, match="no attempt makes a recipient complained"):
        moves_from(Change.ATTEMPT, RecipientStatus.COMPLAINED)

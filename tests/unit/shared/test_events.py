"""The events repository (shared/events.py) without a database: what it refuses at once."""

from __future__ import annotations

import pytest

from shared.events import Events


def test_a_retention_under_a_day_is_refused_at_construction() -> None:
    """``ttl_days=0`` raises when the repository is made, not at the first index or purge."""
    with pytest.raises(ValueError, match="ttl_days"):
        Events(None, ttl_days=0)  # type: ignore[arg-type]

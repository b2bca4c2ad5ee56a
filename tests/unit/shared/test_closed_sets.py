"""Closed sets are enums: a value outside them is refused where it is read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared import dkim
from shared.settings import VerpSettings
from shared.verp import VerpMode


def test_a_misspelt_verp_mode_stops_the_service(monkeypatch) -> None:
    """HATO_VERP_MODE=recpient was read as per-recipient VERP; now it is refused at start."""
    monkeypatch.setenv("HATO_VERP_MODE", "recpient")
    with pytest.raises(ValidationError, match="'recipient', 'message' or 'off'"):
        VerpSettings()
    monkeypatch.setenv("HATO_VERP_MODE", "message")
    assert VerpSettings().mode is VerpMode.MESSAGE


def test_a_stored_key_state_is_one_of_three() -> None:
    """Documents from before rotation (``active`` only) read as active or retired; a state
    that is none of the three is an error, not a key that never signs."""
    assert dkim.status({"active": True}) is dkim.KeyState.ACTIVE
    assert dkim.status({"active": False}) is dkim.KeyState.RETIRED
    assert dkim.status({"status": "pending"}) is dkim.KeyState.PENDING
    with pytest.raises(ValueError, match="'actve'"):
        dkim.status({"status": "actve"})

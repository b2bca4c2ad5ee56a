"""A service freezes what start-up made and collects the rest at its own thresholds."""

from __future__ import annotations

import gc

import pytest

from services.ingest.settings import IngestSettings
from shared.runtime import _settle_heap


@pytest.fixture
def restore_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_start_up_objects_are_frozen_and_thresholds_set(restore_gc) -> None:
    """Settling the heap freezes what start-up made, so the collector never walks it again, and sets
    the service's thresholds."""
    made_at_start = [{"i": i} for i in range(1000)]
    _settle_heap((15_000, 7, 9))
    assert gc.get_threshold() == (15_000, 7, 9)
    assert gc.get_freeze_count() >= len(made_at_start)


def test_thresholds_come_from_the_environment(monkeypatch) -> None:
    """The collector's thresholds are (20000, 20, 50) unless HATO_<SERVICE>_GC_THRESHOLD gives
    others, as a JSON list."""
    assert IngestSettings().gc_threshold == (20_000, 20, 50)
    monkeypatch.setenv("HATO_INGEST_GC_THRESHOLD", "[700, 10, 10]")
    assert IngestSettings().gc_threshold == (700, 10, 10)

"""The broker and the event store in memory, for the outbox tests (the testing kit's,
``shared/testing.py``)."""

from shared.testing import FakeBroker as RefusingBroker
from shared.testing import MemoryEvents as EventStore

__all__ = ["EventStore", "RefusingBroker"]

"""The ``hato`` admin command and the dev-mode helpers (the outbox sink)."""

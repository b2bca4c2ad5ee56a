"""Identifiers: time-ordered (UUIDv7), so ids sort by creation and index well."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> str:
    """A new UUIDv7 in its canonical text form."""
    return str(uuid_utils.uuid7())


# Event ids are derived, not drawn: the same state change, recorded again (a job redelivered
# after a crash, a result published twice), gets the same id, so it is stored once and
# receivers that drop ids they have seen see it once.
_EVENTS = uuid.UUID("6f0d3c52-9b1e-4c57-a7f4-2d8e5b1c9a03")


def event_id(type_: str, message_id: str | None, recipient_id: str | None, *step: object) -> str:
    """The id of the event ``type_`` of this message and recipient at this ``step`` (the
    delivery attempt, the queue a job died in ...)."""
    name = "|".join(str(p) for p in (type_, message_id or "", recipient_id or "", *step))
    return str(uuid.uuid5(_EVENTS, name))

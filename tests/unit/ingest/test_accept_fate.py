"""What acceptance writes for each recipient (services/ingest/accept.py ``Fate``,
``recipient_documents``, ``acceptance_events``): suppressed and sandboxed recipients end at
once with the reply that says why; a future ``send_at`` holds the rest as scheduled."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from services.ingest.accept import (
    Fate,
    Submission,
    acceptance_events,
    recipient_documents,
    summarize_headers,
)
from shared.directory import Identity
from shared.schemas import EventType, MessageStage, utcnow

RAW = b"From: Shop <orders@shop.test>\r\nSubject: Hi\r\n\r\nHello.\r\n"


def submission(**kw: object) -> Submission:
    sub = Submission(
        identity=Identity(tenant="acme", pool="default"),
        mail_from="orders@shop.test",
        recipients=("gone@example.com", "alice@example.com"),
        raw=RAW,
        headers=summarize_headers(RAW),
        door="smtp",
        client="127.0.0.1",
    )
    return replace(sub, **kw)  # type: ignore[arg-type]


def test_a_suppressed_recipient_ends_at_once_and_the_rest_is_queued() -> None:
    """The suppressed address is final with 550 5.7.1 and a suppressed event; the other is
    queued; both have their accepted event."""
    fate = Fate.of(submission(), {"gone@example.com"}, utcnow())
    gone, alice = recipient_documents(fate, "m1", "acme")
    assert (gone["status"], gone["reply"]["enhanced"]) == ("suppressed", "5.7.1")
    assert alice["status"] == "queued" and "reply" not in alice
    assert fate.stage is MessageStage.ACCEPTED and fate.to_send == fate.recipients[1:]
    kinds = sorted((e.type.value, e.address) for e in acceptance_events(submission(), fate, "m1"))
    assert kinds == [
        ("accepted", "alice@example.com"),
        ("accepted", "gone@example.com"),
        ("suppressed", "gone@example.com"),
    ]


def test_sandbox_mode_records_and_sends_nothing() -> None:
    """Sandboxed: every kept recipient final as sandboxed (250), nothing to send."""
    sub = submission(sandbox=True)
    fate = Fate.of(sub, set(), utcnow())
    assert fate.to_send == () and fate.stage is MessageStage.SANDBOXED
    assert {d["status"] for d in recipient_documents(fate, "m1", "acme")} == {"sandboxed"}


def test_a_future_send_at_holds_the_recipients_as_scheduled() -> None:
    """send_at an hour ahead: scheduled recipients and a scheduled event each naming the
    time; send_at already past: sent now."""
    now = utcnow()
    later = submission(send_at=now + timedelta(hours=1))
    fate = Fate.of(later, set(), now)
    assert fate.held and fate.stage is MessageStage.SCHEDULED
    assert {d["status"] for d in recipient_documents(fate, "m1", "acme")} == {"scheduled"}
    scheduled = [e for e in acceptance_events(later, fate, "m1") if e.type is EventType.SCHEDULED]
    assert len(scheduled) == 2 and scheduled[0].detail["send_at"] == later.send_at.isoformat()
    past = Fate.of(submission(send_at=now - timedelta(seconds=1)), set(), now)
    assert not past.held and past.stage is MessageStage.ACCEPTED

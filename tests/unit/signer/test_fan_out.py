"""Fan-out: one delivery job per destination domain, bounded in size."""

from __future__ import annotations

from services.signer.service import fan_out
from shared.schemas import Recipient, SignJob


def test_recipients_are_grouped_by_domain_and_chunked() -> None:
    """Recipients become one job per domain (case aside) of at most per_job recipients, each
    recipient in exactly one job, every job in the message's pool."""
    recipients = tuple(
        Recipient(id=f"r{i}", address=f"u{i}@{'a.test' if i % 2 else 'B.test'}") for i in range(7)
    )
    job = SignJob(
        message_id="m",
        tenant="t",
        mail_from="s@shop.test",
        from_domain="shop.test",
        recipients=recipients,
        pool="bulk",
    )
    jobs = fan_out(job, per_job=2)
    assert sorted((j.domain, len(j.recipients)) for j in jobs) == [
        ("a.test", 1),
        ("a.test", 2),
        ("b.test", 2),
        ("b.test", 2),
    ]
    assert {j.pool for j in jobs} == {"bulk"}
    assert sorted(r.id for j in jobs for r in j.recipients) == sorted(r.id for r in recipients)

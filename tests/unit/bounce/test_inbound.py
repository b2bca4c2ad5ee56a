"""The bounce listener's SMTP hooks (services/bounce/inbound.py): a transaction takes at most
MAX_RECIPIENTS return paths; DATA keeps the report and queues it before answering 250, and
answers 451 (keeping nothing) when it cannot be queued."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from services.bounce.inbound import (
    MAX_RECIPIENTS,
    RECIPIENT_OK,
    STORED,
    TOO_MANY_RECIPIENTS,
    TRY_LATER,
    BounceHandler,
)
from shared.errors import Unavailable
from shared.schemas import ReportJob
from shared.testing import FakeBroker
from shared.verp import Verp

VERP = Verp(b"inbound test key")


class FakeReports:
    """Kept reports in a dict."""

    def __init__(self) -> None:
        self.kept: dict[str, bytes] = {}

    async def keep(self, raw: bytes, *, peer: str, rcpt_tos: list[str]) -> str:
        report_id = f"r{len(self.kept) + 1}"
        self.kept[report_id] = raw
        return report_id

    async def forget(self, report_id: str) -> None:
        del self.kept[report_id]


class DownBroker(FakeBroker):
    async def publish(self, message: Any, payload: bytes = b"", **_: Any) -> None:
        raise Unavailable("publish to 'work' not confirmed")


def handler(broker: FakeBroker | None = None) -> tuple[BounceHandler, FakeReports, FakeBroker]:
    reports, broker = FakeReports(), broker or FakeBroker()
    h = BounceHandler(reports, broker, VERP, fbl_address="fbl@hato.test")  # type: ignore[arg-type]
    return h, reports, broker


def envelope(*rcpt_tos: str, content: bytes = b"") -> SimpleNamespace:
    return SimpleNamespace(rcpt_tos=list(rcpt_tos), rcpt_options=[], original_content=content)


SESSION = SimpleNamespace(peer=("127.0.0.1", 40000))


async def test_the_listener_takes_at_most_max_recipients_per_transaction() -> None:
    """Beyond MAX_RECIPIENTS return paths in one transaction: 452 4.5.3."""
    h, _, _ = handler()
    mail = envelope()
    replies = []
    for _ in range(MAX_RECIPIENTS + 2):
        token = VERP.for_recipient(str(uuid.uuid4()), "shop.test")
        replies.append(await h.handle_RCPT(None, None, mail, token, []))  # type: ignore[arg-type]
    assert replies == [str(RECIPIENT_OK)] * MAX_RECIPIENTS + [str(TOO_MANY_RECIPIENTS)] * 2
    assert str(TOO_MANY_RECIPIENTS).startswith("452 4.5.3")
    assert len(mail.rcpt_tos) == MAX_RECIPIENTS


async def test_data_keeps_the_report_and_queues_it_before_answering() -> None:
    """250 only once the raw report is kept and its job published, naming the report and
    the transaction's return paths."""
    h, reports, broker = handler()
    reply = await h.handle_DATA(None, SESSION, envelope("fbl@hato.test", content=b"arf"))  # type: ignore[arg-type]
    assert reply == str(STORED)
    assert reports.kept == {"r1": b"arf"}
    [(job, payload)] = broker.published
    assert job == ReportJob(report_id="r1", rcpt_tos=("fbl@hato.test",)) and payload == b""


async def test_data_answers_451_and_keeps_nothing_when_the_job_cannot_be_queued() -> None:
    """The broker refuses: 451 4.3.0, so the sender sends it again, and the copy nobody
    would read is deleted."""
    h, reports, _ = handler(DownBroker())
    reply = await h.handle_DATA(None, SESSION, envelope("fbl@hato.test", content=b"arf"))  # type: ignore[arg-type]
    assert reply == str(TRY_LATER)
    assert reports.kept == {}

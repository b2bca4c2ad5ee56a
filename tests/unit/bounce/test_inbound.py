"""What an inbound report may act on (services/bounce/inbound.py): a per-recipient return path
acts on its own recipient only, a per-message one on that message's recipients it names; a
transaction takes at most MAX_RECIPIENTS return paths."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from services.bounce.feedback import Addressee
from services.bounce.inbound import (
    MAX_RECIPIENTS,
    RECIPIENT_OK,
    TOO_MANY_RECIPIENTS,
    BounceHandler,
)
from shared.bounces.classify import Verdict
from shared.bounces.parse import Kind, Report
from shared.verp import Verp

VERP = Verp(b"inbound test key")


class FakeStore:
    """Messages and recipients in dicts, as the handler reads them."""

    def __init__(self) -> None:
        self.db = SimpleNamespace(reports=None)
        self.messages: dict[str, dict[str, Any]] = {}
        self.recipients: dict[str, dict[str, Any]] = {}

    def add(self, tenant: str, *addresses: str) -> tuple[str, dict[str, str]]:
        message_id = str(uuid.uuid4())
        self.messages[message_id] = {"_id": message_id, "tenant": tenant}
        ids = {}
        for address in addresses:
            rid = str(uuid.uuid4())
            self.recipients[rid] = {"_id": rid, "message_id": message_id, "address": address}
            ids[address] = rid
        return message_id, ids

    async def message(self, message_id: str) -> dict[str, Any] | None:
        return self.messages.get(message_id)

    async def recipient(self, recipient_id: str) -> dict[str, Any] | None:
        return self.recipients.get(recipient_id)

    async def recipient_by_address(self, message_id: str, address: str) -> dict[str, Any] | None:
        return next(
            (
                r
                for r in self.recipients.values()
                if r["message_id"] == message_id and r["address"] == address.lower()
            ),
            None,
        )


class FakeFeedback:
    def __init__(self) -> None:
        self.applied: list[tuple[Addressee, str]] = []

    async def apply(self, target: Addressee, verdict: Verdict, *, source: str) -> None:
        self.applied.append((target, verdict.recipient))


class FakeRules:
    def classify(self, report: Report) -> list[Verdict]:
        return [
            Verdict(f.recipient, "userunknown", True, True, "5.1.1", "550 5.1.1 unknown")
            for f in report.findings
        ]


def handler() -> tuple[BounceHandler, FakeStore, FakeFeedback]:
    store, feedback = FakeStore(), FakeFeedback()
    h = BounceHandler(store, VERP, FakeRules(), feedback, fbl_address="fbl@hato.test")  # type: ignore[arg-type]
    return h, store, feedback


def dsn(*addresses: str) -> Report:
    return Report(Kind.DSN, tuple(SimpleNamespace(recipient=a) for a in addresses))  # type: ignore[arg-type]


async def test_a_recipient_token_with_a_dsn_naming_others_acts_on_its_own_recipient() -> None:
    """The attack of issue 16: one recipient's return path and a DSN naming two others too
    bounces that one recipient, not the others."""
    h, store, feedback = handler()
    _, ids = store.add("acme", "me@ok.test", "v1@ok.test", "v2@ok.test")
    token = VERP.for_recipient(ids["me@ok.test"], "shop.test")
    await h.apply(token, dsn("v1@ok.test", "me@ok.test", "v2@ok.test"))
    assert [(t.recipient_id, t.address) for t, _ in feedback.applied] == [
        (ids["me@ok.test"], "me@ok.test")
    ]


async def test_a_recipient_token_with_a_dsn_naming_only_others_acts_on_nothing() -> None:
    """Several verdicts and none about the token's recipient: nothing is applied."""
    h, store, feedback = handler()
    _, ids = store.add("acme", "me@ok.test", "v1@ok.test", "v2@ok.test")
    await h.apply(
        VERP.for_recipient(ids["me@ok.test"], "shop.test"), dsn("v1@ok.test", "v2@ok.test")
    )
    assert feedback.applied == []


async def test_a_single_verdict_about_another_address_applies_to_the_tokens_recipient() -> None:
    """A report naming one address only (the mailbox it was forwarded to) bounces the
    token's own recipient, under its own address."""
    h, store, feedback = handler()
    _, ids = store.add("acme", "me@ok.test", "v1@ok.test")
    await h.apply(VERP.for_recipient(ids["me@ok.test"], "shop.test"), dsn("v1@ok.test"))
    assert [(t.recipient_id, t.address) for t, _ in feedback.applied] == [
        (ids["me@ok.test"], "me@ok.test")
    ]


async def test_a_message_token_acts_on_the_recipients_of_its_message_it_names() -> None:
    """Per-message VERP: the named recipients of that message, none of another message."""
    h, store, feedback = handler()
    message_id, ids = store.add("acme", "a@ok.test", "b@ok.test", "c@ok.test")
    store.add("rival", "x@ok.test")
    await h.apply(
        VERP.for_message(message_id, "shop.test"), dsn("a@ok.test", "c@ok.test", "x@ok.test")
    )
    assert sorted(t.recipient_id for t, _ in feedback.applied) == sorted(
        [ids["a@ok.test"], ids["c@ok.test"]]
    )
    assert all(t.tenant == "acme" for t, _ in feedback.applied)


async def test_a_forged_or_expired_token_acts_on_nothing() -> None:
    """A token under another key names nothing."""
    h, store, feedback = handler()
    _, ids = store.add("acme", "me@ok.test")
    await h.apply(Verp(b"other").for_recipient(ids["me@ok.test"], "shop.test"), dsn("me@ok.test"))
    assert feedback.applied == []


async def test_the_listener_takes_at_most_max_recipients_per_transaction() -> None:
    """Beyond MAX_RECIPIENTS return paths in one transaction: 452 4.5.3."""
    h, store, _ = handler()
    envelope = SimpleNamespace(rcpt_tos=[], rcpt_options=[])
    replies = []
    for _ in range(MAX_RECIPIENTS + 2):
        _, ids = store.add("acme", "me@ok.test")
        token = VERP.for_recipient(ids["me@ok.test"], "shop.test")
        replies.append(await h.handle_RCPT(None, None, envelope, token, []))  # type: ignore[arg-type]
    assert replies == [str(RECIPIENT_OK)] * MAX_RECIPIENTS + [str(TOO_MANY_RECIPIENTS)] * 2
    assert str(TOO_MANY_RECIPIENTS).startswith("452 4.5.3")
    assert len(envelope.rcpt_tos) == MAX_RECIPIENTS

"""One idempotency flow for the HTTP and AMQP doors (``services.ingest.idempotency``), with an
in-memory key store, and the AMQP door's use of it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from services.ingest.amqp import SubmitHandler
from services.ingest.idempotency import Answer, once
from services.ingest.send import Refused
from shared.broker import Delivery
from shared.directory import IdempotencyConflict, Identity


class FakeKeys:
    """``shared.directory.Idempotency`` in a dict: a claim is pending until finished."""

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], dict[str, Any]] = {}

    async def begin(self, tenant: str, key: str, request_hash: str) -> dict[str, Any] | None:
        doc = self.kept.get((tenant, key))
        if doc is None:
            self.kept[(tenant, key)] = {"request_hash": request_hash, "state": "pending"}
            return None
        if doc["request_hash"] != request_hash:
            raise IdempotencyConflict("mismatch")
        if doc["state"] != "done":
            raise IdempotencyConflict("pending")
        return doc

    async def finish(self, tenant: str, key: str, status: int, body: Any) -> None:
        self.kept[(tenant, key)].update(state="done", status=status, body=body)

    async def abandon(self, tenant: str, key: str) -> None:
        if self.kept.get((tenant, key), {}).get("state") == "pending":
            del self.kept[(tenant, key)]


class Refusal(Exception):
    """What the tests' work raises for an answer to keep."""


def kept(exc: Exception) -> Answer | None:
    return Answer(403, {"detail": str(exc)}) if isinstance(exc, Refusal) else None


async def test_a_repeat_gets_the_first_answer_without_running_again() -> None:
    """The same key and fingerprint: the first answer again, replayed, the work run once."""
    keys, runs = FakeKeys(), []

    async def work() -> Answer:
        runs.append(1)
        return Answer(202, {"id": "m1"})

    first = await once(keys, "acme", "k", "h", work, kept=kept)
    again = await once(keys, "acme", "k", "h", work, kept=kept)
    assert first == Answer(202, {"id": "m1"})
    assert again == Answer(202, {"id": "m1"}, replayed=True)
    assert runs == [1]


async def test_a_kept_refusal_is_raised_and_replayed() -> None:
    """A failure ``kept`` calls the answer is raised, and a repeat gets it as the answer."""
    keys = FakeKeys()

    async def work() -> Answer:
        raise Refusal("not yours")

    with pytest.raises(Refusal):
        await once(keys, "acme", "k", "h", work, kept=kept)
    again = await once(keys, "acme", "k", "h", work, kept=kept)
    assert again == Answer(403, {"detail": "not yours"}, replayed=True)


async def test_another_failure_releases_the_key() -> None:
    """A failure that is not the answer (a retry may overcome it) frees the key at once: the
    next request under it runs."""
    keys, calls = FakeKeys(), []

    async def work() -> Answer:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("store gone")
        return Answer(202, {"id": "m2"})

    with pytest.raises(ConnectionError):
        await once(keys, "acme", "k", "h", work, kept=kept)
    assert await once(keys, "acme", "k", "h", work, kept=kept) == Answer(202, {"id": "m2"})


async def test_another_request_under_the_key_is_a_conflict() -> None:
    """The key with another fingerprint: IdempotencyConflict("mismatch"), nothing run."""
    keys = FakeKeys()

    async def work() -> Answer:
        return Answer(202, {})

    await once(keys, "acme", "k", "h", work, kept=kept)

    async def never() -> Answer:
        raise AssertionError("ran")

    with pytest.raises(IdempotencyConflict) as conflict:
        await once(keys, "acme", "k", "other", never, kept=kept)
    assert conflict.value.kind == "mismatch"


class FlakySender:
    """Fails the first message it is given with an unexpected error, accepts the rest."""

    def __init__(self, first: Exception) -> None:
        self.first: Exception | None = first
        self.sent = 0

    async def send(self, identity: Identity, message: Any) -> dict[str, Any]:
        if self.first is not None:
            first, self.first = self.first, None
            raise first
        self.sent += 1
        return {"id": f"m{self.sent}", "recipients": []}


def _handler(sender: FlakySender) -> SubmitHandler:
    identity = Identity(tenant="acme", pool="default")

    async def api_key_identity(token: str) -> Identity | None:
        return identity if token == "hato_good" else None

    store = SimpleNamespace(
        directory=SimpleNamespace(api_key_identity=api_key_identity), idempotency=FakeKeys()
    )
    broker = SimpleNamespace(settings=SimpleNamespace(prefix="t"))
    return SubmitHandler(store, broker, sender)  # type: ignore[arg-type]


def _submission(message_id: str) -> Delivery:
    body = {
        "api_key": "hato_good",
        "message": {"from": "a@shop.test", "to": ["b@ok.test"], "text": "hi"},
    }
    return Delivery(message=body, payload=b"", attempt=1, queue="submit", message_id=message_id)


async def test_an_amqp_submission_that_failed_unexpectedly_runs_again_at_once() -> None:
    """A submission whose first try died of an unexpected error is sent on its redelivery,
    not held back as "being processed" until the key's lease runs out."""
    sender = FlakySender(ConnectionResetError("broker gone"))
    handler = _handler(sender)
    with pytest.raises(ConnectionResetError):
        await handler.handle(_submission("amqp-1"))
    await handler.handle(_submission("amqp-1"))
    await handler.handle(_submission("amqp-1"))  # a duplicate: replayed, not sent again
    assert sender.sent == 1


async def test_an_amqp_refusal_is_kept_for_a_duplicate() -> None:
    """A refused submission's answer is kept: its duplicate is answered, not sent."""
    sender = FlakySender(Refused(403, "not a sending address of this tenant"))
    handler = _handler(sender)
    handler._refuse = _no_event  # type: ignore[method-assign]  # no timeline in a unit test
    with pytest.raises(Exception, match="403"):
        await handler.handle(_submission("amqp-2"))
    await handler.handle(_submission("amqp-2"))
    assert sender.sent == 0


async def _no_event(delivery: Delivery, identity: Identity, status: int, detail: str) -> Exception:
    return Exception(f"{status}: {detail}")

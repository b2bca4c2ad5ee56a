"""Retrying a dead job on the real RabbitMQ and store: its recipients wait again before the
job is back in its queue, and stay failed when it cannot be put back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared import schemas
from shared.broker import QUEUE_HEADER, REASON_HEADER, Broker, Queue, Revival, dead_reply
from shared.errors import Unavailable
from shared.ids import new_id
from shared.schemas import DeliveryJob, Recipient, utcnow
from shared.settings import BrokerSettings
from shared.store import Store

pytestmark = pytest.mark.integration

QUEUE = "deliver.retrytest"


@pytest.fixture
async def broker(broker_settings: BrokerSettings) -> AsyncIterator[Broker]:
    b = Broker(broker_settings, name="retry-test")
    await b.connect()
    channel = b._channel()
    await channel.declare_queue(b.full(QUEUE), durable=True)
    while await b.dead_letters(act=_answer("drop")):  # another test's dead jobs
        pass
    yield b
    await channel.queue_delete(b.full(QUEUE))
    await b.drain(1)
    await b.close()


def _answer(decision: str):
    async def act(_message: Any) -> str:
        return decision

    return act


async def _dead_job(broker: Broker, store: Store) -> tuple[str, str]:
    """A delivery job dead in ``QUEUE`` and its recipient failed with it, as the bounce
    service leaves them; (message id, recipient id)."""
    message_id, recipient_id = new_id(), new_id()
    await store.messages.insert_message(
        {"_id": message_id, "tenant": "acme", "created_at": utcnow()},
        [
            {
                "_id": recipient_id,
                "message_id": message_id,
                "tenant": "acme",
                "address": "b@ok.test",
                "status": "queued",
                "attempts": 0,
            }
        ],
    )
    reply = dead_reply(broker.full(QUEUE), "handler failed 2 times")
    await store.messages.fail_dead_lettered(message_id, [recipient_id], reply)
    job = DeliveryJob(
        message_id=message_id,
        tenant="acme",
        mail_from="a@shop.test",
        from_domain="shop.test",
        recipients=(Recipient(id=recipient_id, address="b@ok.test"),),
        pool="default",
        domain="ok.test",
    )
    await broker._publish(
        broker._channel().default_exchange,
        broker.full(Queue.DEAD),
        schemas.encode(job, b"signed\r\n"),
        headers={QUEUE_HEADER: broker.full(QUEUE), REASON_HEADER: "handler failed 2 times"},
        message_id=message_id,
    )
    return message_id, recipient_id


async def _status(store: Store, message_id: str) -> str:
    (recipient,) = await store.messages.recipients(message_id)
    return str(recipient["status"])


async def test_a_retried_jobs_recipients_wait_again_before_the_job_is_back(
    broker: Broker, store: Store
) -> None:
    """When the job reaches its queue again its recipient waits already: a consumer taking
    it at once finds the recipient to deliver, not a failed one it would leave for ever."""
    message_id, _ = await _dead_job(broker, store)
    seen: list[tuple[int | None, str]] = []

    class Watching(Revival):
        async def revive(self, entry: Any) -> None:
            await super().revive(entry)
            seen.append((await broker.depth(QUEUE), await _status(store, message_id)))

    done = await broker.dead_letters(act=_answer("retry"), revival=Watching(store.messages))
    assert [e["done"] for e in done] == ["retry"]
    assert seen == [(0, "queued")]  # revived while the queue was still empty
    assert await broker.depth(QUEUE) == 1
    assert await _status(store, message_id) == "queued"


async def test_a_job_that_cannot_be_put_back_leaves_its_recipients_failed(
    broker: Broker, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker refuses the publish: the job stays dead and its recipient failed, with the
    reply it had, so a later retry or drop finds both as they were."""
    message_id, _ = await _dead_job(broker, store)

    async def refused(*_args: Any, **_kwargs: Any) -> None:
        raise Unavailable("broker refused the publish")

    monkeypatch.setattr(broker, "_publish", refused)
    with pytest.raises(Unavailable):
        await broker.dead_letters(act=_answer("retry"), revival=Revival(store.messages))
    monkeypatch.undo()
    (recipient,) = await store.messages.recipients(message_id)
    assert recipient["status"] == "failed" and recipient["dead_lettered"] is True
    assert recipient["reply"]["text"].endswith("handler failed 2 times")
    assert [e["message_id"] for e in await broker.dead_letters()] == [message_id]

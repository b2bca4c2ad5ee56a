"""The HTTP door's batch: every message gets its own result, even one whose handling fails
unexpectedly — the app in-process over ASGI, on the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.ingest.accept import Accepted, Submission
from services.ingest.http import create_app
from services.ingest.http.sending import BATCH_ITEM_FAILED
from services.ingest.policy import RelayPolicy
from services.ingest.send import DoorLimits
from shared.ids import new_id
from shared.schemas import Recipient
from shared.settings import StoreSettings
from shared.store import Store
from tests.conftest import MONGODB_URL, unique

pytestmark = pytest.mark.integration


class Exploding:
    """An acceptor that accepts everything but a message whose subject is "boom"."""

    def __init__(self) -> None:
        self.accepted: list[Submission] = []

    async def accept(self, sub: Submission) -> Accepted:
        if sub.headers.subject == "boom":
            raise RuntimeError("a bug")
        self.accepted.append(sub)
        return Accepted(new_id(), tuple(Recipient(id=new_id(), address=a) for a in sub.recipients))


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=MONGODB_URL, database=unique("batch"), timeout=3))
    await store.ensure_indexes()
    yield store
    await store.client.drop_database(store.settings.database)
    await store.close()


async def test_one_failing_message_does_not_fail_the_batch(store: Store) -> None:
    """A message whose handling raises gets its own 500 while the others are accepted; the same
    Idempotency-Key replays the answer and sends nothing twice."""
    await store.directory.upsert_tenant("acme")
    await store.directory.upsert_domain("shop.test", tenant="acme", verified=True)
    _, key = await store.directory.add_api_key("acme")
    policy = RelayPolicy()
    await policy.refresh(store)
    acceptor = Exploding()
    app = create_app(
        store,
        operator_token="",
        acceptor=acceptor,
        policy=policy,
        limits=DoorLimits(1024 * 1024, 10),
    )
    messages = [
        {"from": "orders@shop.test", "to": [f"r{i}@ok.test"], "subject": s, "text": "x"}
        for i, s in enumerate(["one", "boom", "three"])
    ]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hato") as http:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "b1"}
        answer = await http.post("/v1/messages/batch", json={"messages": messages}, headers=headers)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["status"] for r in results] == [202, 500, 202]
        assert results[1]["detail"] == BATCH_ITEM_FAILED
        again = await http.post("/v1/messages/batch", json={"messages": messages}, headers=headers)
        assert again.json() == answer.json()  # the retry replays: nothing is sent twice
    assert len(acceptor.accepted) == 2

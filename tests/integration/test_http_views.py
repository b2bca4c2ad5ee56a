"""The HTTP door's typed answers leave the views as they were: a message read through
``GET /v1/messages/{id}`` and listed through ``GET /v1/messages`` has every field its view has
(one a later version adds included), none it lacks, and each value as stored — the app
in-process over ASGI, on the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import TypeAdapter

from services.ingest.http import create_app
from shared.ids import new_id
from shared.schemas import Event, EventType, Reply
from shared.settings import StoreSettings
from shared.store import Store
from shared.views import message_view, with_status
from tests.conftest import MONGODB_URL, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=MONGODB_URL, database=unique("views"), timeout=3))
    await store.ensure_indexes()
    yield store
    await store.client.drop_database(store.settings.database)
    await store.close()


async def test_typed_answers_are_the_views_as_they_were(store: Store) -> None:
    """The message and its listing answer exactly the views, serialized as before the answers
    had models (a deferral's next_attempt_at string as written, a field without a model)."""
    await store.directory.upsert_tenant("acme")
    _, key = await store.directory.add_api_key("acme")
    message_id, recipient_id, now = new_id(), new_id(), datetime.now(UTC)
    await store.db.messages.insert_one(
        {
            "_id": message_id,
            "tenant": "acme",
            "status": "accepted",
            "door": "http",
            "mail_from": "orders@shop.test",
            "subject": "Order 7",
            "size": 512,
            "pool": "default",
            "recipient_count": 1,
            "tags": ["order"],
            "metadata": {"order": "7"},
            "created_at": now,
            "later_field": {"kept": True},
        }
    )
    await store.db.recipients.insert_one(
        {
            "_id": recipient_id,
            "message_id": message_id,
            "tenant": "acme",
            "address": "bob@ok.test",
            "domain": "ok.test",
            "status": "deferred",
            "attempts": 1,
            "created_at": now,
            "updated_at": now,
        }
    )
    await store.events.write(
        [
            Event(
                id=new_id(),
                type=EventType.DEFERRED,
                message_id=message_id,
                tenant="acme",
                recipient_id=recipient_id,
                address="bob@ok.test",
                reply=Reply(code=451, enhanced="4.7.1", text="try later"),
                detail={
                    "destination": "mx.ok.test",
                    "next_attempt_at": (now + timedelta(minutes=5)).isoformat(),
                },
            )
        ]
    )
    as_before = TypeAdapter(dict).dump_python  # what a route typed `-> dict` answered
    app = create_app(store, operator_token="")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hato") as http:
        headers = {"Authorization": f"Bearer {key}"}
        one = await http.get(f"/v1/messages/{message_id}", headers=headers)
        listed = await http.get("/v1/messages", headers=headers)
    assert one.status_code == 200, one.text
    assert one.json() == as_before(await message_view(store, message_id), mode="json")
    assert one.json()["recipients"][0]["next_attempt_at"].endswith("+00:00")
    docs = await store.messages.list_messages("acme")
    assert listed.json() == as_before(
        {"messages": await with_status(store, docs), "next": None}, mode="json"
    )

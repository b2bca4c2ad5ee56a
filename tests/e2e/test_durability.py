"""No 250 for a message that is not durable: with the database stopped or the broker
unreachable, SMTP answers 451 4.3.0 and nothing is published."""

from __future__ import annotations

import aio_pika
import httpx
import pytest

from services.ingest import replies
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, TcpProxy, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, provision, unique
from tests.helpers.ferretdb import PrivateFerretDB
from tests.helpers.smtp import send
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


async def queued(prefix: str, queue: str) -> int:
    """Messages waiting in a queue, asked of the real broker directly."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        q = await channel.declare_queue(f"{prefix}.{queue}", passive=True)
        return q.declaration_result.message_count


def ingest_env(prefix: str, database: str, master_key: str, **extra: str) -> dict[str, str]:
    return {
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": prefix,
        "HATO_AMQP_QUEUE_EXPIRES": "600000",
        "HATO_MONGODB_URL": MONGODB_URL,
        "HATO_MONGODB_DATABASE": database,
        "HATO_MONGODB_TIMEOUT": "1",
        "HATO_AMQP_PUBLISH_TIMEOUT": "2",
        "HATO_MASTER_KEY": master_key,
        "HATO_INGEST_SMTP_PORT": str(free_port()),
        "HATO_INGEST_HTTP_PORT": str(free_port()),
        **extra,
    }


async def test_database_stopped_means_451_and_nothing_published(
    tmp_path, master_key, dkim_key
) -> None:
    """Kill the MongoDB-compatible server under a running ingest: SMTP gets 451 4.3.0 and HTTP
    a 503 problem, nothing is queued; with the server back, mail is accepted again."""
    db = PrivateFerretDB(tmp_path / "ferretdb")
    await db.start()
    prefix, database = unique("dur"), unique("dur")
    store = Store(StoreSettings(url=db.url, database=database, timeout=2))
    await provision(store, master_key, dkim_key)
    _, key = await store.directory.add_api_key("acme")
    env = ingest_env(prefix, database, master_key, HATO_MONGODB_URL=db.url)
    stack = Stack(env=env, log_dir=tmp_path)
    await stack.start("ingest")
    port = int(env["HATO_INGEST_SMTP_PORT"])
    api = f"http://127.0.0.1:{env['HATO_INGEST_HTTP_PORT']}/v1/messages"
    body = {"from": "orders@shop.test", "to": ["bob@ok.test"], "subject": "s", "text": "t"}
    auth = {"Authorization": f"Bearer {key}"}
    try:
        assert (await send(port)).code == 250
        async with httpx.AsyncClient(timeout=30) as http:
            assert (await http.post(api, json=body, headers=auth)).status_code == 202
        assert await queued(prefix, "sign") == 2

        await db.stop()
        outcome = await send(port)
        assert (outcome.code, outcome.stage) == (replies.NOT_DURABLE.code, "data")
        assert outcome.message.startswith(replies.NOT_DURABLE.enhanced)
        async with httpx.AsyncClient(timeout=30) as http:
            # the API key is cached, so this reaches the accept step and its write fails
            refused = await http.post(api, json=body, headers=auth)
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert await queued(prefix, "sign") == 2

        await db.start()
        outcome = await eventually(lambda: send(port), until=lambda o: o.code == 250)
        assert await queued(prefix, "sign") == 3
        assert await store.messages.message(outcome.queued_id) is not None
    finally:
        assert await stack.stop_all() == {"ingest": 0}
        await store.close()
        await db.stop()


async def test_broker_unreachable_means_451_and_no_state_left(
    tmp_path, store, master_key, dkim_key
) -> None:
    """Cut the connection to RabbitMQ under a running ingest: the client gets 451 4.3.0, the
    message's state is removed, nothing is queued; once the broker is reachable again the
    next mail is accepted."""
    await provision(store, master_key, dkim_key)
    proxy = TcpProxy("127.0.0.1", 5672)
    await proxy.start()
    prefix = unique("dur")
    env = ingest_env(
        prefix,
        store.settings.database,
        master_key,
        HATO_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
    )
    stack = Stack(env=env, log_dir=tmp_path)
    ingest = await stack.start("ingest")
    port = int(env["HATO_INGEST_SMTP_PORT"])
    try:
        await proxy.cut()
        outcome = await send(port)
        assert (outcome.code, outcome.stage) == (replies.NOT_DURABLE.code, "data")
        assert await store.db.messages.count_documents({}) == 0
        assert await store.db.recipients.count_documents({}) == 0
        assert await queued(prefix, "sign") == 0

        await proxy.restore()
        await ingest.wait_ready()
        outcome = await eventually(lambda: send(port), until=lambda o: o.code == 250)
        assert await queued(prefix, "sign") == 1
        assert await store.db.messages.count_documents({}) == 1
    finally:
        assert await stack.stop_all() == {"ingest": 0}
        await proxy.cut()

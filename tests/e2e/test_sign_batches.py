"""Sign batches on the real broker and database, with the services as processes: mail accepted
together goes to the signer in fewer broker messages than mails, and a signer killed with
SIGKILL in the middle of the batches loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import signal

import aio_pika
import aio_pika.abc
import aio_pika.exceptions
import httpx
import pytest

from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, provision, unique
from tests.e2e.test_durability import ingest_env, queued
from tests.helpers.sinks import Sink
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    """Messages in ``queue`` (0 while it does not exist yet)."""
    try:
        q = await channel.declare_queue(queue, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        await channel.reopen()
        return 0
    return q.declaration_result.message_count or 0


MAILS = 60


async def test_a_signer_killed_amid_sign_batches_loses_and_duplicates_nothing(
    tmp_path, master_key, dkim_key
) -> None:
    """Sixty mails accepted at once wait in fewer sign messages than mails; the signer is
    killed as soon as its first delivery job is out, while it holds the other batches. Started
    again, every recipient is delivered once, and each message has its accepted, signed and
    delivered events once each, in that order."""
    prefix, database = unique("batch"), unique("batch")
    store = Store(StoreSettings(url=MONGODB_URL, database=database))
    await provision(store, master_key, dkim_key)
    _, key = await store.directory.add_api_key("acme")
    sink = await Sink(host="127.0.0.2").start()
    env = ingest_env(
        prefix,
        database,
        master_key,
        HATO_DISPATCHER_ROUTES=f"*={sink.address}",
        HATO_BOUNCE_SMTP_PORT=str(free_port()),
    )
    http_port = env["HATO_INGEST_HTTP_PORT"]
    stack = Stack(env=env, log_dir=tmp_path)
    try:
        await stack.start("ingest")
        async with httpx.AsyncClient(timeout=30) as http:

            async def one(i: int) -> str:
                r = await http.post(
                    f"http://127.0.0.1:{http_port}/v1/messages",
                    json={
                        "from": "orders@shop.test",
                        "to": [f"b{i}@ok.test"],
                        "subject": f"batch {i}",
                        "text": "x" * 2000,
                    },
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert r.status_code == 202, r.text
                return r.json()["id"]

            message_ids = await asyncio.gather(*map(one, range(MAILS)))
        waiting = await queued(prefix, "sign")
        assert 0 < waiting < MAILS, f"{waiting} sign messages for {MAILS} mails"

        async with await aio_pika.connect(AMQP_URL) as connection:
            channel = await connection.channel()
            signer = await stack.start("signer", wait=False)
            async with asyncio.timeout(30):  # asked back to back: the kill lands amid batches
                while not await depth(channel, f"{prefix}.deliver.default"):
                    pass
            signer.process.send_signal(signal.SIGKILL)
            await signer.process.wait()
            print(f"killed with {await depth(channel, f'{prefix}.sign')} sign messages left")

        await stack.start("signer")
        await stack.start("dispatcher")
        await stack.start("bounce")
        await sink.wait_for(MAILS, timeout=60)
        await asyncio.sleep(1)  # a second copy would arrive now
        arrived = sorted(r.rcpt_tos[0] for r in sink.received)
        assert arrived == sorted(f"b{i}@ok.test" for i in range(MAILS))

        for message_id in message_ids:
            events = await eventually(
                lambda m=message_id: store.events.of_message(m),
                until=lambda es: any(e["type"] == "delivered" for e in es),
                timeout=30,
            )
            assert [e["type"] for e in events] == ["accepted", "signed", "delivered"]
    finally:
        await stack.stop_all()
        await sink.stop()
        await store.client.drop_database(database)
        await store.close()

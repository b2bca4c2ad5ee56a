"""The AMQP submit door: platform teams publish JSON straight to RabbitMQ."""

from __future__ import annotations

import asyncio
import base64
import json

import aio_pika
import pytest

from shared.broker import REASON_HEADER
from shared.teams import DIRECT_REPLY_TO
from tests.conftest import AMQP_URL, TENANT, unique
from tests.e2e.conftest import Api, delivered_to, message
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


class Publisher:
    """A platform team's client: publishes to the submit exchange and reads its replies on
    RabbitMQ's direct reply-to (or, given ``reply_to``, on a queue of that name)."""

    def __init__(self, prefix: str, *, reply_to: str | None = None) -> None:
        self.prefix = prefix
        self.reply_to = reply_to or DIRECT_REPLY_TO
        self.answers: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()

    async def __aenter__(self) -> Publisher:
        self.connection = await aio_pika.connect(AMQP_URL)
        self.channel = await self.connection.channel()
        if self.reply_to == DIRECT_REPLY_TO:  # consumed, no-ack, before publishing
            replies = await self.channel.declare_queue(DIRECT_REPLY_TO, passive=True)
        else:
            replies = await self.channel.declare_queue(self.reply_to, auto_delete=True)
        await replies.consume(self.answers.put, no_ack=True)
        self.exchange = await self.channel.get_exchange(f"{self.prefix}.submit")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.connection.close()

    async def submit(self, body: bytes | dict, *, message_id: str | None = None) -> str:
        correlation = unique("c")
        await self.exchange.publish(
            aio_pika.Message(
                body if isinstance(body, bytes) else json.dumps(body).encode(),
                content_type="application/json",
                message_id=message_id,
                reply_to=self.reply_to,
                correlation_id=correlation,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key="",
        )
        return correlation

    async def reply(self, correlation: str) -> dict:
        m = await asyncio.wait_for(self.answers.get(), 20)
        assert m.correlation_id == correlation
        return json.loads(m.body)

    async def dead(self) -> aio_pika.abc.AbstractIncomingMessage:
        queue = await self.channel.get_queue(f"{self.prefix}.dead")
        return await eventually(
            lambda: queue.get(fail=False, no_ack=True), until=lambda m: m is not None
        )


async def test_a_published_message_is_accepted_answered_and_delivered(api: Api) -> None:
    """A team's JSON message published to the broker is answered 202 with its recipients on the
    reply queue, delivered, and recorded as come through the AMQP door."""
    async with Publisher(api.prefix) as team:
        c = await team.submit({"api_key": api.key, "message": message(to=["amqp@ok.test"])})
        answer = await team.reply(c)
        assert answer["status"] == 202 and answer["recipients"][0]["address"] == "amqp@ok.test"
        await delivered_to(api, "amqp@ok.test")
        state = await api.store.messages.message(answer["id"])
        assert state["door"] == "amqp"


async def test_raw_variant_and_message_id_deduplication(api: Api) -> None:
    """The raw form works; the same AMQP message_id twice sends once and answers twice alike."""
    raw = b"From: orders@shop.test\r\nTo: amqp-raw@ok.test\r\nSubject: x\r\n\r\nhello\r\n"
    body = {
        "api_key": api.key,
        "raw": {"to": ["amqp-raw@ok.test"], "message": base64.b64encode(raw).decode()},
    }
    mid = unique("m")
    async with Publisher(api.prefix) as team:
        first = await team.reply(await team.submit(body, message_id=mid))
        second = await team.reply(await team.submit(body, message_id=mid))
    assert first["status"] == 202 and first == second
    await delivered_to(api, "amqp-raw@ok.test")
    await asyncio.sleep(0.3)
    assert sum("amqp-raw@ok.test" in r.rcpt_tos for r in api.sink.received) == 1


async def test_invalid_submissions_are_dead_lettered_with_a_reason(api: Api) -> None:
    """Not JSON; a bad key; a valid key with an invalid message (which also yields a `failed`
    event for the tenant): each lands in the dead-letter queue with the reason."""
    async with Publisher(api.prefix) as team:
        await team.submit(b"{not json")
        dead = await team.dead()
        assert "undecodable: not JSON" in dead.headers[REASON_HEADER]

        c = await team.submit({"api_key": "hato_bad", "message": message()})
        assert (await team.reply(c))["status"] == 401
        assert "api_key" in (await team.dead()).headers[REASON_HEADER]

        tag = unique("bad")
        c = await team.submit({"api_key": api.key, "message": message(subject=tag, surprise=1)})
        answer = await team.reply(c)
        assert answer["status"] == 400 and "surprise" in answer["detail"]
        assert "400" in (await team.dead()).headers[REASON_HEADER]

        c = await team.submit({"api_key": api.key, "message": message(**{"from": "x@rival.test"})})
        assert (await team.reply(c))["status"] == 403
        await team.dead()

    failed = await eventually(
        lambda: api.store.db.events.find({"type": "failed", "tenant": "acme"}).to_list(),
        until=lambda es: len(es) >= 2,
    )
    assert any("surprise" in e["detail"]["reason"] for e in failed)


async def test_answers_go_to_a_queue_of_the_tenants_team(api: Api) -> None:
    """A reply_to named <prefix>.team.<tenant>.* of the API key's tenant gets the answer."""
    own = f"{api.prefix}.team.{TENANT}.{unique('replies')}"
    async with Publisher(api.prefix, reply_to=own) as team:
        c = await team.submit({"api_key": api.key, "message": message(to=["amqp-own@ok.test"])})
        assert (await team.reply(c))["status"] == 202


async def test_no_answer_goes_to_a_queue_that_is_not_the_callers(api: Api) -> None:
    """reply_to naming another tenant's team queue, or any other queue: the submission is
    accepted, but ingest publishes nothing there (it would be writing into a queue the caller
    may not write to) and logs why; a bad API key is answered on direct reply-to only."""
    foreign = (f"{api.prefix}.team.rival.{unique('inbox')}", unique("plain"))
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        queues = [await channel.declare_queue(name, auto_delete=True) for name in foreign]
        exchange = await channel.get_exchange(f"{api.prefix}.submit")
        addresses = []
        for name in foreign:
            address = f"{unique('amqp-foreign')}@ok.test"
            addresses.append(address)
            for body in (
                {"api_key": api.key, "message": message(to=[address])},
                {"api_key": "hato_bad", "message": message()},
            ):
                await exchange.publish(
                    aio_pika.Message(json.dumps(body).encode(), reply_to=name, correlation_id="x"),
                    routing_key="",
                )
        for address in addresses:
            await delivered_to(api, address)
        await eventually(
            lambda: asyncio.sleep(0, api.stack.processes["ingest"].log()),
            until=lambda log: log.count("no answer") >= 4,
        )
        for queue in queues:
            assert await queue.get(no_ack=True, fail=False) is None, queue.name

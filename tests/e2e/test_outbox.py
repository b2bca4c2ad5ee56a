"""The job is the outbox, on the real broker and database with the services as processes:
RabbitMQ refuses a service's event publishes (its user may not write to the events exchange,
so the broker closes the channel, as it would for any refused publish), and the events are
published all the same once the job comes back — also when the dispatcher is killed with
SIGKILL between its database write and the publish. Ingest answers 451 while its events are
refused, and 250 only once they are confirmed."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import httpx
import pytest

from hato.amqp_users import endpoint
from shared.schemas import Event, EventType, decode
from shared.settings import BrokerSettings, StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, MONGODB_URL, provision, unique
from tests.helpers.sinks import Sink
from tests.helpers.smtp import send
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


@dataclass
class Users:
    """RabbitMQ users of the test, made and changed through the management API."""

    http: httpx.AsyncClient
    base: str
    made: list[str]

    async def make(self, name: str, password: str) -> None:
        answer = await self.http.put(
            f"{self.base}/api/users/{name}", json={"password": password, "tags": ""}
        )
        answer.raise_for_status()
        self.made.append(name)

    async def may_publish_events(self, name: str, prefix: str, allowed: bool) -> None:
        # Erlang regexes: every resource but the events exchange, or everything.
        write = ".*" if allowed else f"^(?!{prefix}\\.events$).*"
        answer = await self.http.put(
            f"{self.base}/api/permissions/%2F/{name}",
            json={"configure": ".*", "write": write, "read": ".*"},
        )
        answer.raise_for_status()


@dataclass
class Outbox:
    store: Store
    stack: Stack
    sink: Sink
    smtp_port: int
    prefix: str
    users: Users
    events: aio_pika.abc.AbstractQueue
    urls: dict[str, str]

    async def heard(self) -> list[Event]:
        """Every event published so far (taken from the test's own queue on the exchange)."""
        out = []
        while (message := await self.events.get(fail=False, no_ack=True)) is not None:
            out.append(decode(message.body)[0])
        return out


@pytest.fixture(scope="module")
async def outbox(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Outbox]:
    database, prefix = unique("outbox"), unique("outbox")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    sink = await Sink(host="127.0.0.2").start()
    where = endpoint(BrokerSettings(url=AMQP_URL))
    http = httpx.AsyncClient(auth=(where.user, where.password), timeout=10)
    try:
        await http.get(f"{where.base}/api/overview")
    except httpx.HTTPError as exc:
        pytest.skip(f"no RabbitMQ management API: {exc!r}")
    users = Users(http, where.base, [])
    urls = {}
    for service in ("ingest", "dispatcher"):
        name, password = f"{prefix}-{service}", unique("pw")
        await users.make(name, password)
        await users.may_publish_events(name, prefix, allowed=False)
        urls[service] = f"amqp://{name}:{password}@127.0.0.1:5672/"
    smtp_port = free_port()
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": prefix,
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_AMQP_ERROR_BACKOFF": "0.2",
            "HATO_MONGODB_URL": MONGODB_URL,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(free_port()),
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_BOUNCE_SMTP_PORT": str(free_port()),
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await stack.start("signer")  # declares the topology, the events exchange with it
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    events = await channel.declare_queue(unique("listener"), exclusive=True)
    await events.bind(f"{prefix}.events", routing_key="#")
    await asyncio.gather(stack.start("bounce"), stack.start("ingest", HATO_AMQP_URL=urls["ingest"]))
    yield Outbox(store, stack, sink, smtp_port, prefix, users, events, urls)
    await stack.stop_all()
    await connection.close()
    for name in users.made:
        await http.delete(f"{where.base}/api/users/{name}")
    await http.aclose()
    await sink.stop()
    await store.client.drop_database(database)
    await store.close()


def sent_to(sink: Sink, address: str) -> int:
    return sum(address in r.rcpt_tos for r in sink.received)


async def test_ingest_answers_250_only_once_its_events_are_confirmed(outbox: Outbox) -> None:
    """Events refused: 451 4.3.0, and nothing of the mail is kept or heard. Events allowed:
    the accepted event is in a listener's queue by the time the client has the 250."""
    refused = f"{unique('refused')}@ok.test"
    outcome = await send(outbox.smtp_port, rcpts=(refused,))
    assert outcome.code == 451, outcome
    assert not [e for e in await outbox.heard() if e.address == refused]
    assert not await outbox.store.db.recipients.find_one({"address": refused})

    await outbox.users.may_publish_events(f"{outbox.prefix}-ingest", outbox.prefix, True)
    address = f"{unique('accepted')}@ok.test"
    outcome = await eventually(
        lambda: send(outbox.smtp_port, rcpts=(address,)), until=lambda o: o.code == 250
    )
    heard = await outbox.heard()  # no waiting: it was confirmed before the 250
    accepted = [e for e in heard if e.address == address and e.type is EventType.ACCEPTED]
    assert [e.message_id for e in accepted] == [outcome.queued_id]


async def test_a_dispatcher_killed_before_its_publish_loses_no_event(outbox: Outbox) -> None:
    """The dispatcher delivers and writes the delivery with its event, the broker refuses the
    event, the dispatcher is killed (SIGKILL) while the job waits to come back; started again
    (allowed to publish), it finds the recipient final, sends nothing again and publishes the
    stored event under its id."""
    await outbox.users.may_publish_events(f"{outbox.prefix}-ingest", outbox.prefix, True)
    dispatcher = await outbox.stack.start("dispatcher", HATO_AMQP_URL=outbox.urls["dispatcher"])
    address = f"{unique('kill')}@ok.test"
    outcome = await eventually(
        lambda: send(outbox.smtp_port, rcpts=(address,)), until=lambda o: o.code == 250
    )
    message_id = outcome.queued_id

    async def stored() -> list[dict]:
        return [
            e for e in await outbox.store.events.of_message(message_id) if e["type"] == "delivered"
        ]

    (written,) = await eventually(stored, until=lambda es: len(es) == 1, timeout=30)
    await eventually(
        lambda: asyncio.sleep(0, dispatcher.log()),
        until=lambda text: "events written but not published" in text,
    )
    dispatcher.process.send_signal(signal.SIGKILL)
    await dispatcher.process.wait()
    assert not [e for e in await outbox.heard() if e.type is EventType.DELIVERED]

    await outbox.users.may_publish_events(f"{outbox.prefix}-dispatcher", outbox.prefix, True)
    await outbox.stack.start("dispatcher", HATO_AMQP_URL=outbox.urls["dispatcher"])
    heard: list[Event] = []

    async def delivered() -> list[Event]:
        heard.extend(await outbox.heard())
        return [e for e in heard if e.type is EventType.DELIVERED and e.address == address]

    (event,) = await eventually(delivered, until=lambda es: es, timeout=30)
    assert event.id == written["_id"] and event.message_id == message_id
    assert sent_to(outbox.sink, address) == 1

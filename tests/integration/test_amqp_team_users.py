"""`hato amqp user` on the real RabbitMQ (management API): a platform team's user may submit
and read its own tenant's events, and is refused everything else — binding ``#`` or another
tenant's keys, Hato's own queues, the work exchange, another team's queues."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import aio_pika
import aiormq
import pytest

from shared.broker import Broker, Queue
from shared.settings import BrokerSettings
from shared.store import Store
from shared.teams import team_permissions
from tests.conftest import AMQP_URL
from tests.helpers.cli import run_hato

pytestmark = pytest.mark.integration


@dataclass
class Team:
    prefix: str
    user: str
    password: str
    env: dict[str, str]

    amqp_url: str

    def url(self) -> str:
        return self.amqp_url


@pytest.fixture
async def team(store: Store, broker_settings: BrokerSettings) -> AsyncIterator[Team]:
    """Hato's topology on a prefix of its own, tenants acme and rival, acme's team user."""
    broker = Broker(broker_settings, name="team-test")
    await broker.connect()
    await store.directory.upsert_tenant("acme")
    await store.directory.upsert_tenant("rival")
    env = {
        "HATO_MONGODB_URL": store.settings.url,
        "HATO_MONGODB_DATABASE": store.settings.database,
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": broker_settings.prefix,
    }
    code, out, err = await run_hato(env, "amqp", "user", "add", "acme")
    if code != 0 and "cannot be reached" in err:
        pytest.skip(f"no RabbitMQ management API: {err.strip()}")
    assert code == 0, err
    user = re.search(r"^user: (\S+)$", out, re.M).group(1)
    password = re.search(r"^password: (\S+)$", out, re.M).group(1)
    url = re.search(r"^url: (\S+)$", out, re.M).group(1)
    assert quote(password, safe="") in url and url.startswith("amqp://")
    yield Team(broker_settings.prefix, user, password, env, url)
    await run_hato(env, "amqp", "user", "remove", "acme")
    await broker.close()


async def refused(team: Team, action) -> str:
    """Run ``action(channel)`` on a fresh channel of the team user: the error's text, which
    must be ACCESS_REFUSED."""
    connection = await aio_pika.connect(team.url())
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as caught:
            await action(channel)
    return str(caught.value)


async def test_the_team_user_submits_and_binds_its_own_tenants_events(team: Team) -> None:
    """Publish to the submit exchange (confirmed), declare a queue of its own and bind it to
    <tenant>.* and <tenant>.bounced on the events exchange, and read what arrives there."""
    assert team.user == f"{team.prefix}.team.acme"
    connection = await aio_pika.connect(team.url())
    async with connection:
        channel = await connection.channel()
        submit = await channel.get_exchange(f"{team.prefix}.submit", ensure=False)
        await submit.publish(aio_pika.Message(b'{"api_key": "x"}'), routing_key="")
        events = await channel.get_exchange(f"{team.prefix}.events", ensure=False)
        queue = await channel.declare_queue(f"{team.prefix}.team.acme.events", auto_delete=True)
        await queue.bind(events, routing_key="acme.*")
        await queue.bind(events, routing_key="acme.bounced")
        # Direct reply-to, the way a team reads ingest's answers without a queue of its own.
        await channel.declare_queue("amq.rabbitmq.reply-to", passive=True)

    admin = await aio_pika.connect(AMQP_URL)
    async with admin:
        channel = await admin.channel()
        events = await channel.get_exchange(f"{team.prefix}.events", ensure=False)
        await events.publish(aio_pika.Message(b"acme event"), routing_key="acme.delivered")
        await events.publish(aio_pika.Message(b"rival event"), routing_key="rival.delivered")
        submitted = await channel.get_queue(f"{team.prefix}.{Queue.SUBMIT.value}")
        assert (await submitted.get(no_ack=True, timeout=5)).body == b'{"api_key": "x"}'

    connection = await aio_pika.connect(team.url())
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(f"{team.prefix}.team.acme.events")
        got = await queue.get(no_ack=True, timeout=5)
        assert got.body == b"acme event"
        assert await queue.get(no_ack=True, fail=False) is None


async def test_the_team_user_cannot_bind_every_tenants_events(team: Team) -> None:
    """Binding '#', another tenant's key, or acme.# (words beyond the tenant): ACCESS_REFUSED."""
    for key in ("#", "rival.*", "rival.bounced", "*.bounced", "acme.#", "acme.x.y"):

        async def bind(channel, key=key):
            queue = await channel.declare_queue(f"{team.prefix}.team.acme.q", auto_delete=True)
            events = await channel.get_exchange(f"{team.prefix}.events", ensure=False)
            await queue.bind(events, routing_key=key)

        text = await refused(team, bind)
        assert "ACCESS_REFUSED" in text and "topic" in text, (key, text)


async def test_the_team_user_cannot_touch_hatos_own_queues_or_the_work_exchange(
    team: Team,
) -> None:
    """Consuming or reading the sign or submit queue, publishing to the work exchange (a forged
    sign job) or to a queue through the default exchange, declaring another team's queue:
    ACCESS_REFUSED."""

    async def ignore(message) -> None:
        pass

    async def consume_sign(channel):
        queue = await channel.get_queue(f"{team.prefix}.{Queue.SIGN.value}", ensure=False)
        await queue.consume(ignore)

    async def get_submit(channel):
        queue = await channel.get_queue(f"{team.prefix}.{Queue.SUBMIT.value}", ensure=False)
        await queue.get(fail=False)

    async def publish_work(channel):
        work = await channel.get_exchange(f"{team.prefix}.work", ensure=False)
        await work.publish(aio_pika.Message(b"{}"), routing_key=Queue.SIGN.value)

    async def publish_default(channel):
        await channel.default_exchange.publish(
            aio_pika.Message(b"{}"), routing_key=f"{team.prefix}.{Queue.SIGN.value}"
        )

    async def declare_rivals(channel):
        await channel.declare_queue(f"{team.prefix}.team.rival.events", auto_delete=True)

    async def bind_own_queue_to_work(channel):
        queue = await channel.declare_queue(f"{team.prefix}.team.acme.w", auto_delete=True)
        work = await channel.get_exchange(f"{team.prefix}.work", ensure=False)
        await queue.bind(work, routing_key=Queue.SIGN.value)

    for action in (
        consume_sign,
        get_submit,
        publish_work,
        publish_default,
        declare_rivals,
        bind_own_queue_to_work,
    ):
        text = await refused(team, action)
        assert "ACCESS_REFUSED" in text, (action.__name__, text)


async def test_list_shows_the_team_and_remove_deletes_it(team: Team) -> None:
    """`hato amqp user list` names acme's user with its permissions; `remove` deletes it and
    the password no longer logs in."""
    code, out, err = await run_hato(team.env, "amqp", "user", "list", "--json")
    assert code == 0, err
    assert '"tenant": "acme"' in out and team_permissions(team.prefix, "acme").read[:10] in out
    code, out, err = await run_hato(team.env, "amqp", "user", "add", "acme", "--url")
    assert code == 0, err
    [url] = out.split()
    assert url != team.url()  # a new password
    async with await aio_pika.connect(url):
        pass
    team.amqp_url = url
    code, _, err = await run_hato(team.env, "amqp", "user", "remove", "acme")
    assert code == 0, err
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await aio_pika.connect(team.url())
    code, _, err = await run_hato(team.env, "amqp", "user", "add", "no-such-tenant")
    assert code != 0 and "no tenant" in err

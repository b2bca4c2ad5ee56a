"""Webhooks: signed POSTs to a real HTTP endpoint on loopback, filters, retries, the delivery
log and replays."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.ops import HttpServer
from shared.webhooks import SIGNATURE_HEADER, verify
from tests.conftest import unique
from tests.e2e.conftest import Api, delivered_to, message
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


class Receiver:
    """A tenant's endpoint: answers 500 to the first POST, 200 afterwards."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict, bytes]] = []
        self.answered = 0
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = HttpServer(app, host="127.0.0.1", port=0)

    async def hook(self, request: Request) -> Response:
        self.answered += 1
        body = await request.body()
        if self.answered == 1:
            return Response(status_code=500)
        self.posts.append((dict(request.headers), body))
        return Response(status_code=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook"

    def events(self) -> list[dict]:
        return [e for _, body in self.posts for e in json.loads(body)["events"]]


async def test_signed_filtered_retried_logged_and_replayed(api: Api) -> None:
    """A webhook gets only the events it subscribed to, signed with its secret and retried after a
    500; its delivery log and replays are its tenant's alone, no listing shows the secret, and a bad
    URL or event is refused."""
    receiver = Receiver()
    await receiver.server.start()
    try:
        created = await api.http.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["delivered", "bounced"]},
            headers=api.as_tenant(),
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")

        address = f"{unique('hook')}@ok.test"
        sent = await api.http.post(
            "/v1/messages", json=message(to=[address]), headers=api.as_tenant()
        )
        await delivered_to(api, address)
        mine = await eventually(
            lambda: asyncio.sleep(
                0, [e for e in receiver.events() if e["message_id"] == sent.json()["id"]]
            ),
            until=bool,
            timeout=30,
        )
        assert [e["type"] for e in mine] == ["delivered"]  # filtered: no accepted/signed
        for headers, body in receiver.posts:
            assert verify(hook["secret"], body, headers[SIGNATURE_HEADER.lower()])
            assert not verify("whsec_wrong", body, headers[SIGNATURE_HEADER.lower()])
        assert receiver.answered >= 2  # the first POST failed and was retried

        log = (
            await api.http.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=api.as_tenant())
        ).json()["deliveries"]
        entry = next(d for d in log if d["event_id"] == mine[0]["id"])
        assert entry["state"] == "delivered" and entry["attempts"] >= 1

        before = len(receiver.events())
        now = datetime.now(UTC)
        replay = await api.http.post(
            f"/v1/webhooks/{hook['id']}/replay",
            json={
                "since": (now - timedelta(minutes=5)).isoformat(),
                "until": (now + timedelta(minutes=1)).isoformat(),
            },
            headers=api.as_tenant(),
        )
        assert replay.json()["queued"] >= 1 and replay.json()["complete"] is True
        await eventually(
            lambda: asyncio.sleep(0, receiver.events()), until=lambda es: len(es) > before
        )
        assert mine[0]["id"] in {e["id"] for e in receiver.events()[before:]}

        other = api.as_tenant(api.rival_key)
        assert (
            await api.http.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=other)
        ).status_code == 404
        assert (
            await api.http.delete(f"/v1/webhooks/{hook['id']}", headers=other)
        ).status_code == 404
        listed = (await api.http.get("/v1/webhooks", headers=api.as_tenant())).json()
        assert "secret" not in json.dumps(listed)
        assert (
            await api.http.delete(f"/v1/webhooks/{hook['id']}", headers=api.as_tenant())
        ).status_code == 204
        bad = await api.http.post(
            "/v1/webhooks", json={"url": "ftp://x", "events": ["nope"]}, headers=api.as_tenant()
        )
        assert bad.status_code == 400
    finally:
        await receiver.server.stop()


async def consumed(api: Api, queue: str) -> float:
    """Messages the bounce service acked from ``queue`` so far (its Prometheus counter)."""
    assert api.stack is not None
    metrics = (await api.http.get(f"{api.stack.processes['bounce'].ops_url}/metrics")).text
    line = f'hato_consumed_messages_total{{outcome="ack",queue="{queue}"}} '
    return sum(float(m.split()[-1]) for m in metrics.splitlines() if m.startswith(line))


async def test_only_subscribed_events_reach_the_webhook_router(api: Api) -> None:
    """The webhook queue is bound to what webhooks subscribed to: mail of a tenant without a
    webhook, and events a webhook did not ask for, never reach the bounce service; once a
    webhook asks for them they do, and after it is removed they stop again."""
    rival = api.as_tenant(api.rival_key)
    before = await consumed(api, "webhooks")
    address = f"{unique('nohook')}@ok.test"
    sent = await api.http.post(
        "/v1/messages", json=message(**{"from": "news@rival.test"}, to=[address]), headers=rival
    )
    assert sent.status_code == 202, sent.text
    await delivered_to(api, address)
    await eventually(
        lambda: api.store.events.of_message(sent.json()["id"]),
        until=lambda es: "delivered" in {e["type"] for e in es},
    )
    await asyncio.sleep(0.5)
    assert await consumed(api, "webhooks") == before

    receiver = Receiver()
    receiver.answered = 1  # answer every POST with 204
    await receiver.server.start()
    try:
        hook = (
            await api.http.post(
                "/v1/webhooks", json={"url": receiver.url, "events": []}, headers=rival
            )
        ).json()
        address = f"{unique('hook')}@ok.test"
        sent = await api.http.post(
            "/v1/messages", json=message(**{"from": "news@rival.test"}, to=[address]), headers=rival
        )
        types = await eventually(
            lambda: asyncio.sleep(
                0, [e["type"] for e in receiver.events() if e["message_id"] == sent.json()["id"]]
            ),
            until=lambda ts: "delivered" in ts,
            timeout=30,
        )
        assert types == ["accepted", "unsigned", "delivered"]  # every event (no key), in order
        assert await consumed(api, "webhooks") >= before + 3
        assert (
            await api.http.delete(f"/v1/webhooks/{hook['id']}", headers=rival)
        ).status_code == 204
        await asyncio.sleep(0.5)
        settled = await consumed(api, "webhooks")
        address = f"{unique('unhooked')}@ok.test"
        await api.http.post(
            "/v1/messages", json=message(**{"from": "news@rival.test"}, to=[address]), headers=rival
        )
        await delivered_to(api, address)
        await asyncio.sleep(0.5)
        assert await consumed(api, "webhooks") == settled
    finally:
        await receiver.server.stop()


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:15672/api/queues",  # loopback, but not the network this stack allows
        "http://[fe80::1]/",
        "http://[::ffff:10.0.0.1]/",  # a private IPv4 address mapped into IPv6
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://0.0.0.0:8025/",
        "http://user:secret@127.0.0.1/hook",
        "http://no-such-host.invalid/hook",
    ],
)
async def test_a_webhook_may_not_point_inside(api: Api, url: str) -> None:
    """A tenant's endpoint must resolve to public addresses (or a network the operator
    allows: 127.0.0.0/8 in this stack): 422, and nothing is stored."""
    created = await api.http.post(
        "/v1/webhooks", json={"url": url, "events": []}, headers=api.as_tenant()
    )
    assert created.status_code == 422, created.text
    assert created.json()["detail"].startswith("webhook URL refused")
    hooks = (await api.http.get("/v1/webhooks", headers=api.as_tenant())).json()["webhooks"]
    assert url not in [h["url"] for h in hooks]


class Endpoint:
    """A raw TCP endpoint on loopback that answers as told, counting its connections."""

    def __init__(self, answer, host: str = "127.0.0.1") -> None:
        self.answer, self.host, self.connections = answer, host, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Endpoint:
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        return self

    @property
    def url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            await self.answer(writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()


async def _log_after_a_mail(api: Api, url: str, *, store_url: str | None = None) -> dict:
    """Add a webhook for ``url`` (then point it at ``store_url`` behind the API's back, as a
    name that resolves elsewhere later would), send a mail, and return the first delivery
    log entry that has been tried."""
    rival = api.as_tenant(api.rival_key)
    hook = (
        await api.http.post(
            "/v1/webhooks", json={"url": url, "events": ["accepted"]}, headers=rival
        )
    ).json()
    try:
        if store_url:
            await api.store.db.webhooks.update_one(
                {"_id": hook["id"]}, {"$set": {"url": store_url}}
            )
        address = f"{unique('wh')}@ok.test"
        sent = await api.http.post(
            "/v1/messages", json=message(**{"from": "news@rival.test"}, to=[address]), headers=rival
        )
        assert sent.status_code == 202, sent.text

        async def tried() -> list[dict]:
            r = await api.http.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=rival)
            return [d for d in r.json()["deliveries"] if d["attempts"] >= 1]

        return (await eventually(tried, until=bool, timeout=30))[0]
    finally:
        await api.http.delete(f"/v1/webhooks/{hook['id']}", headers=rival)


async def test_the_address_is_checked_again_when_sending(api: Api) -> None:
    """A webhook whose URL now leads to an address that is not allowed ([::1] here: only
    127.0.0.0/8 is) is not connected to; the log says so in fixed words."""

    async def ok(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")

    inside = await Endpoint(ok, host="::1").start()
    fine = await Endpoint(ok).start()
    try:
        entry = await _log_after_a_mail(api, fine.url, store_url=inside.url)
        assert entry["last_error"] == "the endpoint's address is not allowed"
        assert inside.connections == 0
    finally:
        await inside.stop()
        await fine.stop()


async def test_a_failed_post_says_little(api: Api) -> None:
    """A closed port is 'no answer from the endpoint' — not an errno a tenant could map a
    network with."""
    closed = Endpoint(None)
    await closed.start()
    url = closed.url
    await closed.stop()
    entry = await _log_after_a_mail(api, url)
    assert entry["last_error"] == "no answer from the endpoint", entry


async def test_a_post_has_one_deadline_and_its_reply_body_is_not_read(api: Api) -> None:
    """An endpoint that trickles its status line a byte a second never trips a per-read
    timeout, but the POST's own deadline (5 s); one that answers 200 and then never ends its
    body has answered: delivered."""

    async def trickle(writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 200 OK\r\n" * 10:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)

    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 314572800\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(60)

    slow, huge = await Endpoint(trickle).start(), await Endpoint(endless).start()
    try:
        entry = await _log_after_a_mail(api, slow.url)
        assert entry["last_error"] == "no answer from the endpoint in time", entry
        entry = await _log_after_a_mail(api, huge.url)
        assert (entry["state"], entry["last_status"]) == ("delivered", 200), entry
    finally:
        await slow.stop()
        await huge.stop()

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
        lambda: api.store.events(sent.json()["id"]),
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

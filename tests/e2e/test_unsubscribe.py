"""One-click unsubscribe end to end (RFC 8058, RFC 2369): mail sent with unsubscribe on (the
HTTP field, the SMTP header, the tenant's default) arrives with its own List-Unsubscribe and
List-Unsubscribe-Post under the DKIM signature; POSTing the link, or mailing the mailto to the
bounce listener, suppresses the address for that list only, once, with one ``unsubscribed``
event and webhook; forged links are refused and the page speaks Japanese or English."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re

import aiosmtplib
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.ops import HttpServer
from tests.conftest import TENANT, unique
from tests.e2e.conftest import OPERATOR, Api, delivered_to, message
from tests.helpers.dkim_verify import dkimpy, records
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


class Hook:
    """A tenant's webhook endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = HttpServer(app, host="127.0.0.1", port=0)

    async def hook(self, request: Request) -> Response:
        self.events += json.loads(await request.body())["events"]
        return Response(status_code=204)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/hook"


def unsubscribe_fields(data: bytes) -> tuple[str, str, str | None]:
    """(link, mailto address, List-Unsubscribe-Post) of a delivered copy."""
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    assert len(parsed.get_all("List-Unsubscribe") or []) == 1
    value = re.sub(r"\s+", " ", str(parsed["List-Unsubscribe"]))
    link, mailto = re.findall(r"<([^>]+)>", value)
    assert mailto.startswith("mailto:") and mailto.endswith("?subject=unsubscribe")
    return (
        link,
        mailto[len("mailto:") : -len("?subject=unsubscribe")],
        parsed["List-Unsubscribe-Post"],
    )


def signed_names(data: bytes) -> list[str]:
    """The h= of each DKIM-Signature of a delivered copy."""
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    out = []
    for sig in parsed.get_all("DKIM-Signature") or []:
        h = re.search(r"\bh=([^;]+)", re.sub(r"\s+", "", str(sig)))
        assert h is not None
        out.append(h.group(1).lower())
    return out


async def send(api: Api, address: str, **fields) -> dict:
    r = await api.http.post(
        "/v1/messages", json=message(to=[address], **fields), headers=api.as_tenant()
    )
    assert r.status_code == 202, r.text
    return r.json()


async def unsubscribed_events(api: Api, address: str) -> list[dict]:
    return await api.store.db.events.find(
        {"type": "unsubscribed", "address": address.lower()}
    ).to_list()


async def test_one_click_unsubscribes_once_for_its_list_only(api: Api) -> None:
    """Sent with unsubscribe "news" (HTTP field), the copy carries both fields, over-signed and
    verified; POSTing the link answers 200, suppresses the address for list:news only, emits
    one unsubscribed event and webhook; a replay changes nothing; a later mail to news is
    suppressed while one to another list still goes."""
    hook = Hook()
    await hook.server.start()
    try:
        created = await api.http.post(
            "/v1/webhooks",
            json={"url": hook.url, "events": ["unsubscribed"]},
            headers=api.as_tenant(),
        )
        assert created.status_code == 201, created.text
        address = f"{unique('reader')}@ok.test"
        await send(api, address, unsubscribe="news")
        data = await delivered_to(api, address)

        link, mailto, post = unsubscribe_fields(data)
        assert post == "List-Unsubscribe=One-Click"
        assert link.startswith(str(api.http.base_url).rstrip("/") + "/u/")
        assert mailto.endswith("@bounces.shop.test")
        assert dkimpy(data, records(api.dkim_key)) == [True]
        for h in signed_names(data):
            names = h.split(":")
            assert names.count("list-unsubscribe") == 2  # present once, over-signed once
            assert names.count("list-unsubscribe-post") == 2

        path = link[link.index("/u/") :]
        done = await api.http.post(path, data=ONE_CLICK, headers={"Accept": "application/json"})
        assert done.status_code == 200, done.text
        assert done.json() == {"list": "news", "unsubscribed": True}
        listed = (await api.http.get("/v1/suppressions", headers=api.as_tenant())).json()
        mine = [s for s in listed["suppressions"] if s["address"] == address]
        assert [(s["scope"], s["reason"], s["source"]) for s in mine] == [
            ("list:news", "unsubscribed", "one-click")
        ]
        events = await eventually(lambda: unsubscribed_events(api, address), until=bool)
        assert [(e["tenant"], e["detail"]["list"]) for e in events] == [(TENANT, "news")]
        hooked = await eventually(
            lambda: asyncio.sleep(0, [e for e in hook.events if e["address"] == address]),
            until=bool,
            timeout=30,
        )
        assert [e["type"] for e in hooked] == ["unsubscribed"]

        again = await api.http.post(path, data=ONE_CLICK, headers={"Accept": "application/json"})
        assert again.status_code == 200 and again.json() == done.json()
        assert await api.store.db.suppressions.count_documents({"address": address}) == 1
        await asyncio.sleep(1)
        assert len(await unsubscribed_events(api, address)) == 1
        assert len([e for e in hook.events if e["address"] == address]) == 1
        ingest = api.stack.processes["ingest"]  # type: ignore[union-attr]
        scraped = (await api.http.get(f"{ingest.ops_url}/metrics")).text
        assert 'hato_unsubscribes_total{source="one-click",tenant="acme"} 1.0' in scraped

        to_news = await send(api, address, unsubscribe="news")
        assert to_news["recipients"][0]["status"] == "suppressed"
        to_offers = await send(api, address, unsubscribe="offers")
        assert to_offers["recipients"][0]["status"] == "queued"
        plain = await send(api, address)
        assert plain["recipients"][0]["status"] == "queued"
    finally:
        await hook.server.stop()


async def test_forged_tampered_and_bodiless_posts_are_refused(api: Api) -> None:
    """A link that is not genuine is a 404 problem, a POST without the one-click body a 400
    problem; neither suppresses anything."""
    address = f"{unique('forged')}@ok.test"
    await send(api, address, unsubscribe="news")
    link, _, _ = unsubscribe_fields(await delivered_to(api, address))
    path = link[link.index("/u/") :]
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    for bad in (tampered, "/u/AQID", "/u/" + "x" * 80):
        r = await api.http.post(bad, data=ONE_CLICK)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert (await api.http.get(bad)).status_code == 404
    empty = await api.http.post(path, data={"List-Unsubscribe": "Yes"})
    assert empty.status_code == 400 and empty.json()["status"] == 400
    assert await api.store.db.suppressions.count_documents({"address": address}) == 0


async def test_the_page_asks_in_japanese_or_english_and_changes_nothing(api: Api) -> None:
    """GET shows a page in the reader's language with a button that POSTs the one-click form;
    it suppresses nothing (link scanners GET links)."""
    address = f"{unique('page')}@ok.test"
    await send(api, address, unsubscribe="news")
    link, _, _ = unsubscribe_fields(await delivered_to(api, address))
    path = link[link.index("/u/") :]
    ja = await api.http.get(path, headers={"Accept": "text/html", "Accept-Language": "ja,en;q=0.5"})
    assert ja.status_code == 200 and ja.headers["content-type"].startswith("text/html")
    assert 'lang="ja"' in ja.text and "配信を停止する" in ja.text and 'method="post"' in ja.text
    en = await api.http.get(path, headers={"Accept": "text/html", "Accept-Language": "en-GB"})
    assert 'lang="en"' in en.text and "Unsubscribe" in en.text
    assert await api.store.db.suppressions.count_documents({"address": address}) == 0
    page_post = await api.http.post(
        path, data=ONE_CLICK, headers={"Accept": "text/html", "Accept-Language": "ja"}
    )
    assert page_post.status_code == 200 and "配信を停止しました" in page_post.text


async def test_smtp_header_and_mailto_unsubscribe(api: Api) -> None:
    """X-Hato-Unsubscribe asks for it over SMTP (and is not delivered; Hato's fields replace
    the message's own); a mail to the copy's
    mailto address at the bounce listener unsubscribes like the link: scoped, one event with
    the message named."""
    address = f"{unique('smtp')}@ok.test"
    raw = (
        f"From: Shop <orders@shop.test>\r\nTo: {address}\r\nSubject: Weekly\r\n"
        "X-Hato-Unsubscribe: weekly\r\nList-Unsubscribe: <mailto:old@shop.test>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\nHello.\r\n"
    ).encode()
    smtp_port = int(api.stack.env["HATO_INGEST_SMTP_PORT"])  # type: ignore[union-attr]
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False) as smtp:
        await smtp.sendmail("orders@shop.test", [address], raw)
    data = await delivered_to(api, address)
    assert b"X-Hato-Unsubscribe" not in data and b"old@shop.test" not in data  # Hato's replace
    _, mailto, _ = unsubscribe_fields(data)
    assert dkimpy(data, records(api.dkim_key)) == [True]

    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=api.bounce_port, start_tls=False) as mx:
        errors, reply = await mx.sendmail(
            address, [mailto], f"From: {address}\r\nTo: {mailto}\r\nSubject: unsubscribe\r\n\r\n"
        )
    assert not errors and "unsubscribe request received" in reply
    events = await eventually(lambda: unsubscribed_events(api, address), until=bool)
    assert [(e["detail"]["list"], e["detail"]["source"]) for e in events] == [("weekly", "mailto")]
    assert events[0]["message_id"]
    doc = await api.store.db.suppressions.find_one({"address": address})
    assert doc is not None and doc["scope"] == "list:weekly"
    assert (await send(api, address, unsubscribe="weekly"))["recipients"][0][
        "status"
    ] == "suppressed"

    forged = "u" + "a" * 42 + "@bounces.shop.test"
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=api.bounce_port, start_tls=False) as mx:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await mx.sendmail(address, [forged], b"Subject: x\r\n\r\n")


async def test_the_tenants_default_list(api: Api) -> None:
    """A tenant's default list puts unsubscribe on mail that names none; ``unsubscribe: false``
    turns it off for one message, and a message with a List-Unsubscribe of its own keeps it."""
    admin = {"Authorization": f"Bearer {OPERATOR}"}
    changed = await api.http.patch(
        f"/admin/v1/tenants/{TENANT}",
        json={"limits": {"unsubscribe_list": "digest"}},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    on, off = f"{unique('default')}@ok.test", f"{unique('optout')}@ok.test"

    async def fields_of(address: str, **extra) -> bytes:
        await send(api, address, **extra)
        return await delivered_to(api, address)

    data = await eventually(
        lambda: fields_of(f"{unique('wait')}@ok.test"),
        until=lambda d: b"List-Unsubscribe:" in d,
        timeout=45,
    )
    assert b"List-Unsubscribe-Post" in data
    link, _, _ = unsubscribe_fields(await fields_of(on))
    shown = await api.http.get(link[link.index("/u/") :], headers={"Accept": "application/json"})
    assert shown.json() == {"list": "digest", "unsubscribed": False}
    assert b"List-Unsubscribe" not in await fields_of(off, unsubscribe=False)
    own = await fields_of(
        f"{unique('own')}@ok.test", headers={"List-Unsubscribe": "<mailto:own@shop.test>"}
    )
    assert b"List-Unsubscribe: <mailto:own@shop.test>" in own  # the message's own stays
    assert b"List-Unsubscribe-Post" not in own and own.count(b"List-Unsubscribe:") == 1


async def test_leaving_a_tag_stops_mail_with_that_tag(api: Api) -> None:
    """``unsubscribe: true`` offers to leave the message's first tag: after the POST, mail
    carrying that tag is suppressed for the address (with unsubscribe on or not), other mail
    goes; true without a tag is a 400."""
    address = f"{unique('tagged')}@ok.test"
    await send(api, address, tags=["promo", "spring"], unsubscribe=True)
    link, _, _ = unsubscribe_fields(await delivered_to(api, address))
    path = link[link.index("/u/") :]
    done = await api.http.post(path, data=ONE_CLICK, headers={"Accept": "application/json"})
    assert done.json() == {"list": "tag:promo", "unsubscribed": True}
    doc = await api.store.db.suppressions.find_one({"address": address})
    assert doc is not None and doc["scope"] == "tag:promo"
    tagged = await send(api, address, tags=["x", "promo"])
    assert tagged["recipients"][0]["status"] == "suppressed"
    assert (await send(api, address, tags=["spring"]))["recipients"][0]["status"] == "queued"
    page = await api.http.get(path, headers={"Accept": "text/html"})
    assert "“promo”" in page.text
    untagged = message(to=[address], tags=[], unsubscribe=True)
    r = await api.http.post("/v1/messages", json=untagged, headers=api.as_tenant())
    assert r.status_code == 400 and "first tag" in r.json()["detail"]

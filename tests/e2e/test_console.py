"""The web console over HTTP against the whole stack: sign-in with CSRF and lock-out, cookie
flags, the message search and timeline, tenant isolation, suppressions and keys through the
same commands as the API, and the console kept out of the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.ingest.console.sessions import LOGIN_CSRF_COOKIE, MAX_FAILURES, SESSION_COOKIE
from tests.conftest import TENANT
from tests.e2e.conftest import OPERATOR, Api, message
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(page: str) -> str:
    found = CSRF.search(page)
    assert found, page[:500]
    return found.group(1)


async def add_user(api: Api, email: str, tenant: str = TENANT) -> str:
    """A console user of ``tenant`` made through the admin API; its password."""
    made = await api.http.post(
        f"/admin/v1/tenants/{tenant}/users",
        json={"email": email},
        headers={"Authorization": f"Bearer {OPERATOR}"},
    )
    assert made.status_code == 201, made.text
    return made.json()["password"]


@asynccontextmanager
async def signed_in(
    api: Api, email: str, password: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.Response]]:
    """A browser-like client after the sign-in form was posted, and the answer to it."""
    async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=30) as client:
        page = await client.get("/console/login")
        answer = await client.post(
            "/console/login",
            data={"email": email, "password": password, "csrf": _csrf(page.text), "next": ""},
        )
        yield client, answer


async def test_sign_in_needs_the_form_token_sets_safe_cookies_and_signs_out(api: Api) -> None:
    """A page without a session goes to sign-in; a sign-in without the form's token is 403;
    the session cookie is HttpOnly and SameSite=Strict (not Secure over plain HTTP); sign-out
    ends the session, and a POST without the session's CSRF token is refused."""
    password = await add_user(api, "desk@shop.test")
    bare = await api.http.get("/console/messages?recipient=x", follow_redirects=False)
    assert bare.status_code == 303
    assert bare.headers["location"].startswith("/console/login?next=/console/messages")

    async with httpx.AsyncClient(base_url=str(api.http.base_url), timeout=30) as client:
        page = await client.get("/console/login")
        assert LOGIN_CSRF_COOKIE in page.cookies
        forged = await client.post(
            "/console/login", data={"email": "desk@shop.test", "password": password, "csrf": "x"}
        )
        assert forged.status_code == 403

    async with signed_in(api, "desk@shop.test", password) as (client, answer):
        assert answer.status_code == 303
        cookie = next(
            v for k, v in answer.headers.multi_items() if k == "set-cookie" and SESSION_COOKIE in v
        )
        flags = cookie.lower()
        assert "httponly" in flags and "samesite=strict" in flags and "secure" not in flags
        assert password not in cookie
        page = await client.get("/console/suppressions")
        assert page.status_code == 200 and "desk@shop.test" in page.text
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        refused = await client.post(
            "/console/suppressions", data={"address": "x@example.com", "csrf": "forged"}
        )
        assert refused.status_code == 403
        assert (
            await client.post("/console/logout", data={"csrf": _csrf(page.text)})
        ).status_code == 303
        after = await client.get("/console/suppressions", follow_redirects=False)
        assert after.status_code == 303


async def test_repeated_failures_lock_the_user_out(api: Api) -> None:
    """After MAX_FAILURES wrong passwords even the right one is refused for a while, and the
    page says the user is locked out."""
    password = await add_user(api, "locked@shop.test")
    for _ in range(MAX_FAILURES):
        async with signed_in(api, "locked@shop.test", "wrong password!") as (_, answer):
            assert answer.status_code == 401
    async with signed_in(api, "locked@shop.test", password) as (_, answer):
        assert answer.status_code == 401 and "Too many failed sign-ins" in answer.text


async def test_a_tenant_user_finds_its_mail_and_its_timeline_but_not_another_tenants(
    api: Api,
) -> None:
    """Search by recipient finds the mail, its page shows the delivery attempt's remote reply
    and MX, a Japanese subject is shown decoded; another tenant's message is 404."""
    mine = await api.http.post(
        "/v1/messages",
        json=message(to=["console-1@ok.test"], subject="ご注文ありがとうございます"),
        headers=api.as_tenant(),
    )
    theirs = await api.http.post(
        "/v1/messages",
        json=message(**{"from": "x@rival.test", "to": ["console-2@ok.test"]}),
        headers=api.as_tenant(api.rival_key),
    )
    assert mine.status_code == 202 and theirs.status_code == 202
    password = await add_user(api, "support@shop.test")
    async with signed_in(api, "support@shop.test", password) as (client, _):

        async def page() -> str:
            return (await client.get(f"/console/messages/{mine.json()['id']}")).text

        shown = await eventually(page, until=lambda p: "250 2.0.0 Ok: stored" in p)
        assert "ご注文ありがとうございます" in shown and "127.0.0.2" in shown
        found = await client.get("/console/messages", params={"recipient": "console-1@ok.test"})
        assert f"/console/messages/{mine.json()['id']}" in found.text
        assert (await client.get(f"/console/messages/{theirs.json()['id']}")).status_code == 404
        other = await client.get("/console/messages", params={"recipient": "console-2@ok.test"})
        assert theirs.json()["id"] not in other.text


async def test_suppressions_and_api_keys_from_the_console(api: Api) -> None:
    """A suppression added in the console is on the tenant's list (and its CSV), removed
    after a confirmation (a list's unsubscribe for that list only); an API key made there
    works once shown and stops when revoked."""
    password = await add_user(api, "lists@shop.test")
    async with signed_in(api, "lists@shop.test", password) as (client, _):
        page = await client.get("/console/suppressions")
        csrf = _csrf(page.text)
        added = await client.post(
            "/console/suppressions",
            data={"address": "Gone@Example.com", "csrf": csrf},
            follow_redirects=True,
        )
        assert added.status_code == 200 and "gone@example.com" in added.text
        assert await api.store.suppressions.suppressed(TENANT, ["gone@example.com"])
        searched = await client.get("/console/suppressions", params={"q": "gone@"})
        assert 'data-address="gone@example.com"' in searched.text
        missed = await client.get("/console/suppressions", params={"q": "gonf"})
        assert 'data-address="gone@example.com"' not in missed.text
        exported = await client.get("/console/suppressions.csv")
        assert exported.headers["content-type"].startswith("text/csv")
        assert "gone@example.com,manual,console," in exported.text
        confirm = await client.get("/console/suppressions/remove?address=gone@example.com")
        assert "gone@example.com" in confirm.text
        await client.post(
            "/console/suppressions/remove", data={"address": "gone@example.com", "csrf": csrf}
        )
        assert not await api.store.suppressions.suppressed(TENANT, ["gone@example.com"])

        # An unsubscribe from one list is lifted for that list only.
        await api.store.suppressions.unsubscribe(
            TENANT, "reader@example.com", scope="list:news", source="unsubscribe"
        )
        listed = await client.get("/console/suppressions", params={"q": "reader@"})
        assert "list:news" in listed.text and "scope=list%3Anews" in listed.text
        await client.post(
            "/console/suppressions/remove",
            data={"address": "reader@example.com", "scope": "list:news", "csrf": csrf},
        )
        left = await api.store.suppressions.page(TENANT, after="reader@")
        assert "reader@example.com" not in [s["address"] for s in left]

        made = await client.post("/console/keys", data={"name": "from console", "csrf": csrf})
        assert made.status_code == 200, made.text[-3000:]
        key = re.search(r'id="new-secret"[^>]*>(hato_[^<]+)<', made.text).group(1)
        listed = await api.http.get("/v1/suppressions", headers=api.as_tenant(key))
        assert listed.status_code == 200
        prefix = key.split("_")[1]
        await client.post("/console/keys/revoke", data={"prefix": prefix, "csrf": csrf})
        assert not [k for k in await api.store.directory.api_keys(TENANT) if k["_id"] == prefix]


async def test_console_pages_are_not_api_operations(api: Api) -> None:
    """The OpenAPI document has no /console path; the other pages render for a user, the
    domains page with the records to publish (DMARC's too) and a check on demand."""
    document = (await api.http.get("/openapi.json")).json()
    assert not [p for p in document["paths"] if p.startswith("/console")]
    password = await add_user(api, "pages@shop.test")
    async with signed_in(api, "pages@shop.test", password) as (client, _):
        for path in ("/console/overview", "/console/domains", "/console/webhooks", "/console/keys"):
            answer = await client.get(path)
            assert answer.status_code == 200, (path, answer.text[-2000:])
        domains = await client.get("/console/domains")
        assert "_dmarc.shop.test" in domains.text and "v=DMARC1; p=none" in domains.text
        checked = await client.post(
            "/console/domains/check", data={"domain": "shop.test", "csrf": _csrf(domains.text)}
        )
        assert checked.status_code == 200 and "v-wrong" in checked.text  # no DMARC record yet
        ja = await client.get("/console/overview", headers={"Accept-Language": "ja,en;q=0.5"})
        assert "概要" in ja.text


async def test_an_operator_sees_every_tenant_and_picks_one(api: Api) -> None:
    """An operator user opens any tenant's message, switches the tenant the pages show, and
    the overview counts every tenant."""
    sent = await api.http.post(
        "/v1/messages",
        json=message(**{"from": "x@rival.test", "to": ["op-view@ok.test"]}),
        headers=api.as_tenant(api.rival_key),
    )
    password = await api.store.directory.add_console_user("root@hato.test", tenant=None)
    async with signed_in(api, "root@hato.test", password) as (client, answer):
        assert answer.status_code == 303
        shown = await client.get(f"/console/messages/{sent.json()['id']}")
        assert shown.status_code == 200 and "op-view@ok.test" in shown.text
        page = await client.get("/console/messages")
        picked = await client.post(
            "/console/tenant",
            data={"tenant": "rival", "next": "/console/messages", "csrf": _csrf(page.text)},
            follow_redirects=True,
        )
        assert sent.json()["id"] in picked.text
        overview = await client.get("/console/overview")
        assert "<td>rival</td>" in overview.text and f"<td>{TENANT}</td>" in overview.text


async def test_a_webhook_range_is_replayed_from_the_console(api: Api) -> None:
    """The webhooks page lists the tenant's endpoint; a replay of the last hour queues its
    events again, and a message's page lists the deliveries of its events."""
    hook = await api.http.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks"},
        headers=api.as_tenant(),
    )
    assert hook.status_code == 201, hook.text
    sent = await api.http.post(
        "/v1/messages", json=message(to=["hooked@ok.test"]), headers=api.as_tenant()
    )
    assert sent.status_code == 202
    password = await add_user(api, "hooks@shop.test")
    async with signed_in(api, "hooks@shop.test", password) as (client, _):
        page = await client.get("/console/webhooks")
        assert "http://127.0.0.1:9/hooks" in page.text
        now = datetime.now(UTC)
        replayed = await client.post(
            "/console/webhooks/replay",
            data={
                "webhook": hook.json()["id"],
                "since": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
                "until": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"),
                "tz": "0",
                "csrf": _csrf(page.text),
            },
        )
        queued = int(replayed.headers["location"].rpartition("=")[2])
        assert queued > 0
        replayed_event = await api.store.db.webhook_deliveries.find_one(
            {"webhook": hook.json()["id"], "event.message_id": {"$ne": None}}
        )
        shown = await client.get(f"/console/messages/{replayed_event['event']['message_id']}")
        assert "http://127.0.0.1:9/hooks" in shown.text  # among the message's webhook deliveries

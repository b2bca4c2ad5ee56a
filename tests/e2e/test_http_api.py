"""The HTTP door and the admin API against the running services: JSON, raw and batch sends,
validation, idempotency, ISO-2022-JP, tenant isolation, provisioning and DNS verification."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json

import pytest

from services.ingest.http.problems import PROBLEM
from tests.conftest import unique
from tests.e2e.conftest import OPERATOR, Api, delivered_to, message

pytestmark = pytest.mark.integration


async def test_a_json_message_is_accepted_then_delivered(api: Api) -> None:
    """202 with the message id and each recipient's id; the composed message arrives; the
    state API shows the tags and metadata."""
    response = await api.http.post(
        "/v1/messages",
        json=message(
            to=["Bob <json@ok.test>"],
            cc=["cc@ok.test"],
            bcc=["hidden@ok.test"],
            html="<p>Thanks</p>",
            headers={"X-Order": "7"},
        ),
        headers=api.as_tenant(),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert [(r["address"], r["status"]) for r in body["recipients"]] == [
        ("json@ok.test", "queued"),
        ("cc@ok.test", "queued"),
        ("hidden@ok.test", "queued"),
    ]
    data = await delivered_to(api, "json@ok.test")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["To"] == "Bob <json@ok.test>" and parsed["Cc"] == "cc@ok.test"
    assert "Bcc" not in parsed and b"hidden@ok.test" not in data
    assert parsed["X-Order"] == "7" and parsed["Message-ID"].endswith("@shop.test>")
    assert parsed.get_body(("plain",)).get_content().strip() == "Thanks for your order."
    state = (await api.http.get(f"/v1/messages/{body['id']}", headers=api.as_tenant())).json()
    assert state["tags"] == ["order"] and state["metadata"] == {"order": "7"}


async def test_iso_2022_jp_round_trip(api: Api) -> None:
    """charset=iso-2022-jp: 7-bit ISO-2022-JP headers and body that decode back to the text."""
    subject, text, name = "ご注文ありがとうございます", "本文です。\n二行目も。", "山田太郎"
    response = await api.http.post(
        "/v1/messages",
        json=message(
            to=[f"{name} <taro@docomo.test>"], subject=subject, text=text, charset="iso-2022-jp"
        ),
        headers=api.as_tenant(),
    )
    assert response.status_code == 202, response.text
    data = await delivered_to(api, "taro@docomo.test")
    assert data.isascii()  # 7-bit on the wire
    assert b"=?iso-2022-jp?b?" in data
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == subject
    assert parsed["To"].addresses[0].display_name == name
    part = parsed.get_body(("plain",))
    assert part.get_content_charset() == "iso-2022-jp"
    assert part.get_content().replace("\r\n", "\n").strip() == text


async def test_raw_messages_are_sent_as_they_are(api: Api) -> None:
    """A raw message goes out byte for byte after Hato's DKIM signature and one Received field
    of its own."""
    raw = (
        b"From: orders@shop.test\r\nTo: raw@ok.test\r\nSubject: raw\r\n"
        b"Date: Thu, 03 Dec 2026 07:00:00 +0000\r\n"
        b"Message-ID: <raw-1@shop.test>\r\n\r\nexact bytes\r\n"
    )
    response = await api.http.post(
        "/v1/messages/raw",
        json={"to": ["raw@ok.test"], "message": base64.b64encode(raw).decode()},
        headers=api.as_tenant(),
    )
    assert response.status_code == 202, response.text
    data = await delivered_to(api, "raw@ok.test")
    assert data.startswith(b"DKIM-Signature:") and data.endswith(raw)
    # One Received field of Hato's own between the signature and the message.
    received = data[: -len(raw)].split(b"\r\nReceived: ", 1)[1]
    assert received.startswith(b"from http (") and b"(Hato) with HTTP id " in received


@pytest.mark.parametrize(
    "change, where",
    [
        ({"surprise": 1}, "surprise"),
        ({"subject": "two\r\nBcc: victim@evil.test"}, "subject"),
        ({"headers": {"X-Evil": "a\nBcc: victim@evil.test"}}, "headers.X-Evil"),
        ({"headers": {"Bcc": "victim@evil.test"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"to": []}, ""),
        ({"to": ["not an address"]}, "to.0"),
        ({"to": ["victim%evil.test@ok.test"]}, "to.0"),
        ({"text": None}, ""),
        ({"attachments": [{"filename": "a", "content": "***"}]}, "attachments.0.content"),
        ({"charset": "latin-1"}, "charset"),
        # Every character the email package takes for a line break, not only CR and LF.
        ({"subject": "a\x0cBcc: victim@evil.test"}, "subject"),
        ({"subject": "a\x0bb"}, "subject"),
        ({"headers": {"X-Evil": "a\u2028Bcc: victim@evil.test"}}, "headers.X-Evil"),
        ({"headers": {"X-Evil": "a\x85b"}}, "headers.X-Evil"),
        ({"tags": ["a\x1cb"]}, "tags.0"),
        # One address per field: a list in one string is not a list.
        ({"to": ["a@ok.test,victim@evil.test"]}, "to.0"),
        ({"from": "orders@shop.test, ceo@bank.test"}, "from"),
        ({"from": "orders@shop.test <ceo@bank.test>"}, "from"),
        ({"metadata": {"$where": "x"}}, "metadata"),
        ({"metadata": {"a.b": "x"}}, "metadata"),
    ],
)
async def test_bad_requests_get_a_400_problem_document(api: Api, change, where) -> None:
    """Unknown fields, CR/LF in any header, reserved headers, bad addresses: 400 with the
    location of the error, and nothing is sent."""
    response = await api.http.post("/v1/messages", json=message(**change), headers=api.as_tenant())
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert any(e["location"].endswith(where) for e in problem["errors"]), problem


async def test_no_composed_line_is_longer_than_998_octets(api: Api) -> None:
    """A header line over the 2,048-octet line limit is refused (400, naming the limit), in
    the JSON and in the raw API; a long one with spaces is folded and sent."""
    long = await api.http.post(
        "/v1/messages", json=message(headers={"X-Long": "y" * 5001}), headers=api.as_tenant()
    )
    assert long.status_code == 400 and "2048" in long.json()["detail"], long.text
    raw = b"From: orders@shop.test\r\nTo: raw@ok.test\r\nX-Long: " + b"y" * 5001 + b"\r\n\r\nx"
    response = await api.http.post(
        "/v1/messages/raw",
        json={"to": ["raw@ok.test"], "message": base64.b64encode(raw).decode()},
        headers=api.as_tenant(),
    )
    assert response.status_code == 400 and "2048" in response.json()["detail"], response.text
    folded = await api.http.post(
        "/v1/messages",
        json=message(to=["fold@ok.test"], headers={"X-Words": "word " * 900}),
        headers=api.as_tenant(),
    )
    assert folded.status_code == 202, folded.text
    data = await delivered_to(api, "fold@ok.test")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


@pytest.mark.parametrize(
    "raw",
    [
        b"From: orders@shop.test\r\nFrom: ceo@bank.test\r\n\r\nx",
        b"From: orders@shop.test, ceo@bank.test\r\n\r\nx",
        b"From: orders@shop.test\r\nSubject: a\rBcc: victim@evil.test\r\n\r\nx",
    ],
)
async def test_a_raw_message_must_have_one_from_and_clean_headers(api: Api, raw: bytes) -> None:
    """Two From fields, two mailboxes in one, or a bare CR that would make a header: 400."""
    response = await api.http.post(
        "/v1/messages/raw",
        json={"to": ["raw@ok.test"], "message": base64.b64encode(raw).decode()},
        headers=api.as_tenant(),
    )
    assert response.status_code == 400, response.text


async def test_authentication_and_sender_rules(api: Api) -> None:
    """No key or a wrong key: 401; the operator token cannot send (403); a domain that is not
    the tenant's: 403."""
    assert (await api.http.post("/v1/messages", json=message())).status_code == 401
    wrong = {"Authorization": "Bearer hato_00000000_" + "x" * 43}
    assert (await api.http.post("/v1/messages", json=message(), headers=wrong)).status_code == 401
    op = {"Authorization": f"Bearer {OPERATOR}"}
    assert (await api.http.post("/v1/messages", json=message(), headers=op)).status_code == 403
    foreign = await api.http.post(
        "/v1/messages", json=message(**{"from": "x@rival.test"}), headers=api.as_tenant()
    )
    assert foreign.status_code == 403 and "rival.test" in foreign.json()["detail"]


async def test_idempotency_key_replays_the_first_response(api: Api) -> None:
    """The same key and body: the same 202 again and one message only; the same key with
    another body: 422."""
    tag = unique("idem")
    headers = {**api.as_tenant(), "Idempotency-Key": tag}
    first = await api.http.post("/v1/messages", json=message(subject=tag), headers=headers)
    again = await api.http.post("/v1/messages", json=message(subject=tag), headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert await api.store.db.messages.count_documents({"subject": tag}) == 1
    other = await api.http.post("/v1/messages", json=message(subject="other"), headers=headers)
    assert other.status_code == 422


async def test_a_replayed_refusal_is_a_problem_document_too(api: Api) -> None:
    """A refusal replayed for its Idempotency-Key is the same problem document, served as
    application/problem+json like the first answer (not as plain JSON)."""
    headers = {**api.as_tenant(), "Idempotency-Key": unique("idem-refused")}
    body = message(**{"from": "x@rival.test"})
    first = await api.http.post("/v1/messages", json=body, headers=headers)
    again = await api.http.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 403
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert again.headers["content-type"] == first.headers["content-type"] == PROBLEM


async def test_batch_gives_a_result_per_message(api: Api) -> None:
    """A batch answers each message on its own: the refused one (another tenant's domain) does
    not stop the others, which are delivered."""
    response = await api.http.post(
        "/v1/messages/batch",
        json={
            "messages": [
                message(to=["b1@ok.test"]),
                message(**{"from": "x@rival.test"}),
                message(to=["b3@ok.test"]),
            ]
        },
        headers=api.as_tenant(),
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 403, 202]
    assert results[0]["recipients"][0]["address"] == "b1@ok.test"
    await delivered_to(api, "b3@ok.test")


async def test_a_tenant_never_sees_another_tenants_messages(api: Api) -> None:
    """Another tenant's message id is 404, exactly like an unknown one."""
    sent = await api.http.post("/v1/messages", json=message(), headers=api.as_tenant())
    url = f"/v1/messages/{sent.json()['id']}"
    assert (await api.http.get(url, headers=api.as_tenant())).status_code == 200
    rival = await api.http.get(url, headers=api.as_tenant(api.rival_key))
    assert rival.status_code == 404
    assert rival.json() == (
        await api.http.get("/v1/messages/nope", headers=api.as_tenant(api.rival_key))
    ).json() | {"detail": rival.json()["detail"]}


async def test_openapi_is_published(api: Api) -> None:
    """/openapi.json names the sending and reading routes."""
    spec = (await api.http.get("/openapi.json")).json()
    assert {
        "/v1/messages",
        "/v1/messages/raw",
        "/v1/messages/batch",
        "/v1/messages/{message_id}",
    } <= set(spec["paths"])


async def test_the_admin_api_provisions_a_tenant_that_can_send(api: Api) -> None:
    """Operator: tenant → domain (DNS records) → not verified until its DKIM record is in DNS
    → verified → an SMTP credential and an API key (shown once) → the key sends."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    name, domain = unique("t"), f"{unique('d')}.test"
    r = await api.http.post(
        "/admin/v1/tenants",
        headers=op,
        json={"name": name, "networks": ["192.0.2.0/24"], "limits": {"max_recipients": 10}},
    )
    assert r.status_code == 201, r.text
    assert (
        await api.http.post("/admin/v1/tenants", headers=op, json={"name": name})
    ).status_code == 409
    for networks in (["0.0.0.0/0"], ["::/0"], ["192.0.2.0/24", "0.0.0.0/1"]):
        wide = await api.http.post(
            "/admin/v1/tenants", headers=op, json={"name": unique("w"), "networks": networks}
        )
        assert wide.status_code == 400 and "wider than" in wide.text, wide.text
    wide = await api.http.post(
        f"/admin/v1/tenants/{name}/networks", headers=op, json={"cidr": "0.0.0.0/0"}
    )
    assert wide.status_code == 400 and "wider than" in wide.text, wide.text
    meant = await api.http.post(
        f"/admin/v1/tenants/{name}/networks",
        headers=op,
        json={"cidr": "10.0.0.0/7", "allow_wide": True},
    )
    assert meant.status_code == 201, meant.text
    r = await api.http.post(
        f"/admin/v1/tenants/{name}/domains", headers=op, json={"domain": domain}
    )
    assert r.status_code == 201, r.text
    records = {rec["type"] + " " + rec["name"]: rec["value"] for rec in r.json()["dns_records"]}
    dkim_txt = records[f"TXT hato._domainkey.{domain}"]
    assert dkim_txt.startswith("v=DKIM1; k=rsa; p=")
    assert records[f"TXT {domain}"].startswith("v=spf1 include:")
    assert f"CNAME bounces.{domain}" in records

    r = await api.http.post(f"/admin/v1/domains/{domain}/verify", headers=op)
    assert r.json()["verified"] is False and r.json()["dkim"][0]["status"] == "missing"
    api.dns.publish(f"hato._domainkey.{domain}", dkim_txt)
    r = await api.http.post(f"/admin/v1/domains/{domain}/verify", headers=op)
    assert r.json()["verified"] is True and r.json()["dkim"][0]["status"] == "found"

    r = await api.http.post(
        f"/admin/v1/tenants/{name}/credentials",
        headers=op,
        json={"username": f"{name}-smtp", "allowed_from": [domain]},
    )
    assert r.status_code == 201 and len(r.json()["password"]) >= 20
    listed = (await api.http.get(f"/admin/v1/tenants/{name}/credentials", headers=op)).json()
    assert "password" not in json.dumps(listed) and "hash" not in json.dumps(listed)
    r = await api.http.post(f"/admin/v1/tenants/{name}/api-keys", headers=op, json={"name": "ci"})
    assert r.status_code == 201
    key = r.json()["key"]
    assert key.startswith(f"hato_{r.json()['prefix']}_")

    sent = await api.http.post(
        "/v1/messages",
        headers=api.as_tenant(key),
        json=message(**{"from": f"news@{domain}"}, to=["prov@ok.test"]),
    )
    assert sent.status_code == 202, sent.text
    assert (await api.http.get("/admin/v1/tenants", headers=api.as_tenant(key))).status_code == 403


async def test_the_admin_api_changes_tenants_and_pools(api: Api) -> None:
    """A tenant may only be given pools that exist (422 naming the pool otherwise); PATCH
    changes what it is given and keeps the networks; pool members are added and removed."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    name, pool = unique("t"), unique("p")
    r = await api.http.post(
        "/admin/v1/tenants", headers=op, json={"name": name, "other_pools": [pool]}
    )
    assert r.status_code == 422 and f"no pool {pool}" in r.json()["detail"]
    r = await api.http.post(
        "/admin/v1/tenants", headers=op, json={"name": name, "networks": ["192.0.2.0/24"]}
    )
    assert r.status_code == 201, r.text
    r = await api.http.patch(f"/admin/v1/tenants/{name}", headers=op, json={"pool": pool})
    assert r.status_code == 422
    r = await api.http.post(
        f"/admin/v1/pools/{pool}/members", headers=op, json={"ip": "192.0.2.300"}
    )
    assert r.status_code == 422 and "not an IP address" in r.json()["detail"]
    r = await api.http.post(
        f"/admin/v1/pools/{pool}/members",
        headers=op,
        json={"ip": "127.0.0.9", "helo": "out9.hato.test", "warmup": [100, 200]},
    )
    assert r.status_code == 201, r.text
    r = await api.http.patch(
        f"/admin/v1/tenants/{name}",
        headers=op,
        json={"other_pools": [pool], "limits": {"max_recipients": 7}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["other_pools"] == [pool] and r.json()["networks"] == ["192.0.2.0/24"]
    assert r.json()["limits"] == {"max_recipients": 7}
    pools = (await api.http.get("/admin/v1/pools", headers=op)).json()
    assert [m["ip"] for p in pools if p["name"] == pool for m in p["members"]] == ["127.0.0.9"]
    assert (
        await api.http.delete(f"/admin/v1/pools/{pool}/members/127.0.0.9", headers=op)
    ).status_code == 204
    assert (
        await api.http.delete(f"/admin/v1/pools/{pool}/members/127.0.0.9", headers=op)
    ).status_code == 404
    assert (
        await api.http.patch("/admin/v1/tenants/nobody", headers=op, json={"pool": "default"})
    ).status_code == 404


async def test_a_message_may_name_only_the_pools_its_tenant_may_use(api: Api) -> None:
    """A pool the tenant may not use is 403 naming it; once allowed, the tenant's key may use
    it."""
    refused = await api.http.post(
        "/v1/messages", json=message(pool="bulk"), headers=api.as_tenant()
    )
    assert refused.status_code == 403 and "pool bulk" in refused.json()["detail"]
    await api.store.directory.upsert_tenant("acme", other_pools=["bulk"])
    await asyncio.sleep(0.8)  # the ingest policy reloads tenants every 0.5 s in these tests
    key_identity = await api.store.directory.api_key_identity(api.key)
    assert key_identity.may_use_pool("bulk")


async def test_listing_messages_by_recipient_status_and_tag_with_pages(api: Api) -> None:
    """GET /v1/messages filters the tenant's own messages and pages newest first."""
    tag = unique("tag")
    ids = []
    for n in range(3):
        r = await api.http.post(
            "/v1/messages",
            json=message(to=[f"list{n}@ok.test"], tags=[tag]),
            headers=api.as_tenant(),
        )
        ids.append(r.json()["id"])
    page = (
        await api.http.get("/v1/messages", params={"tag": tag, "limit": 2}, headers=api.as_tenant())
    ).json()
    assert [m["id"] for m in page["messages"]] == [ids[2], ids[1]]
    rest = (
        await api.http.get(
            "/v1/messages", params={"tag": tag, "before": page["next"]}, headers=api.as_tenant()
        )
    ).json()
    assert [m["id"] for m in rest["messages"]] == [ids[0]] and rest["next"] is None
    one = (
        await api.http.get(
            "/v1/messages", params={"recipient": "list1@ok.test"}, headers=api.as_tenant()
        )
    ).json()
    assert [m["id"] for m in one["messages"]] == [ids[1]]
    rival = (
        await api.http.get(
            "/v1/messages", params={"tag": tag}, headers=api.as_tenant(api.rival_key)
        )
    ).json()
    assert rival["messages"] == []
    # Empty parameters (as forms and copied examples send them) mean "not given".
    blank = await api.http.get(
        "/v1/messages?recipient=list2@ok.test&status=&tag=&since=&until=&before=",
        headers=api.as_tenant(),
    )
    assert blank.status_code == 200, blank.text
    assert [m["id"] for m in blank.json()["messages"]] == [ids[2]]
    assert blank.json()["messages"][0]["status"] in ("accepted", "signed", "delivered")
    bad = await api.http.get("/v1/messages?status=lost", headers=api.as_tenant())
    assert bad.status_code == 400 and bad.json()["errors"][0]["location"] == "query.status"


async def test_suppressions_api(api: Api) -> None:
    """A tenant adds, lists and removes its suppressions; a suppressed address is not sent to,
    another tenant neither sees nor removes the entry, and a malformed address is 400."""
    address = f"{unique('s')}@ok.test"
    added = await api.http.post(
        "/v1/suppressions", json={"address": address, "reason": "asked"}, headers=api.as_tenant()
    )
    assert added.status_code == 201
    listed = (await api.http.get("/v1/suppressions", headers=api.as_tenant())).json()
    assert address in {s["address"] for s in listed["suppressions"]}
    sent = await api.http.post("/v1/messages", json=message(to=[address]), headers=api.as_tenant())
    assert sent.json()["recipients"][0]["status"] == "suppressed"
    other = (await api.http.get("/v1/suppressions", headers=api.as_tenant(api.rival_key))).json()
    assert address not in {s["address"] for s in other["suppressions"]}
    assert (
        await api.http.delete(f"/v1/suppressions/{address}", headers=api.as_tenant(api.rival_key))
    ).status_code == 404
    assert (
        await api.http.delete(f"/v1/suppressions/{address}", headers=api.as_tenant())
    ).status_code == 204
    bad = await api.http.post(
        "/v1/suppressions", json={"address": "not an address"}, headers=api.as_tenant()
    )
    assert bad.status_code == 400


async def _head_only(api: Api, head: bytes) -> bytes:
    """Send a request's head and the first 64 KiB of its body, never the rest; the answer."""
    port = api.http.base_url.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b"\r\n" + b"{" + b" " * 65535)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()


async def test_a_caller_is_authenticated_before_its_body_is_read(api: Api) -> None:
    """A 60 MiB POST without a key, or with a wrong one, gets its 401 while the body is still
    unsent: ingest never holds it."""
    for auth in (b"", b"Authorization: Bearer hato_00000000_" + b"x" * 43 + b"\r\n"):
        head = (
            b"POST /v1/messages HTTP/1.1\r\nHost: hato\r\nContent-Type: application/json\r\n"
            + auth
            + b"Content-Length: 62914560\r\n"
        )
        answer = await _head_only(api, head)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"application/problem+json" in answer


async def test_each_route_takes_a_body_of_its_size(api: Api) -> None:
    """A tenant's body over its route's limit is refused with 413 from Content-Length before
    it is sent, and a chunked one as soon as it passes the limit."""
    key = api.as_tenant()["Authorization"].encode()
    head = (
        b"POST /v1/suppressions HTTP/1.1\r\nHost: hato\r\nContent-Type: application/json\r\n"
        b"Authorization: " + key + b"\r\nContent-Length: 2000000\r\n"
    )
    answer = await _head_only(api, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]

    # Chunked: 17 chunks of 64 KiB pass the 1 MiB limit; then the client waits for the answer.
    reader, writer = await asyncio.open_connection("127.0.0.1", api.http.base_url.port)
    try:
        writer.write(
            b"POST /v1/suppressions HTTP/1.1\r\nHost: hato\r\nContent-Type: application/json\r\n"
            b"Authorization: "
            + key
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"10000\r\n" + b" " * 65536 + b"\r\n") * 17
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


async def test_the_admin_api_removes_a_domain_then_its_tenant(api: Api) -> None:
    """A tenant that still owns a domain is not removed (409); once its domain is removed
    (a second removal is 404), the tenant goes, and is then 404 like any unknown one."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    name, domain = unique("gone"), f"{unique('gone')}.test"
    assert (
        await api.http.post("/admin/v1/tenants", json={"name": name}, headers=op)
    ).status_code == 201
    added = await api.http.post(
        f"/admin/v1/tenants/{name}/domains", json={"domain": domain}, headers=op
    )
    assert added.status_code == 201, added.text
    refused = await api.http.delete(f"/admin/v1/tenants/{name}", headers=op)
    assert refused.status_code == 409 and "domain" in refused.json()["detail"]
    assert (await api.http.delete(f"/admin/v1/domains/{domain}", headers=op)).status_code == 204
    assert (await api.http.delete(f"/admin/v1/domains/{domain}", headers=op)).status_code == 404
    assert (await api.http.delete(f"/admin/v1/tenants/{name}", headers=op)).status_code == 204
    assert (await api.http.get(f"/admin/v1/tenants/{name}", headers=op)).status_code == 404
    assert (await api.http.delete(f"/admin/v1/tenants/{name}")).status_code == 401

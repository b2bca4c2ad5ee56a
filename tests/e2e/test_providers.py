"""Moving off SendGrid, Postmark or Mailgun: their SMTP header fields and their send APIs (with
their own client libraries, only the base URL changed) label and send mail through Hato."""

from __future__ import annotations

import asyncio
import json
from email.message import EmailMessage

import aiosmtplib
import pytest

from tests.conftest import unique
from tests.e2e.conftest import Api, delivered_to
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


def smtp_port(api: Api) -> int:
    assert api.stack is not None
    return int(api.stack.env["HATO_INGEST_SMTP_PORT"])


async def stored(api: Api, address: str) -> dict:
    """The message sent to ``address``, once its delivery event is written."""

    async def find() -> dict | None:
        doc = await api.store.db.recipients.find_one({"address": address})
        if doc is None:
            return None
        view = await api.http.get(f"/v1/messages/{doc['message_id']}", headers=api.as_tenant())
        body = view.json()
        return body if "delivered" in [e["type"] for e in body.get("events", [])] else None

    return await eventually(find, until=lambda m: m is not None, timeout=60)


async def test_smtp_provider_fields_label_the_message_and_are_stripped(api: Api) -> None:
    """X-SMTPAPI, X-PM-Tag/X-PM-Metadata-*, X-Mailgun-Tag/-Variables and X-Hato-Tags set the
    message's tags and metadata, which every event carries and GET /v1/messages filters by; the
    fields are not in the delivered mail."""
    address = f"{unique('labels')}@ok.test"
    mail = EmailMessage()
    mail["From"] = "orders@shop.test"
    mail["To"] = address
    mail["Subject"] = "labelled"
    mail["X-SMTPAPI"] = '{"category": ["welcome"], "unique_args": {"uid": "u-7"}}'
    mail["X-PM-Tag"] = "receipts"
    mail["X-PM-Metadata-order"] = "42"
    mail["X-Mailgun-Tag"] = "mg"
    mail["X-Mailgun-Variables"] = '{"plan": "pro"}'
    mail["X-Hato-Tags"] = "hato"
    mail.set_content("hello")
    await aiosmtplib.send(mail, hostname="127.0.0.1", port=smtp_port(api))

    data = await delivered_to(api, address)
    for name in (b"X-SMTPAPI", b"X-PM-", b"X-Mailgun-", b"X-Hato-"):
        assert name.lower() not in data.lower()
    message = await stored(api, address)
    tags = ["welcome", "receipts", "mg", "hato"]
    metadata = {"uid": "u-7", "order": "42", "plan": "pro"}
    assert (message["tags"], message["metadata"]) == (tags, metadata)
    for event in message["events"]:
        assert (event["tags"], event["metadata"]) == (tags, metadata), event["type"]

    listed = await api.http.get(
        "/v1/messages",
        params={"tag": "receipts", "metadata": ["order:42", "plan:pro"]},
        headers=api.as_tenant(),
    )
    assert [m["id"] for m in listed.json()["messages"]] == [message["id"]]
    other = await api.http.get(
        "/v1/messages", params={"metadata": "order:43"}, headers=api.as_tenant()
    )
    assert message["id"] not in [m["id"] for m in other.json()["messages"]]
    bad = await api.http.get(
        "/v1/messages", params={"metadata": "no-colon"}, headers=api.as_tenant()
    )
    assert bad.status_code == 400


async def test_smtp_unreadable_label_is_refused(api: Api) -> None:
    """An X-SMTPAPI that is not JSON is refused with 554 5.6.0 and why, not sent unlabelled."""
    mail = EmailMessage()
    mail["From"] = "orders@shop.test"
    mail["To"] = f"{unique('badlabel')}@ok.test"
    mail["X-SMTPAPI"] = "{not json"
    mail.set_content("hello")
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await aiosmtplib.send(mail, hostname="127.0.0.1", port=smtp_port(api))
    assert refused.value.code == 554
    assert "5.6.0" in refused.value.message and "X-SMTPAPI" in refused.value.message


def base_url(api: Api) -> str:
    return str(api.http.base_url).rstrip("/")


async def test_sendgrid_client_sends_through_hato(api: Api) -> None:
    """SendGrid's own Python client, with only its host changed, sends a mail with categories and
    custom args: 202 with X-Message-Id, delivered, labelled in Hato."""
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import Category, CustomArg, Mail, Substitution

    address = f"{unique('sg')}@ok.test"
    mail = Mail(
        from_email="orders@shop.test",
        to_emails=address,
        subject="Hello -name-",
        plain_text_content="Hi -name-",
        html_content="<p>Hi -name-</p>",
    )
    mail.category = [Category("welcome"), Category("sg")]
    mail.custom_arg = [CustomArg("user_id", "u-1")]
    mail.personalizations[0].add_substitution(Substitution("-name-", "Bo"))
    client = SendGridAPIClient(api_key=api.key, host=base_url(api))
    response = await asyncio.to_thread(client.send, mail)
    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]

    data = await delivered_to(api, address)
    assert b"Subject: Hello Bo" in data and b"Hi Bo" in data
    message = await stored(api, address)
    assert message["id"] == message_id
    assert (sorted(message["tags"]), message["metadata"]) == (["sg", "welcome"], {"user_id": "u-1"})


async def test_sendgrid_errors_are_sendgrids(api: Api) -> None:
    """A bad key is SendGrid's 401, a request missing content its 400 naming the field, a From of
    another tenant its 403; the client raises its own errors for them."""
    from python_http_client.exceptions import BadRequestsError, UnauthorizedError
    from sendgrid import SendGridAPIClient

    body = {
        "personalizations": [{"to": [{"email": "x@ok.test"}]}],
        "from": {"email": "orders@shop.test"},
        "subject": "s",
    }
    client = SendGridAPIClient(api_key="nope", host=base_url(api))
    with pytest.raises(UnauthorizedError) as bad_key:
        await asyncio.to_thread(client.send, body)
    assert json.loads(bad_key.value.body)["errors"][0]["message"].startswith("The provided")

    client = SendGridAPIClient(api_key=api.key, host=base_url(api))
    with pytest.raises(BadRequestsError) as no_content:
        await asyncio.to_thread(client.send, body)
    assert json.loads(no_content.value.body)["errors"][0]["field"] == "content"

    wrong = await api.http.post(
        "/v3/mail/send",
        json=body
        | {"from": {"email": "a@rival.test"}, "content": [{"type": "text/plain", "value": "x"}]},
        headers=api.as_tenant(),
    )
    assert wrong.status_code == 403
    assert wrong.json()["errors"][0]["message"]
    schema = await api.http.post("/v3/mail/send", json={"x": 1}, headers=api.as_tenant())
    assert schema.status_code == 400 and schema.json()["errors"][0]["field"]


async def test_postmark_client_sends_through_hato(api: Api) -> None:
    """postmarker, with only its root URL changed, sends one message and a batch: Postmark's
    answers with MessageID; Tag and Metadata label the mail; a bad token is its ErrorCode 10."""
    from postmarker.core import PostmarkClient
    from postmarker.exceptions import ClientError

    address, second = f"{unique('pm')}@ok.test", f"{unique('pm2')}@ok.test"
    client = PostmarkClient(server_token=api.key, root_api_url=base_url(api) + "/")
    sent = await asyncio.to_thread(
        client.emails.send,
        From="Shop <orders@shop.test>",
        To=address,
        Subject="Receipt",
        TextBody="Thanks",
        Tag="receipts",
        Metadata={"order": "9"},
        Headers={"X-Shop": "1"},
    )
    assert sent["ErrorCode"] == 0 and sent["Message"] == "OK" and sent["To"] == address
    batch = await asyncio.to_thread(
        client.emails.send_batch,
        {"From": "orders@shop.test", "To": second, "Subject": "B", "HtmlBody": "<b>b</b>"},
        {"From": "orders@rival.test", "To": second, "Subject": "C", "TextBody": "c"},
    )
    assert [b["ErrorCode"] for b in batch] == [0, 400]

    data = await delivered_to(api, address)
    assert b"X-Shop: 1" in data
    message = await stored(api, address)
    assert message["id"] == sent["MessageID"]
    assert (message["tags"], message["metadata"]) == (["receipts"], {"order": "9"})
    await delivered_to(api, second)

    with pytest.raises(ClientError) as invalid:
        await asyncio.to_thread(client.emails.send, From="not an address", To=address, TextBody="x")
    assert invalid.value.error_code == 300
    bad = PostmarkClient(server_token="nope", root_api_url=base_url(api) + "/")
    with pytest.raises(ClientError) as bad_token:
        await asyncio.to_thread(bad.emails.send, From="orders@shop.test", To=address, TextBody="x")
    assert bad_token.value.error_code == 10
    refused = await api.http.post(
        "/email", json={"From": "orders@shop.test"}, headers={"X-Postmark-Server-Token": "nope"}
    )
    assert refused.status_code == 401 and refused.json()["ErrorCode"] == 10


async def test_mailgun_form_sends_through_hato(api: Api) -> None:
    """A Mailgun request (requests, Basic auth api:KEY, multipart with an attachment, o:tag,
    v: and h: fields) sends a mail: Mailgun's answer, the labels in Hato; a bad key is 401
    Forbidden, another tenant's domain 404, a form without text 400 with Mailgun's message."""
    import requests

    address = f"{unique('mg')}@ok.test"
    url = f"{base_url(api)}/v3/shop.test/messages"
    response = await asyncio.to_thread(
        requests.post,
        url,
        auth=("api", api.key),
        files=[("attachment", ("note.txt", b"attached words", "text/plain"))],
        data={
            "from": "Shop <orders@shop.test>",
            "to": [address],
            "subject": "Mailgun",
            "text": "hello",
            "o:tag": ["mg", "september"],
            "v:account": "a-1",
            "h:X-Campaign": "fall",
            "h:Reply-To": "help@shop.test",
        },
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["message"] == "Queued. Thank you." and answer["id"].endswith("@shop.test>")

    data = await delivered_to(api, address)
    assert b"X-Campaign: fall" in data and b"Reply-To: help@shop.test" in data
    assert b"note.txt" in data
    message = await stored(api, address)
    assert answer["id"] == f"<{message['id']}@shop.test>"
    assert (message["tags"], message["metadata"]) == (["mg", "september"], {"account": "a-1"})

    urlencoded = await asyncio.to_thread(
        requests.post,
        url,
        auth=("api", api.key),
        data={"from": "orders@shop.test", "to": address, "subject": "x"},
        timeout=30,
    )
    assert urlencoded.status_code == 400
    assert urlencoded.json() == {
        "message": "Need at least one of 'text' or 'html' parameters specified"
    }
    bad_key = await asyncio.to_thread(
        requests.post, url, auth=("api", "nope"), data={"from": "a"}, timeout=30
    )
    assert (bad_key.status_code, bad_key.text) == (401, "Forbidden")
    rival = await asyncio.to_thread(
        requests.post,
        f"{base_url(api)}/v3/rival.test/messages",
        auth=("api", api.key),
        data={"from": "a@rival.test", "to": address, "text": "x"},
        timeout=30,
    )
    assert rival.status_code == 404 and rival.json()["message"].startswith("Domain not found")


async def test_sandbox_mode_records_and_sends_nothing(api: Api) -> None:
    """SendGrid's sandbox_mode, Mailgun's o:testmode and Hato's own sandbox accept, check and
    record a message whose recipients end ``sandboxed`` (an event says so) and send nothing;
    a sandboxed message that is invalid is refused all the same."""
    import requests

    sg, mg, own = (f"{unique(p)}@ok.test" for p in ("sgsand", "mgsand", "sand"))
    sent = await api.http.post(
        "/v3/mail/send",
        json={
            "personalizations": [{"to": [{"email": sg}]}],
            "from": {"email": "orders@shop.test"},
            "subject": "sandboxed",
            "content": [{"type": "text/plain", "value": "x"}],
            "mail_settings": {"sandbox_mode": {"enable": True}},
        },
        headers=api.as_tenant(),
    )
    assert sent.status_code == 202, sent.text
    form = await asyncio.to_thread(
        requests.post,
        f"{base_url(api)}/v3/shop.test/messages",
        auth=("api", api.key),
        data={"from": "orders@shop.test", "to": mg, "text": "x", "o:testmode": "yes"},
        timeout=30,
    )
    assert form.status_code == 200, form.text
    mine = await api.http.post(
        "/v1/messages",
        json={"from": "orders@shop.test", "to": [own], "text": "x", "sandbox": True},
        headers=api.as_tenant(),
    )
    assert mine.json()["recipients"][0]["status"] == "sandboxed"
    for address in (sg, mg, own):
        doc = await api.store.db.recipients.find_one({"address": address})
        view = (
            await api.http.get(f"/v1/messages/{doc['message_id']}", headers=api.as_tenant())
        ).json()
        assert view["status"] == "sandboxed"
        assert [r["status"] for r in view["recipients"]] == ["sandboxed"]
        assert sorted(e["type"] for e in view["events"]) == ["accepted", "sandboxed"]
    await asyncio.sleep(2)  # the pipeline had time to send, had it been sent
    assert not [r for r in api.sink.received if {sg, mg, own} & set(r.rcpt_tos)]
    invalid = await api.http.post(
        "/v1/messages",
        json={"from": "orders@rival.test", "to": [own], "text": "x", "sandbox": True},
        headers=api.as_tenant(),
    )
    assert invalid.status_code == 403


class FormatReceiver:
    """Endpoints of the three provider formats on loopback: each POST kept with its headers."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.routing import Route

        from shared.ops import HttpServer

        self.posts: dict[str, list[tuple[dict, bytes]]] = {"sg": [], "pm": [], "mg": []}
        app = Starlette(routes=[Route("/{kind}", self.hook, methods=["POST"])])
        self.server = HttpServer(app, host="127.0.0.1", port=0)

    async def hook(self, request):
        from starlette.responses import Response

        self.posts[request.path_params["kind"]].append(
            (dict(request.headers), await request.body())
        )
        return Response(status_code=200)

    def url(self, kind: str, credentials: str = "") -> str:
        return f"http://{credentials}127.0.0.1:{self.server.port}/{kind}"


async def test_webhooks_in_sendgrid_postmark_and_mailgun_formats(api: Api) -> None:
    """Endpoints in SendGrid's, Postmark's and Mailgun's formats get a delivery and a bounce
    in those shapes, with the tags and metadata, each verified by that provider's documented
    algorithm: SendGrid's ECDSA with the endpoint's public key (its own library's verifier),
    Postmark's Basic auth from the URL, Mailgun's HMAC of timestamp and token."""
    import base64
    import hashlib
    import hmac

    from sendgrid.helpers.eventwebhook import EventWebhook

    receiver = FormatReceiver()
    await receiver.server.start()
    previous = api.sink.rcpt_reply
    api.sink.rcpt_reply = lambda a: "550 5.1.1 No such user" if a.startswith("gone") else None
    hooks: dict[str, dict] = {}
    try:
        for kind, fmt, creds in (
            ("sg", "sendgrid", ""),
            ("pm", "postmark", "hook%40shop:s3cret@"),
            ("mg", "mailgun", ""),
        ):
            created = await api.http.post(
                "/v1/webhooks",
                json={"url": receiver.url(kind, creds), "format": fmt},
                headers=api.as_tenant(),
            )
            assert created.status_code == 201, created.text
            hooks[kind] = created.json()
            assert "s3cret" not in created.json()["url"]
        assert hooks["sg"]["public_key"] and hooks["pm"]["public_key"] is None
        listed = await api.http.get("/v1/webhooks", headers=api.as_tenant())
        formats = {w["id"]: (w["format"], w["public_key"]) for w in listed.json()["webhooks"]}
        assert formats[hooks["sg"]["id"]] == ("sendgrid", hooks["sg"]["public_key"])

        ok, gone = f"{unique('fmt')}@ok.test", f"{unique('gone')}@ok.test"
        for address in (ok, gone):
            sent = await api.http.post(
                "/v1/messages",
                json={
                    "from": "orders@shop.test",
                    "to": [address],
                    "subject": "formats",
                    "text": "x",
                    "tags": ["welcome"],
                    "metadata": {"user_id": "u-9"},
                },
                headers=api.as_tenant(),
            )
            assert sent.status_code == 202, sent.text

        def sendgrid_events() -> list[dict]:
            return [e for _, body in receiver.posts["sg"] for e in json.loads(body)]

        await eventually(
            lambda: asyncio.sleep(0, {e["event"] for e in sendgrid_events()}),
            until=lambda seen: {"processed", "delivered", "bounce"} <= seen,
            timeout=30,
        )
        verifier = EventWebhook()
        key = verifier.convert_public_key_to_ecdsa(hooks["sg"]["public_key"])
        for headers, body in receiver.posts["sg"]:
            assert verifier.verify_signature(
                body.decode(),
                headers["x-twilio-email-event-webhook-signature"],
                headers["x-twilio-email-event-webhook-timestamp"],
                key,
            )
        assert not verifier.verify_signature(
            receiver.posts["sg"][0][1].decode() + " ",
            receiver.posts["sg"][0][0]["x-twilio-email-event-webhook-signature"],
            receiver.posts["sg"][0][0]["x-twilio-email-event-webhook-timestamp"],
            key,
        )
        by_kind = {(e["event"], e["email"]): e for e in sendgrid_events()}
        delivered = by_kind[("delivered", ok)]
        assert delivered["category"] == ["welcome"] and delivered["user_id"] == "u-9"
        bounce = by_kind[("bounce", gone)]
        assert bounce["type"] == "bounce" and bounce["bounce_classification"] == "Invalid Address"
        assert bounce["user_id"] == "u-9"

        await eventually(
            lambda: asyncio.sleep(
                0, {json.loads(b)["RecordType"] for _, b in receiver.posts["pm"]}
            ),
            until=lambda seen: {"Delivery", "Bounce"} <= seen,
            timeout=30,
        )
        basic = "Basic " + base64.b64encode(b"hook@shop:s3cret").decode()
        for headers, body in receiver.posts["pm"]:
            assert headers["authorization"] == basic
            record = json.loads(body)
            assert record["Tag"] == "welcome" and record["Metadata"] == {"user_id": "u-9"}
        bounces = [json.loads(b) for _, b in receiver.posts["pm"]]
        bounce = next(r for r in bounces if r["RecordType"] == "Bounce")
        assert (bounce["Email"], bounce["Type"], bounce["Inactive"]) == (gone, "HardBounce", True)

        await eventually(
            lambda: asyncio.sleep(
                0, {json.loads(b)["event-data"]["event"] for _, b in receiver.posts["mg"]}
            ),
            until=lambda seen: {"accepted", "delivered", "failed"} <= seen,
            timeout=30,
        )
        signing_key = hooks["mg"]["secret"].encode()
        for _, body in receiver.posts["mg"]:
            posted = json.loads(body)
            sig = posted["signature"]
            expected = hmac.new(
                signing_key, (sig["timestamp"] + sig["token"]).encode(), hashlib.sha256
            ).hexdigest()
            assert hmac.compare_digest(sig["signature"], expected)
            data = posted["event-data"]
            assert data["tags"] == ["welcome"] and data["user-variables"] == {"user_id": "u-9"}
        failed = next(
            json.loads(b)["event-data"]
            for _, b in receiver.posts["mg"]
            if json.loads(b)["event-data"]["event"] == "failed"
        )
        assert (failed["recipient"], failed["severity"]) == (gone, "permanent")
    finally:
        api.sink.rcpt_reply = previous
        await receiver.server.stop()
        for hook in hooks.values():
            await api.http.delete(f"/v1/webhooks/{hook['id']}", headers=api.as_tenant())


async def test_scheduled_messages_wait_survive_a_restart_and_can_be_cancelled(api: Api) -> None:
    """A message with send_at is held (recipients ``scheduled``), survives ingest being killed
    and started again, and is sent once its time has come, not before; SendGrid's send_at,
    Mailgun's o:deliverytime and X-SMTPAPI's send_at hold theirs too, and a held message is
    cancelled through the API (``cancelled``, a second cancel 409, another tenant's 404)."""
    import email.utils
    from datetime import UTC, datetime, timedelta

    import requests

    later = f"{unique('later')}@ok.test"
    send_at = datetime.now(UTC) + timedelta(seconds=8)
    held = await api.http.post(
        "/v1/messages",
        json={
            "from": "orders@shop.test",
            "to": [later],
            "subject": "later",
            "text": "x",
            "send_at": send_at.isoformat(),
        },
        headers=api.as_tenant(),
    )
    assert held.status_code == 202, held.text
    assert held.json()["recipients"][0]["status"] == "scheduled"
    view = await api.http.get(f"/v1/messages/{held.json()['id']}", headers=api.as_tenant())
    assert view.json()["status"] == "scheduled"

    assert api.stack is not None
    ingest = api.stack.processes["ingest"]
    ingest.process.kill()
    await ingest.process.wait()
    await api.stack.start("ingest")

    message = await stored(api, later)
    delivered = next(e for e in message["events"] if e["type"] == "delivered")
    assert datetime.fromisoformat(delivered["at"]) >= send_at

    hour = datetime.now(UTC) + timedelta(hours=1)
    sg = await api.http.post(
        "/v3/mail/send",
        json={
            "personalizations": [{"to": [{"email": f"{unique('sgat')}@ok.test"}]}],
            "from": {"email": "orders@shop.test"},
            "subject": "at",
            "content": [{"type": "text/plain", "value": "x"}],
            "send_at": int(hour.timestamp()),
        },
        headers=api.as_tenant(),
    )
    assert sg.status_code == 202, sg.text
    mg = await asyncio.to_thread(
        requests.post,
        f"{base_url(api)}/v3/shop.test/messages",
        auth=("api", api.key),
        data={
            "from": "orders@shop.test",
            "to": f"{unique('mgat')}@ok.test",
            "text": "x",
            "o:deliverytime": email.utils.format_datetime(hour),
        },
        timeout=30,
    )
    assert mg.status_code == 200, mg.text
    smtp_later = f"{unique('smtpat')}@ok.test"
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "orders@shop.test", smtp_later, "at"
    mail["X-SMTPAPI"] = json.dumps({"send_at": int(hour.timestamp())})
    mail.set_content("x")
    await aiosmtplib.send(mail, hostname="127.0.0.1", port=smtp_port(api))
    smtp_doc = await api.store.db.recipients.find_one({"address": smtp_later})
    assert smtp_doc["status"] == "scheduled"
    ids = [
        sg.headers["X-Message-Id"],
        mg.json()["id"].strip("<>").partition("@")[0],
        smtp_doc["message_id"],
    ]
    for message_id in ids:
        view = await api.http.get(f"/v1/messages/{message_id}", headers=api.as_tenant())
        assert view.json()["status"] == "scheduled"
        rival = await api.http.post(
            f"/v1/messages/{message_id}/cancel", headers=api.as_tenant(api.rival_key)
        )
        assert rival.status_code == 404
        cancelled = await api.http.post(
            f"/v1/messages/{message_id}/cancel", headers=api.as_tenant()
        )
        assert cancelled.status_code == 200, cancelled.text
        body = cancelled.json()
        assert body["status"] == "cancelled"
        assert [r["status"] for r in body["recipients"]] == ["cancelled"]
        assert "cancelled" in [e["type"] for e in body["events"]]
        again = await api.http.post(f"/v1/messages/{message_id}/cancel", headers=api.as_tenant())
        assert again.status_code == 409


async def test_provider_idempotency_inactive_recipients_and_size_limit(api: Api) -> None:
    """An Idempotency-Key makes a SendGrid retry get the first X-Message-Id (nothing sent
    twice); a Postmark send to a suppressed address only is 422 ErrorCode 406 (recorded, not
    sent); a body declared over the limit is refused at the gate in the provider's shape."""
    address = f"{unique('idem')}@ok.test"
    body = {
        "personalizations": [{"to": [{"email": address}]}],
        "from": {"email": "orders@shop.test"},
        "subject": "once",
        "content": [{"type": "text/plain", "value": "x"}],
    }
    headers = api.as_tenant() | {"Idempotency-Key": unique("sg-key")}
    first = await api.http.post("/v3/mail/send", json=body, headers=headers)
    again = await api.http.post("/v3/mail/send", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.headers["X-Message-Id"] == again.headers["X-Message-Id"]
    assert await api.store.db.recipients.count_documents({"address": address}) == 1

    gone = f"{unique('inactive')}@ok.test"
    suppressed = await api.http.post(
        "/v1/suppressions", json={"address": gone}, headers=api.as_tenant()
    )
    assert suppressed.status_code in (200, 201), suppressed.text
    refused = await api.http.post(
        "/email",
        json={"From": "orders@shop.test", "To": gone, "TextBody": "x"},
        headers={"X-Postmark-Server-Token": api.key},
    )
    assert refused.status_code == 422
    assert refused.json()["ErrorCode"] == 406 and gone in refused.json()["Message"]

    port = int(str(api.http.base_url).rstrip("/").rsplit(":", 1)[1])
    for path, auth, shape in (
        ("/v3/mail/send", f"Authorization: Bearer {api.key}", b'"errors"'),
        ("/email", f"X-Postmark-Server-Token: {api.key}", b'"ErrorCode"'),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 999999999999\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # it closes after the answer
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413") and shape in answer, answer

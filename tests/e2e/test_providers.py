"""Moving off SendGrid, Postmark or Mailgun: their SMTP header fields and their send APIs (with
their own client libraries, only the base URL changed) label and send mail through Hato."""

from __future__ import annotations

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

    return await eventually(find, until=lambda m: m is not None, timeout=30)


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

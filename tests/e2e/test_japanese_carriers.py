"""Mail for the Japanese carriers through the running services: text beyond JIS X 0208 in
ISO-2022-JP under each tenant choice, long lines taken and repaired before signing, Message-ID
and Date on every door, and a message over a destination's size limit bounced at once."""

from __future__ import annotations

import base64
import email
import email.policy
import re

import pytest

from services.ingest import cp50220
from services.ingest.replies import line_too_long
from shared.directory import TenantLimits
from shared.store import Store
from tests.conftest import TENANT, unique
from tests.e2e.conftest import OPERATOR, Api, delivered_to, message
from tests.helpers.dkim_verify import dkimpy, records
from tests.helpers.smtp import RawSession
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

EVERYDAY = "丸数字①と髙橋"
_WORD = re.compile(r"=\?iso-2022-jp\?b\?([A-Za-z0-9+/=]+)\?=", re.I)


def _jis_words(value: str) -> str:
    return "".join(
        base64.b64decode(w).decode(cp50220.NAME) for w in _WORD.findall(value.replace("\r\n", ""))
    )


async def _key_with(api: Api, **limits: str) -> str:
    """A new API key of the tenant after its options are set (a key's identity, options
    included, is remembered by the door for a while: a new key is read afresh)."""
    await api.store.directory.upsert_tenant(TENANT, limits=TenantLimits(**limits))
    _, key = await api.store.directory.add_api_key(TENANT, name=unique("jp"))
    return key


async def _reset(api: Api, **limits: str) -> None:
    """The tenant's option back to its default, for the tests that follow."""
    await api.store.directory.upsert_tenant(TENANT, limits=TenantLimits(**limits))


def _japanese(to: str) -> dict:
    return message(
        **{"from": f"{EVERYDAY} <orders@shop.test>"},
        to=[f"髙橋﨑 <{to}>"],
        subject=EVERYDAY,
        text=f"{EVERYDAY}さま\n①②③ ご注文ありがとうございます。",
        charset="iso-2022-jp",
    )


async def test_beyond_jis_is_written_as_cp50220_by_default(api: Api) -> None:
    """丸数字①と髙橋 in the subject, the display names and the body: 202 (not 500), and the
    mail arrives in 7-bit ISO-2022-JP that reads back as written (CP50220)."""
    key = await _key_with(api, jis_extensions="cp50220")
    response = await api.http.post(
        "/v1/messages", json=_japanese("cp@docomo.test"), headers=api.as_tenant(key)
    )
    assert response.status_code == 202, response.text
    data = await delivered_to(api, "cp@docomo.test")
    assert data.isascii()
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    assert _jis_words(parsed["Subject"]) == EVERYDAY
    assert _jis_words(parsed["From"]) == EVERYDAY
    assert _jis_words(parsed["To"]) == "髙橋﨑"
    assert parsed.get_content_charset() == "iso-2022-jp"
    body = parsed.get_payload(decode=True).decode(cp50220.NAME).replace("\r\n", "\n")
    assert body.strip() == f"{EVERYDAY}さま\n①②③ ご注文ありがとうございます。"
    assert dkimpy(data, records(api.dkim_key)) == [True]


async def test_beyond_jis_goes_in_utf8_with_an_event_when_the_tenant_says_so(api: Api) -> None:
    """Under jis_extensions=utf-8 the message is sent in UTF-8 (202) and a charset_fallback
    event names the field and the character."""
    key = await _key_with(api, jis_extensions="utf-8")
    try:
        response = await api.http.post(
            "/v1/messages", json=_japanese("utf@docomo.test"), headers=api.as_tenant(key)
        )
    finally:
        await api.store.directory.upsert_tenant(
            TENANT, limits=TenantLimits(jis_extensions="cp50220")
        )
    assert response.status_code == 202, response.text
    data = await delivered_to(api, "utf@docomo.test")
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Subject"] == EVERYDAY
    assert parsed["To"].addresses[0].display_name == "髙橋﨑"
    assert parsed.get_body(("plain",)).get_content_charset() == "utf-8"
    events = await eventually(
        lambda: api.store.events.of_message(response.json()["id"]),
        until=lambda es: any(e["type"] == "charset_fallback" for e in es),
    )
    fallback = next(e for e in events if e["type"] == "charset_fallback")
    assert fallback["detail"]["character"] == "①" and fallback["detail"]["charset"] == "utf-8"


async def test_beyond_jis_is_a_400_naming_the_character_under_refuse(api: Api) -> None:
    """Under jis_extensions=refuse (set through the admin API, which shows it back): 400
    naming the field and ① with its code point. An unknown choice is a 400 of the admin API."""
    op = {"Authorization": f"Bearer {OPERATOR}"}
    bad = await api.http.patch(
        f"/admin/v1/tenants/{TENANT}/limits", json={"jis_extensions": "sjis"}, headers=op
    )
    assert bad.status_code == 400, bad.text
    changed = await api.http.patch(
        f"/admin/v1/tenants/{TENANT}/limits", json={"jis_extensions": "refuse"}, headers=op
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"]["jis_extensions"] == "refuse"
    shown = await api.http.get(f"/admin/v1/tenants/{TENANT}", headers=op)
    assert shown.status_code == 200 and shown.json()["limits"]["jis_extensions"] == "refuse"
    _, key = await api.store.directory.add_api_key(TENANT, name=unique("jp"))
    try:
        response = await api.http.post(
            "/v1/messages", json=_japanese("no@docomo.test"), headers=api.as_tenant(key)
        )
    finally:
        await api.store.directory.upsert_tenant(
            TENANT, limits=TenantLimits(jis_extensions="cp50220")
        )
    assert response.status_code == 400, response.text
    assert "U+2460" in response.json()["detail"] and "'①'" in response.json()["detail"]


async def _smtp(api: Api, rcpt: str, data: bytes) -> str:
    """Relay ``data`` over SMTP from 127.0.0.1 (acme's network); the reply to DATA."""
    raw = await RawSession.open(api.smtp_port)
    try:
        await raw.cmd("EHLO printer.test")
        assert (await raw.cmd("MAIL FROM:<orders@shop.test>"))[0].startswith("250")
        assert (await raw.cmd(f"RCPT TO:<{rcpt}>"))[0].startswith("250")
        assert (await raw.cmd("DATA"))[0].startswith("354")
        await raw.send(data + b".\r\n")
        return (await raw.reply())[0]
    finally:
        await raw.close()


def docomo_refuses(data: bytes) -> bool:
    """docomo's rule: ``500 Line Too Long`` for a line over 1,000 octets with its CRLF."""
    return any(len(line) + 2 > 1000 for line in data.split(b"\r\n"))


async def test_a_long_line_over_smtp_is_repaired_before_signing(api: Api) -> None:
    """A 1,500-octet body line (which docomo would refuse) is accepted, and arrives with no
    line over 998 octets, a valid DKIM signature, and the same decoded text."""
    text = ("検針票のお知らせ" * 63)[:500].encode()  # 1,500 octets of UTF-8 on one line
    assert len(text) == 1500
    head = (
        b"From: orders@shop.test\r\nTo: long@docomo.test\r\nSubject: meter\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"MIME-Version: 1.0\r\n\r\n"
    )
    sent = head + text + b"\r\nsecond line\r\n"
    assert docomo_refuses(sent)
    reply = await _smtp(api, "long@docomo.test", sent)
    assert reply.startswith("250 2.0.0"), reply
    data = await delivered_to(api, "long@docomo.test")
    assert not docomo_refuses(data)
    assert dkimpy(data, records(api.dkim_key)) == [True]
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert parsed.get_payload(decode=True) == text + b"\r\nsecond line\r\n"


async def test_a_line_over_the_limit_is_a_clear_5xx(api: Api) -> None:
    """A 2,100-octet line is over the 2,048-octet limit: 500 5.5.2 naming the limit."""
    sent = b"From: orders@shop.test\r\nTo: over@docomo.test\r\n\r\n" + b"z" * 2100 + b"\r\n"
    reply = await _smtp(api, "over@docomo.test", sent)
    assert reply == str(line_too_long(2048)), reply
    assert "2048" in reply


async def test_message_id_and_date_are_added_on_every_door(api: Api) -> None:
    """A message without Message-ID and Date gets both, over SMTP relay and the raw API."""
    bare = b"From: orders@shop.test\r\nTo: {to}\r\nSubject: no ids\r\n\r\nhello\r\n"
    reply = await _smtp(api, "ids-smtp@ok.test", bare.replace(b"{to}", b"ids-smtp@ok.test"))
    assert reply.startswith("250"), reply
    raw = bare.replace(b"{to}", b"ids-raw@ok.test")
    response = await api.http.post(
        "/v1/messages/raw",
        json={"to": ["ids-raw@ok.test"], "message": base64.b64encode(raw).decode()},
        headers=api.as_tenant(),
    )
    assert response.status_code == 202, response.text
    for to in ("ids-smtp@ok.test", "ids-raw@ok.test"):
        parsed = email.message_from_bytes(await delivered_to(api, to), policy=email.policy.default)
        assert parsed["Message-ID"].endswith("@shop.test>") and parsed["Date"] is not None


async def test_a_tenant_may_refuse_mail_without_message_id(api: Api) -> None:
    """Under missing_headers=refuse, SMTP answers 554 5.6.0 naming the missing fields and the
    raw API 400; a complete message still goes."""
    bare = b"From: orders@shop.test\r\nTo: strict@ok.test\r\nSubject: no ids\r\n\r\nhello\r\n"
    key = await _key_with(api, missing_headers="refuse")
    try:
        reply = await eventually(
            lambda: _smtp(api, "strict@ok.test", bare),
            until=lambda r: r.startswith("554"),
            timeout=15,
        )
        assert reply.startswith("554 5.6.0") and "no Message-ID and no Date" in reply, reply
        response = await api.http.post(
            "/v1/messages/raw",
            json={"to": ["strict@ok.test"], "message": base64.b64encode(bare).decode()},
            headers=api.as_tenant(key),
        )
        assert response.status_code == 400 and "Message-ID" in response.json()["detail"]
        complete = b"Date: Thu, 03 Dec 2026 07:00:00 +0000\r\nMessage-ID: <s-1@shop.test>\r\n"
        assert (await _smtp(api, "strict@ok.test", complete + bare)).startswith("250")
    finally:
        await _reset(api, missing_headers="add")


async def _recipient(store: Store, message_id: str, status: str) -> dict:
    docs = await eventually(
        lambda: store.messages.recipients(message_id),
        until=lambda rs: bool(rs) and all(r["status"] == status for r in rs),
    )
    return docs[0]


async def test_a_message_over_the_destinations_limit_bounces_at_once(api: Api) -> None:
    """A 3 MB message to softbank.ne.jp (2 MiB limit) is not tried: its recipient bounces at
    once with 552 5.3.4 naming the size and the limit, a bounced event says so, and the
    address is not suppressed."""
    attachment = base64.b64encode(b"\x00" * 2_300_000).decode()
    body = message(
        to=["big@softbank.ne.jp"],
        attachments=[{"filename": "photo.jpg", "content": attachment}],
    )
    response = await api.http.post("/v1/messages", json=body, headers=api.as_tenant())
    assert response.status_code == 202, response.text
    message_id = response.json()["id"]
    recipient = await _recipient(api.store, message_id, "bounced")
    assert (recipient["reply"]["code"], recipient["reply"]["enhanced"]) == (552, "5.3.4")
    assert (
        "softbank.ne.jp" in recipient["reply"]["text"] and "2097152" in recipient["reply"]["text"]
    )
    assert recipient["attempts"] == 1
    events = await eventually(
        lambda: api.store.events.of_message(message_id),
        until=lambda es: any(e["type"] == "bounced" for e in es),
    )
    assert any(e["type"] == "bounced" and "5.3.4" in str(e.get("reply")) for e in events)
    assert not any("big@softbank.ne.jp" in r.rcpt_tos for r in api.sink.received)
    # Too big for the destination says nothing against the address: not suppressed.
    assert await api.store.suppressions.suppressed(TENANT, ["big@softbank.ne.jp"]) == set()

"""The signer in the running pipeline: RSA and Ed25519 side by side, key rotation through
DNS, fallback alignment, and the unsigned policy."""

from __future__ import annotations

import email
import email.policy

import pytest

from shared import dkim as dkim_keys
from shared.provisioning import Provisioner
from shared.secrets import SecretBox
from shared.settings import DnsSettings
from tests.conftest import unique
from tests.e2e.conftest import Api, delivered_to, message
from tests.helpers.dkim_verify import dkimpy, mail_dkim
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration


def provisioner(api: Api) -> Provisioner:
    return Provisioner(
        api.store.directory,
        api.store.pools,
        SecretBox(api.master_key),
        DnsSettings(nameservers=[api.dns.address], timeout=2),
    )


def signatures(data: bytes) -> list[dict[str, str]]:
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    out = []
    for value in parsed.get_all("DKIM-Signature") or []:
        tags = {}
        for part in "".join(str(value).split()).split(";"):
            k, _, v = part.partition("=")
            tags[k] = v
        out.append(tags)
    return out


async def published(api: Api) -> dict[str, str]:
    doc = await api.store.directory.domain("shop.test")
    return {
        dkim_keys.txt_record_name("shop.test", k["selector"]): dkim_keys.txt_record_value(k)
        for k in doc["dkim"]
    }


async def send_and_receive(api: Api) -> bytes:
    address = f"{unique('r')}@ok.test"
    response = await api.http.post(
        "/v1/messages", json=message(to=[address]), headers=api.as_tenant()
    )
    assert response.status_code == 202, response.text
    return await delivered_to(api, address)


async def test_rsa_and_ed25519_sign_side_by_side_then_rotation_through_dns(api: Api) -> None:
    """shop.test gets an Ed25519 key: mail carries both signatures, which verify. Then an RSA
    rotation: the old selector signs until the new record is in DNS; then the new one does,
    the old retires, and a dkim_key_activated event says so."""
    p = provisioner(api)
    ed = await p.generate_key("shop.test", "ed1", dkim_keys.ED25519)
    assert ed.kind == "active"
    data = await send_and_receive(api)
    sigs = signatures(data)
    assert [(s["a"], s["s"]) for s in sigs] == [("rsa-sha256", "s1"), ("ed25519-sha256", "ed1")]
    keys = await published(api)
    assert dkimpy(data, keys) == [True, True]
    assert ("rsa-sha256", "pass") in mail_dkim(data, keys)

    pending = await p.rotate("shop.test", dkim_keys.RSA)
    assert pending.kind == "pending"
    data = await send_and_receive(api)
    assert [s["s"] for s in signatures(data)] == ["s1", "ed1"]  # not in DNS yet

    api.dns.publish(pending.record_name, pending.record_value)
    await eventually(
        lambda: api.store.directory.domain("shop.test"),
        until=lambda d: (
            {k["selector"]: dkim_keys.status(k) for k in d["dkim"]}
            == {"s1": "retired", "ed1": "active", pending.selector: "active"}
        ),
    )
    data = await send_and_receive(api)
    assert [s["s"] for s in signatures(data)] == [pending.selector, "ed1"]
    assert dkimpy(data, await published(api)) == [True, True]
    events = await eventually(
        lambda: api.store.db.events.find({"type": "dkim_key_activated"}).to_list(),
        until=bool,
    )
    assert events[0]["detail"]["selector"] == pending.selector
    assert events[0]["tenant"] == "acme"


async def test_a_from_subdomain_signs_aligned_with_the_parent_domain(api: Api) -> None:
    """Mail from mail.shop.test is signed d=shop.test, and its `signed` event says aligned."""
    address = f"{unique('r')}@ok.test"
    response = await api.http.post(
        "/v1/messages",
        json=message(**{"from": "news@mail.shop.test"}, to=[address]),
        headers=api.as_tenant(),
    )
    assert response.status_code == 202, response.text
    data = await delivered_to(api, address)
    assert signatures(data)[0]["d"] == "shop.test"
    state = await eventually(
        lambda: api.store.events.of_message(response.json()["id"]),
        until=lambda es: any(e["type"] == "signed" for e in es),
    )
    signed = next(e for e in state if e["type"] == "signed")
    assert signed["detail"]["aligned"] is True


async def test_a_domain_without_a_key_is_sent_unsigned_with_an_event(api: Api) -> None:
    """policy 'send' (the default): no usable key → delivered unsigned, and an `unsigned`
    event says why."""
    await api.store.directory.upsert_domain("nokey.test", tenant="acme", verified=True)
    address = f"{unique('r')}@ok.test"

    async def sent():
        r = await api.http.post(
            "/v1/messages",
            json=message(**{"from": "x@nokey.test"}, to=[address]),
            headers=api.as_tenant(),
        )
        return r

    # the ingest policy picks the new domain up within its refresh interval
    response = await eventually(sent, until=lambda r: r.status_code == 202, timeout=20)
    data = await delivered_to(api, address)
    assert signatures(data) == []
    events = await eventually(
        lambda: api.store.events.of_message(response.json()["id"]),
        until=lambda es: any(e["type"] == "unsigned" for e in es),
    )
    assert (
        "no usable DKIM key"
        in next(e for e in events if e["type"] == "unsigned")["detail"]["reason"]
    )

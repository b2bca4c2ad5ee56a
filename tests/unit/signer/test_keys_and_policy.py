"""The signer's rules with small fakes: which keys sign (alignment, fallback, files), and
what happens to a message that cannot be signed (send unsigned or fail, by policy)."""

from __future__ import annotations

import asyncio

import pytest

from services.signer.dkim_sign import SigningKey
from services.signer.keys import KeyRing, load_key_files
from services.signer.service import Signer
from services.signer.settings import SignerSettings
from shared.broker import Delivery
from shared.dkim import PENDING, generate_ed25519, generate_rsa, to_document
from shared.errors import ConfigError
from shared.schemas import EventType, Recipient, SignJob
from shared.secrets import SecretBox, generate_master_key
from shared.testing import FakeBroker

BOX = SecretBox(generate_master_key())


class FakeDirectory:
    def __init__(self, domains: dict, tenants: dict) -> None:
        self.domains, self.tenants = domains, tenants

    async def domain(self, name):
        return self.domains.get(name)

    async def tenant(self, name):
        return self.tenants.get(name)


def domain_doc(name: str, tenant: str, *keys, pending=()) -> dict:
    return {
        "_id": name,
        "tenant": tenant,
        "verified": True,
        "dkim": [to_document(k, BOX) for k in keys]
        + [to_document(k, BOX, state=PENDING) for k in pending],
    }


@pytest.fixture(scope="module")
def keys():
    return {
        "shop": generate_rsa("shop.test", "s1"),
        "shop-ed": generate_ed25519("shop.test", "e1"),
        "shop-next": generate_rsa("shop.test", "s2"),
        "brand": generate_rsa("brand.test", "b1"),
        "rival": generate_rsa("rival.test", "r1"),
    }


def ring(keys, **kw) -> KeyRing:
    directory = FakeDirectory(
        domains={
            "shop.test": domain_doc(
                "shop.test", "acme", keys["shop"], keys["shop-ed"], pending=[keys["shop-next"]]
            ),
            "brand.test": domain_doc("brand.test", "acme", keys["brand"]),
            "nokey.test": {"_id": "nokey.test", "tenant": "acme", "verified": True, "dkim": []},
            "rival.test": domain_doc("rival.test", "rival", keys["rival"]),
        },
        tenants={"acme": {"_id": "acme", "signing_domain": "brand.test"}, "solo": {"_id": "solo"}},
    )
    return KeyRing(directory, BOX, ttl=30, **kw)


async def test_the_from_domain_and_its_parents_sign_aligned_with_active_keys_only(keys):
    """A From subdomain signs aligned with its parent domain's keys, the active ones only: a pending
    key waits for its activation."""
    r = ring(keys)
    choice = await r.choose("acme", "mail.shop.test")
    assert (choice.domain, choice.aligned) == ("shop.test", True)
    assert [k.key.selector for k in choice.keys] == ["s1", "e1"]  # s2 is pending


async def test_without_a_key_the_tenant_fallback_signs_unaligned(keys):
    """A From domain without a key is signed by its tenant's signing domain, unaligned; a tenant
    without one has no key to sign with."""
    choice = await ring(keys).choose("acme", "nokey.test")
    assert (choice.domain, choice.aligned, choice.selectors) == (
        "brand.test",
        False,
        "b1(rsa-sha256)",
    )
    assert (await ring(keys).choose("solo", "nokey.test")).keys == ()


async def test_another_tenants_domain_never_signs(keys):
    """A From domain owned by another tenant never signs with that tenant's keys: the sender's own
    fallback signs, unaligned."""
    choice = await ring(keys).choose("acme", "rival.test")
    assert choice.domain == "brand.test" and not choice.aligned


async def test_keys_from_files_join_and_override_by_selector(keys, tmp_path):
    """Keys from `<selector>._domainkey.<domain>.pem` files join the stored ones and replace a
    stored key of the same selector; a file that is no key stops the start."""
    override = generate_rsa("shop.test", "s1")
    (tmp_path / "s1._domainkey.shop.test.pem").write_bytes(override.private_pem)
    (tmp_path / "f1._domainkey.files.test.pem").write_bytes(keys["brand"].private_pem)
    files = load_key_files(str(tmp_path))
    assert set(files) == {"shop.test", "files.test"}
    choice = await ring(keys, files=files).choose("acme", "shop.test")
    assert choice.keys[0].key.public_b64 == override.public_b64
    (tmp_path / "x._domainkey.bad.test.pem").write_text("not a key")
    with pytest.raises(ConfigError):
        load_key_files(str(tmp_path))


class FakeEvents:
    """Records the events the signer appends, its signing outcomes among them."""

    def __init__(self) -> None:
        self.appended = []

    async def append(self, events):
        self.appended += list(events)


class FakeMessages:
    """Records the messages the signer fails."""

    def __init__(self) -> None:
        self.failed = []

    async def fail_message(self, message_id, reply):
        self.failed.append((message_id, reply))


class FakeStore:
    """Records what the signer writes: signing outcomes, failures and events."""

    def __init__(self) -> None:
        self.events, self.messages = FakeEvents(), FakeMessages()

    @property
    def signed(self):
        return [
            (e.message_id, e.type)
            for e in self.events.appended
            if e.type in (EventType.SIGNED, EventType.UNSIGNED)
        ]


def job(from_domain: str) -> SignJob:
    return SignJob(
        message_id="m1",
        tenant="solo",
        mail_from=f"a@{from_domain}",
        from_domain=from_domain,
        recipients=(
            Recipient(id="r1", address="x@ok.test"),
            Recipient(id="r2", address="y@other.test"),
        ),
        pool="default",
    )


@pytest.mark.parametrize("policy", ["send", "fail"])
async def test_an_unsignable_message_follows_the_policy(keys, policy):
    """'send': delivered unsigned with an `unsigned` event; 'fail': every recipient failed
    with a `failed` event and nothing delivered."""
    store, broker = FakeStore(), FakeBroker()
    signer = Signer(store, broker, ring(keys), settings=SignerSettings(unsigned_policy=policy))
    raw = b"From: a@nokey.test\r\n\r\nbody\r\n"
    await signer.handle(Delivery(job("nokey.test"), raw, 1, "sign"))
    types = [e.type for e in broker.events]
    assert [e.id for e in store.events.appended] == [
        e.id for e in broker.events
    ]  # written, published
    if policy == "send":
        assert types == [EventType.UNSIGNED]
        assert [p for _, p in broker.unbatched()] == [raw, raw]  # one job per domain
        assert store.signed == [("m1", EventType.UNSIGNED)]
    else:
        assert types == [EventType.FAILED, EventType.FAILED]
        assert broker.published == [] and store.messages.failed[0][1].code == 554


async def test_a_message_without_from_is_unsigned_with_the_reason(keys):
    """A message with no From header goes out unsigned (the default policy) with an `unsigned` event
    saying why."""
    store, broker = FakeStore(), FakeBroker()
    signer = Signer(store, broker, ring(keys), settings=SignerSettings())
    j = job("shop.test").model_copy(update={"tenant": "acme"})
    await signer.handle(Delivery(j, b"Subject: no from\r\n\r\nbody\r\n", 1, "sign"))
    assert broker.events[0].type == EventType.UNSIGNED
    assert "no From header" in broker.events[0].detail["reason"]


class CountingDirectory(FakeDirectory):
    """A directory that counts its reads and answers each after the event loop turned."""

    reads = 0

    async def domain(self, name):
        self.reads += 1
        await asyncio.sleep(0)
        return await super().domain(name)


async def test_messages_that_miss_a_domain_together_share_one_read_and_one_load(
    keys, monkeypatch
) -> None:
    """Twenty messages of a domain nobody read yet make one read; a read again (the ttl passed,
    a change announced) loads only keys that changed: loading an RSA key costs ~50 ms."""
    loads: list[str] = []
    real_load = SigningKey.load.__func__

    def counted(cls, key):
        loads.append(key.selector)
        return real_load(cls, key)

    monkeypatch.setattr(SigningKey, "load", classmethod(counted))
    directory = CountingDirectory({"shop.test": domain_doc("shop.test", "acme", keys["shop"])}, {})
    r = KeyRing(directory, BOX, ttl=30)
    choices = await asyncio.gather(*(r.choose("acme", "shop.test") for _ in range(20)))
    assert {c.selectors for c in choices} == {"s1(rsa-sha256)"}
    assert (directory.reads, loads) == (1, ["s1"])
    r.forget()  # an operator's change: read again, nothing new to load
    await r.choose("acme", "shop.test")
    assert (directory.reads, loads) == (2, ["s1"])
    directory.domains["shop.test"] = domain_doc("shop.test", "acme", keys["shop-next"])
    r.forget()  # a new key activated: loaded once
    assert (await r.choose("acme", "shop.test")).selectors == "s2(rsa-sha256)"
    assert loads == ["s1", "s2"]

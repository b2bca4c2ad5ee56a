"""The relay policy: a client is a tenant only from the tenant's networks, and sends only
from the tenant's verified domains."""

from __future__ import annotations

from services.ingest.policy import RelayPolicy, Tenant


def policy() -> RelayPolicy:
    p = RelayPolicy()
    p.load(
        tenants=[
            {"_id": "dev", "pool": "default", "networks": ["127.0.0.1/32"]},
            {"_id": "office", "pool": "office", "networks": ["192.0.2.0/24", "2001:db8::/32"]},
            {"_id": "printer", "pool": "office", "networks": ["192.0.2.9/32", "not-a-cidr"]},
        ],
        domains=[
            {"_id": "hato.test", "tenant": "dev", "verified": True},
            {"_id": "corp.test", "tenant": "office", "verified": True},
            {"_id": "pending.test", "tenant": "dev", "verified": False},
        ],
    )
    return p


def test_only_127_0_0_1_itself_is_the_dev_tenant() -> None:
    """Other loopback addresses are strangers, as a remote client would be."""
    p = policy()
    assert p.tenant_for_peer("127.0.0.1") == Tenant("dev", "default")
    assert p.tenant_for_peer("127.0.0.9") is None
    assert p.tenant_for_peer("::ffff:127.0.0.1") == Tenant("dev", "default")
    assert p.tenant_for_peer("garbage") is None


def test_the_most_specific_network_wins() -> None:
    p = policy()
    assert p.tenant_for_peer("192.0.2.9").name == "printer"
    assert p.tenant_for_peer("192.0.2.10").name == "office"
    assert p.tenant_for_peer("2001:db8::1").name == "office"


def test_tenants_send_only_from_their_verified_domains_and_subdomains() -> None:
    p = policy()
    dev, office = Tenant("dev", "default"), Tenant("office", "office")
    assert p.may_send_from(dev, "hato.test")
    assert p.may_send_from(dev, "mail.HATO.test")
    assert not p.may_send_from(office, "hato.test")
    assert not p.may_send_from(dev, "corp.test")
    assert not p.may_send_from(dev, "pending.test")  # not verified
    assert not p.may_send_from(dev, "evilhato.test")

"""The relay policy: a client is a tenant only from the tenant's networks, and sends only
from the tenant's verified domains (and what its credential allows)."""

from __future__ import annotations

from services.ingest.policy import RelayPolicy
from shared.directory import Identity, TenantLimits


def policy() -> RelayPolicy:
    p = RelayPolicy()
    p.load(
        tenants=[
            {"_id": "dev", "pool": "default", "networks": ["127.0.0.1/32"]},
            {
                "_id": "office",
                "pool": "office",
                "networks": ["192.0.2.0/24", "2001:db8::/32"],
                "limits": {"max_recipients": 5},
            },
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
    assert p.tenant_for_peer("127.0.0.1").tenant == "dev"
    assert p.tenant_for_peer("127.0.0.9") is None
    assert p.tenant_for_peer("::ffff:127.0.0.1").tenant == "dev"
    assert p.tenant_for_peer("garbage") is None


def test_the_most_specific_network_wins_and_carries_the_tenant_limits() -> None:
    """Overlapping networks go to the most specific (a printer's /32 inside an office's /24), and
    the identity carries that tenant's pool and limits, its network as credential."""
    p = policy()
    assert p.tenant_for_peer("192.0.2.9").tenant == "printer"
    office = p.tenant_for_peer("192.0.2.10")
    assert (office.tenant, office.pool, office.limits) == (
        "office",
        "office",
        TenantLimits(None, 5),
    )
    assert office.credential == "network:192.0.2.0/24"
    assert p.tenant_for_peer("2001:db8::1").tenant == "office"


def test_tenants_send_only_from_their_verified_domains_and_subdomains() -> None:
    """A tenant sends from its verified domains and their subdomains only: not another tenant's, an
    unverified one, or a name that merely ends alike."""
    p = policy()
    dev, office = Identity("dev", "default"), Identity("office", "office")
    assert p.may_send_from(dev, "a@hato.test")
    assert p.may_send_from(dev, "a@mail.HATO.test")
    assert not p.may_send_from(office, "a@hato.test")
    assert not p.may_send_from(dev, "a@corp.test")
    assert not p.may_send_from(dev, "a@pending.test")  # not verified
    assert not p.may_send_from(dev, "a@evilhato.test")


def test_a_restricted_credential_sends_only_from_what_it_names() -> None:
    """A credential restricted to an address and a domain sends from those alone (the address in any
    case), whatever else its tenant owns."""
    p = policy()
    only = Identity("dev", "default", allowed_from=("orders@hato.test", "news.hato.test"))
    assert p.may_send_from(only, "Orders@hato.test")
    assert not p.may_send_from(only, "ceo@hato.test")
    assert p.may_send_from(only, "anyone@news.hato.test")


def test_a_new_load_forgets_the_answers_kept_for_peers() -> None:
    """Answers per address are kept, but a changed network list (a reload) is what counts."""
    p = policy()
    assert p.tenant_for_peer("127.0.0.9") is None
    assert p.tenant_for_peer("127.0.0.9") is None  # kept
    p.load(tenants=[{"_id": "dev", "pool": "default", "networks": ["127.0.0.0/8"]}], domains=[])
    assert p.tenant_for_peer("127.0.0.9").tenant == "dev"

"""Queue controls as the dispatcher consults them: scopes, expiry, holds, moves, avoided
IPs and pace caps; the listing's counts; the retry request a change carries."""

from __future__ import annotations

from datetime import timedelta

from shared.queue_control import (
    Action,
    ControlSet,
    Scope,
    control_id,
    retry_request,
    retry_requested,
    summarize,
)
from shared.schemas import utcnow


def control(action: Action, scope: Scope, *, expires_in: float | None = None, **extra) -> dict:
    now = utcnow()
    return {
        "_id": control_id(action, scope),
        "action": action.value,
        **{k: getattr(scope, k) for k in ("tenant", "domain", "source_ip", "provider")},
        "created_at": now,
        "expires_at": now + timedelta(seconds=expires_in) if expires_in is not None else None,
        **extra,
    }


def test_a_scope_matches_what_it_names_and_a_domain_covers_its_subdomains() -> None:
    """Empty fields match everything; a domain takes its subdomains (any case); a provider
    matches its group or a parent domain of the destination."""
    assert Scope().matches(tenant="a", domain="x.test", source_ip="1.2.3.4")
    s = Scope(tenant="acme", domain="Shop.Test.")
    assert s.matches(tenant="acme", domain="mx.shop.test")
    assert not s.matches(tenant="other", domain="shop.test")
    assert not s.matches(tenant="acme", domain="notshop.test")
    assert Scope(provider="gmail").matches(domain="googlemail.com", provider="gmail")
    assert Scope(provider="shop.test").matches(domain="a.shop.test", provider="other")
    assert not Scope(source_ip="127.0.0.2").matches(source_ip="127.0.0.3")


def test_holds_follow_suspensions_until_they_expire() -> None:
    """A suspension holds what it covers; an expired one holds nothing."""
    live = control(Action.SUSPEND, Scope(domain="held.test"))
    gone = control(Action.SUSPEND, Scope(tenant="acme"), expires_in=-1)
    controls = ControlSet.of([live, gone])
    where = {"tenant": "acme", "source_ip": "127.0.0.2", "provider": "other"}
    assert controls.hold(domain="a.held.test", **where) == live
    assert controls.hold(domain="free.test", **where) is None


def test_the_most_specific_move_wins() -> None:
    """A tenant-and-domain move beats a tenant's, which beats a domain's."""
    controls = ControlSet.of(
        [
            control(Action.MOVE, Scope(domain="gmail.com"), pool="google"),
            control(Action.MOVE, Scope(tenant="acme"), pool="acme-pool"),
            control(Action.MOVE, Scope(tenant="acme", domain="gmail.com"), pool="both"),
        ]
    )
    assert controls.move(tenant="acme", domain="gmail.com") == "both"
    assert controls.move(tenant="acme", domain="yahoo.com") == "acme-pool"
    assert controls.move(tenant="other", domain="gmail.com") == "google"
    assert controls.move(tenant="other", domain="yahoo.com") is None


def test_avoided_ips_and_pace_caps_apply_to_their_receiver_only() -> None:
    """An avoid control keeps its IP away from its provider only; slow controls cap the pace
    of their (IP, provider) pair."""
    controls = ControlSet.of(
        [
            control(Action.AVOID, Scope(source_ip="127.0.0.2", provider="listed.test")),
            control(Action.SLOW, Scope(source_ip="127.0.0.2", provider="gmail"), factor=0.25),
        ]
    )
    assert controls.avoided(domain="listed.test", provider="other") == {"127.0.0.2"}
    assert controls.avoided(domain="fine.test", provider="other") == set()
    assert controls.slow(source_ip="127.0.0.2", domain="gmail.com", provider="gmail") == 0.25
    assert controls.slow(source_ip="127.0.0.3", domain="gmail.com", provider="gmail") == 1.0


def test_the_listing_counts_waiting_mail_by_what_operators_ask() -> None:
    """Counts by tenant, domain, source IP and reason (suspended ones named), the attempts
    and the oldest's age."""
    now = utcnow()
    docs = [
        {"tenant": "acme", "domain": "a.test", "status": "queued", "created_at": now},
        {
            "tenant": "acme",
            "domain": "b.test",
            "status": "deferred",
            "attempts": 2,
            "source_ip": "127.0.0.2",
            "created_at": now - timedelta(seconds=90),
        },
        {"tenant": "shop", "domain": "a.test", "status": "queued", "held": "domain a.test"},
    ]
    status = summarize(docs, now)
    assert status["waiting"] == 3 and status["attempts"] == 2
    assert status["by_tenant"] == {"acme": 2, "shop": 1}
    assert status["by_domain"] == {"a.test": 2, "b.test": 1}
    assert status["by_source_ip"] == {"-": 2, "127.0.0.2": 1}
    assert status["by_reason"] == {"deferred": 1, "queued": 1, "suspended: domain a.test": 1}
    assert status["oldest_seconds"] == 90.0


def test_a_retry_request_travels_in_a_change_name() -> None:
    """The scope to retry now survives the change's name; other names ask nothing."""
    scope = Scope(tenant="acme", domain="a.test")
    assert retry_requested(retry_request(scope)) == scope
    assert retry_requested("") is None
    assert retry_requested("retry:{not json") is None

"""A platform team's broker names and permissions (shared/teams.py)."""

from __future__ import annotations

import re

import pytest

from shared.teams import check_tenant, may_reply_to, team_permissions, team_user


def test_ingest_answers_only_direct_reply_to_or_the_tenants_team_queues() -> None:
    """Direct reply-to always; <prefix>.team.<tenant>.* for that tenant; nothing else."""
    ok = ("amq.rabbitmq.reply-to", "amq.rabbitmq.reply-to.g1hkABC.xyz", "hato.team.acme.replies")
    for reply_to in ok:
        assert may_reply_to(reply_to, prefix="hato", tenant="acme"), reply_to
    refused = (
        "hato.sign",
        "hato.submit",
        "hato.team.rival.replies",
        "hato.team.acme.",
        "hato.team.acme",
        "hato.team.acmex.q",
        "other.team.acme.q",
        "amq.gen-abc",
        "amq.rabbitmq.reply-tox",
    )
    for reply_to in refused:
        assert not may_reply_to(reply_to, prefix="hato", tenant="acme"), reply_to
    assert may_reply_to("amq.rabbitmq.reply-to.x", prefix="hato", tenant=None)
    assert not may_reply_to("hato.team.acme.q", prefix="hato", tenant=None)


def test_the_permissions_cover_the_teams_own_names_only() -> None:
    """Configure/write/read match the team's queues (and submit / events); topic read matches
    <tenant>.<one word> only."""
    p = team_permissions("hato.t1", "acme")
    assert team_user("hato.t1", "acme") == "hato.t1.team.acme"
    assert re.fullmatch(p.configure, "hato.t1.team.acme.events")
    for name in (
        "hato.t1.sign",
        "hato.t1.team.rival.q",
        "hato.t1.team.acme.",
        "hatoxt1.team.acme.q",
    ):
        assert not re.search(p.configure, name), name
    assert re.search(p.write, "hato.t1.submit") and not re.search(p.write, "hato.t1.work")
    assert not re.search(p.write, "hato.t1.events") and not re.search(p.write, "amq.default")
    assert re.search(p.read, "hato.t1.events") and not re.search(p.read, "hato.t1.submit")
    assert p.topic_exchange == "hato.t1.events"
    for key in ("acme.*", "acme.bounced"):
        assert re.search(p.topic_read, key), key
    for key in ("#", "*.bounced", "acme.#", "acme.x.y", "rival.*", "acmex.*", "acme"):
        assert not re.search(p.topic_read, key), key


def test_a_tenant_named_with_a_dot_or_regex_characters_gets_no_team_user() -> None:
    """A dot would let one tenant's binding keys reach another's events."""
    assert check_tenant("acme-eu_2") == "acme-eu_2"
    for name in ("acme.eu", "", "ACME", "a*", "a b", "x" * 64):
        with pytest.raises(ValueError):
            check_tenant(name)

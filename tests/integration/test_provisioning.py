"""Scheduled key rotation against the real store (DNS answers from a loopback server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared import dkim
from shared.provisioning import Provisioner
from shared.secrets import SecretBox
from shared.settings import DnsSettings
from tests.helpers.dns import DnsServer

pytestmark = pytest.mark.integration


async def test_a_key_older_than_the_schedule_gets_a_pending_successor_once(
    store, master_key
) -> None:
    """A key older than the rotation age gets one pending successor, however often the pass runs;
    once its record is in DNS the successor is active and the old key retired."""
    dns_server = await DnsServer().start()
    try:
        p = Provisioner(
            store.directory,
            store.pools,
            SecretBox(master_key),
            DnsSettings(nameservers=[dns_server.address], timeout=2),
        )
        await store.directory.upsert_tenant("t")
        await p.add_domain("old.test", tenant="t", verified=True, selector="s0")
        doc = await store.directory.domain("old.test")
        keys = doc["dkim"]
        keys[0]["activated_at"] = datetime.now(UTC) - timedelta(days=100)
        await store.directory.set_dkim_keys("old.test", keys)

        assert await p.rotation_pass(rotate_after_days=120) == []
        changes = await p.rotation_pass(rotate_after_days=90)
        assert [(c.kind, c.domain, c.algorithm) for c in changes] == [
            ("pending", "old.test", dkim.RSA)
        ]
        assert await p.rotation_pass(rotate_after_days=90) == []  # one pending is enough

        dns_server.publish(changes[0].record_name, changes[0].record_value)
        done = await p.rotation_pass(rotate_after_days=90)
        assert sorted((c.kind, c.selector) for c in done) == [
            ("active", changes[0].selector),
            ("retired", "s0"),
        ]
    finally:
        dns_server.stop()

"""The hato admin command against the real store: dev init, domains, DKIM records."""

from __future__ import annotations

import asyncio
import base64
import os
import sys

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from shared.store import Store
from tests.helpers.stack import ROOT

pytestmark = pytest.mark.integration


async def hato(store: Store, master_key: str, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "HATO_MONGODB_URL": store.settings.url,
        "HATO_MONGODB_DATABASE": store.settings.database,
        "HATO_MASTER_KEY": master_key,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hato.cli",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_dev_init_gives_hato_test_a_publishable_dkim_record(store, master_key) -> None:
    """`hato dev init` twice, then `hato dkim show hato.test` prints one TXT record carrying
    a real RSA-2048 public key; the private key is stored sealed."""
    for _ in range(2):
        code, out, err = await hato(store, master_key, "dev", "init")
        assert code == 0, err
    code, out, err = await hato(store, master_key, "dkim", "show", "hato.test")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith('dev._domainkey.hato.test. IN TXT "v=DKIM1; k=rsa; p=')
    public = lines[0].split("p=", 1)[1].rstrip('"')
    assert load_der_public_key(base64.b64decode(public)).key_size == 2048
    doc = await store.directory.domain("hato.test")
    assert "BEGIN" not in str(doc)
    tenants = await store.directory.tenants()
    assert [(t["_id"], t["networks"]) for t in tenants] == [("dev", ["127.0.0.1/32"])]


async def test_a_domain_cannot_be_taken_from_its_tenant(store, master_key) -> None:
    """Adding another tenant's domain is refused; unknown domains are a clear error."""
    assert (await hato(store, master_key, "tenant", "add", "a", "--network", "192.0.2.0/24"))[
        0
    ] == 0
    assert (await hato(store, master_key, "tenant", "add", "b"))[0] == 0
    code, out, _ = await hato(store, master_key, "domain", "add", "a.test", "--tenant", "a")
    assert code == 0 and "hato._domainkey.a.test" in out
    code, _, err = await hato(store, master_key, "domain", "add", "a.test", "--tenant", "b")
    assert code == 1 and "belongs to tenant a" in err
    code, _, err = await hato(store, master_key, "dkim", "show", "nowhere.test")
    assert code == 1 and "unknown domain" in err

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


async def test_credentials_keys_networks_and_suppressions(store, master_key) -> None:
    """Secrets are printed once and stored only hashed; lists never show them."""
    assert (await hato(store, master_key, "tenant", "add", "shop", "--max-recipients", "5"))[0] == 0
    assert (await store.directory.tenant("shop"))["limits"] == {"max_recipients": 5}
    code, out, _ = await hato(
        store, master_key, "credential", "add", "shop", "printer", "--allow-from", "scans@shop.test"
    )
    assert code == 0
    password = out.rsplit(": ", 1)[1].strip()
    code, out, _ = await hato(store, master_key, "apikey", "add", "shop", "--name", "backend")
    token = out.strip().splitlines()[-1]
    assert token.startswith("hato_")
    listing = (await hato(store, master_key, "credential", "list"))[1] + (
        await hato(store, master_key, "apikey", "list", "--tenant", "shop")
    )[1]
    assert password not in listing and token not in listing and "scans@shop.test" in listing
    stored = str(await store.db.credentials.find_one({})) + str(
        await store.db.api_keys.find_one({})
    )
    assert password not in stored and token not in stored
    assert (await store.directory.api_key_identity(token)).tenant == "shop"

    assert (await hato(store, master_key, "network", "add", "shop", "192.0.2.7"))[0] == 0
    assert (await store.directory.tenant("shop"))["networks"] == ["192.0.2.7/32"]
    assert (await hato(store, master_key, "suppression", "add", "shop", "Gone@X.test"))[0] == 0
    assert await store.directory.suppressed("shop", ["gone@x.test"]) == {"gone@x.test"}
    assert (await hato(store, master_key, "apikey", "revoke", token.split("_")[1]))[0] == 0
    assert await store.directory.api_key_identity(token) is None


async def test_domain_verify_looks_the_dkim_record_up(store, master_key) -> None:
    """`hato domain add` prints DKIM, SPF and return-path records; `hato domain verify`
    succeeds once the DKIM record is published on the configured resolver."""
    from tests.helpers.dns import DnsServer

    dns_server = await DnsServer().start()
    os.environ["HATO_DNS_NAMESERVERS"] = dns_server.address
    try:
        await hato(store, master_key, "tenant", "add", "news")
        code, out, _ = await hato(
            store, master_key, "domain", "add", "news.test", "--tenant", "news"
        )
        assert code == 0 and "not verified" in out
        lines = [line.strip() for line in out.splitlines() if " IN " in line]
        assert [line.split()[2] for line in lines] == ["TXT", "TXT", "CNAME"]
        assert lines[1].startswith('news.test. IN TXT "v=spf1 include:')
        assert lines[2].startswith("bounces.news.test. IN CNAME ")
        code, out, _ = await hato(store, master_key, "domain", "verify", "news.test")
        assert code == 1 and "missing" in out
        dkim_value = lines[0].split('"')[1]
        dns_server.publish("hato._domainkey.news.test", dkim_value)
        code, out, _ = await hato(store, master_key, "domain", "verify", "news.test")
        assert code == 0 and "found" in out
        assert (await store.directory.domain("news.test"))["verified"] is True
    finally:
        del os.environ["HATO_DNS_NAMESERVERS"]
        dns_server.stop()


async def test_dkim_generate_rotate_and_check(store, master_key) -> None:
    """An Ed25519 key joins the RSA one; `rotate` makes a pending key that `check` activates
    once its record is published, retiring the old one."""
    from tests.helpers.dns import DnsServer

    dns_server = await DnsServer().start()
    os.environ["HATO_DNS_NAMESERVERS"] = dns_server.address
    try:
        await hato(store, master_key, "tenant", "add", "rot")
        await hato(
            store,
            master_key,
            "domain",
            "add",
            "rot.test",
            "--tenant",
            "rot",
            "--verified",
            "--selector",
            "old",
        )
        code, out, _ = await hato(
            store,
            master_key,
            "dkim",
            "generate",
            "rot.test",
            "--algorithm",
            "ed25519",
            "--selector",
            "ed",
        )
        assert code == 0 and "is active" in out and "k=ed25519; p=" in out
        code, out, _ = await hato(store, master_key, "dkim", "rotate", "rot.test")
        assert code == 0 and "pending" in out
        name, value = out.strip().splitlines()[-1].split(". IN TXT ")
        code, out, _ = await hato(store, master_key, "dkim", "check", "rot.test")
        assert code == 1 and "NOT published" in out
        for key in (await store.directory.domain("rot.test"))["dkim"]:
            if key["selector"] in ("old", "ed"):
                from shared.dkim import txt_record_name, txt_record_value

                dns_server.publish(
                    txt_record_name("rot.test", key["selector"]), txt_record_value(key)
                )
        dns_server.publish(name.strip(), value.strip('"'))
        code, out, _ = await hato(store, master_key, "dkim", "check", "rot.test")
        assert code == 0, out
        assert "now active" in out and "old: now retired" in out
        code, out, _ = await hato(store, master_key, "dkim", "show", "rot.test")
        assert "old._domainkey" not in out and "ed._domainkey" in out
    finally:
        del os.environ["HATO_DNS_NAMESERVERS"]
        dns_server.stop()

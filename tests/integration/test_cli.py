"""The hato admin command against the real store: dev init, domains, DKIM records."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from shared.secrets import SecretBox, generate_master_key
from shared.store import Store
from shared.testing import ROOT
from tests.conftest import AMQP_URL, unique
from tests.helpers.cli import run_hato

pytestmark = pytest.mark.integration


PREFIX = unique("cli")  # changes are announced on a broker prefix of this module's own


async def hato(
    store: Store, master_key: str, *args: str, cwd: Path = ROOT, **env: str
) -> tuple[int, str, str]:
    """`hato` on this test's database, announcing on this module's broker prefix."""
    return await run_hato(
        {
            "HATO_MONGODB_URL": store.settings.url,
            "HATO_MONGODB_DATABASE": store.settings.database,
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": PREFIX,
            **({"HATO_MASTER_KEY": master_key} if master_key else {}),
            **env,
        },
        *args,
        cwd=cwd,
    )


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
    assert code == 4 and "belongs to tenant a" in err  # conflict
    code, _, err = await hato(store, master_key, "dkim", "show", "nowhere.test")
    assert code == 3 and "unknown domain" in err  # not found


async def test_credentials_keys_networks_and_suppressions(store, master_key) -> None:
    """Secrets are printed once and stored only hashed; lists never show them."""
    assert (await hato(store, master_key, "tenant", "add", "shop", "--max-recipients", "5"))[0] == 0
    assert (await store.directory.tenant("shop"))["limits"] == {"max_recipients": 5}
    code, out, _ = await hato(
        store, master_key, "credential", "add", "shop", "printer", "--allow-from", "scans@shop.test"
    )
    assert code == 0
    password = out.strip()  # alone on stdout, the note on stderr
    assert password and "\n" not in password
    code, out, err = await hato(store, master_key, "apikey", "add", "shop", "--name", "backend")
    token = out.strip()
    assert token.startswith("hato_") and "\n" not in token and "shown once" in err
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
    # A network that wide relays for the world: only with the operator's explicit word.
    code, _, err = await hato(store, master_key, "network", "add", "shop", "0.0.0.0/0")
    assert code != 0 and "wider than /8" in err
    assert (await store.directory.tenant("shop"))["networks"] == ["192.0.2.7/32"]
    wide = ("network", "add", "shop", "10.0.0.0/7", "--allow-wide-network")
    assert (await hato(store, master_key, *wide))[0] == 0
    assert (await hato(store, master_key, "suppression", "add", "shop", "Gone@X.test"))[0] == 0
    assert await store.suppressions.suppressed("shop", ["gone@x.test"]) == {"gone@x.test"}
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
        assert code == 0 and "now active" not in out and "--activate" in out  # reports only
        code, out, _ = await hato(store, master_key, "dkim", "check", "rot.test", "--activate")
        assert code == 0, out
        assert "now active" in out and "key old: now retired" in out
        code, out, _ = await hato(store, master_key, "dkim", "show", "rot.test")
        assert "old._domainkey" not in out and "ed._domainkey" in out
    finally:
        del os.environ["HATO_DNS_NAMESERVERS"]
        dns_server.stop()


async def test_tenant_add_refuses_an_existing_tenant_and_set_keeps_its_networks(
    store, master_key
) -> None:
    """`tenant add` on an existing tenant changes nothing; `tenant set` changes only what it
    is given: a network added with `network add` stays."""
    assert (await hato(store, master_key, "tenant", "add", "t1", "--network", "192.0.2.0/24"))[
        0
    ] == 0
    assert (await hato(store, master_key, "network", "add", "t1", "198.51.100.7"))[0] == 0
    code, _, err = await hato(store, master_key, "tenant", "add", "t1", "--max-recipients", "3")
    assert code == 4 and "tenant t1 exists" in err and "hato tenant set" in err
    code, _out, err = await hato(store, master_key, "tenant", "set", "t1", "--max-recipients", "3")
    assert code == 0, err
    doc = await store.directory.tenant("t1")
    assert doc["networks"] == ["192.0.2.0/24", "198.51.100.7/32"]
    assert doc["limits"] == {"max_recipients": 3}
    code, _, err = await hato(store, master_key, "tenant", "set", "nobody", "--pool", "default")
    assert code == 3 and "unknown tenant nobody" in err


async def test_a_tenant_may_only_name_pools_that_exist(store, master_key) -> None:
    """Naming a pool that does not exist is refused (and nothing is written); once `pool add`
    made it, the same command works. A member must be an IP address."""
    code, _, err = await hato(
        store, master_key, "tenant", "add", "t2", "--other-pool", "transactional"
    )
    assert code == 2 and "no pool transactional" in err  # invalid and "hato pool add" in err
    assert await store.directory.tenant("t2") is None
    code, _, err = await hato(store, master_key, "pool", "add", "bulk", "--member", "192.0.2.0/24")
    assert code == 2 and "not an IP address" in err
    assert await store.pools.all() == []
    code, out, err = await hato(
        store, master_key, "pool", "add", "bulk", "--member", "127.0.0.2=out1.hato.test"
    )
    assert code == 0, err
    assert f"{PREFIX}.deliver.bulk" in out
    code, _, err = await hato(store, master_key, "tenant", "add", "t2", "--pool", "bulk")
    assert code == 0, err
    code, out, _ = await hato(store, master_key, "pool", "list")
    assert "member 127.0.0.2  EHLO out1.hato.test" in out and "NO dispatcher runs" in out
    assert f"waiting in {PREFIX}.deliver.bulk: 0" in out  # its queue exists from now on
    code, out, _ = await hato(store, master_key, "pool", "list", "--json")
    pools = {p["name"]: p for p in json.loads(out)}
    assert pools["bulk"]["members"][0]["dispatcher"] is None and pools["default"]["stored"] is False
    code, _, _ = await hato(store, master_key, "pool", "remove", "bulk", "--member", "127.0.0.2")
    assert code == 0 and (await store.pools.all())[0]["members"] == []


async def test_a_failed_domain_add_leaves_nothing_behind(store, master_key) -> None:
    """Without a master key `domain add` fails and no half-made domain stays; with the key the
    same command then works."""
    await hato(store, master_key, "tenant", "add", "t3")
    code, _, err = await hato(store, "", "domain", "add", "t3.test", "--tenant", "t3")
    assert code == 1 and "no master key" in err
    assert await store.directory.domain("t3.test") is None
    code, _out, err = await hato(store, master_key, "domain", "add", "t3.test", "--tenant", "t3")
    assert code == 0, err
    assert (await store.directory.domain("t3.test"))["dkim"][0]["sealed_with"]


async def test_dev_init_names_the_cause_when_the_key_was_sealed_with_another_master_key(
    store, master_key
) -> None:
    """A database another installation set up (another master key) is found out at once, with
    the two fingerprints and what to do."""
    other = SecretBox(generate_master_key())
    assert (await hato(store, master_key, "dev", "init"))[0] == 0
    code, _, err = await hato(
        store, "", "dev", "init", HATO_MASTER_KEY=generate_master_key(), HATO_AMQP_URL=AMQP_URL
    )
    assert code == 1
    assert "sealed with another master key" in err and SecretBox(master_key).fingerprint in err
    assert "make down" in err and other.fingerprint not in err


async def test_the_settings_file_of_the_dev_stack_is_read_from_the_current_folder(
    store, master_key, tmp_path
) -> None:
    """Run where `make up` wrote var/dev.env, `hato` needs no settings in its environment."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "dev.env").write_text(
        f"HATO_MONGODB_URL='{store.settings.url}'\n"
        f"HATO_MONGODB_DATABASE='{store.settings.database}'\n"
        f"HATO_MASTER_KEY='{master_key}'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATO_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hato.cli",
        "dev",
        "init",
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT), "HATO_AMQP_PREFIX": PREFIX},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert (await store.directory.domain("hato.test"))["verified"] is True


async def test_secrets_reseal_moves_every_secret_to_the_new_master_key(
    store, master_key, tmp_path
) -> None:
    """After a master-key change, `hato secrets reseal --old-key-file` seals every DKIM key
    and webhook secret again with the new key; a second run finds nothing to do."""
    from shared import dkim
    from shared.secrets import SecretBox, generate_master_key

    old_key = generate_master_key()
    old, new = SecretBox(old_key), SecretBox(master_key)
    await store.directory.upsert_tenant("shop")
    await store.directory.upsert_domain("rotate.test", tenant="shop", verified=True)
    await store.directory.add_dkim_key(
        "rotate.test", dkim.to_document(dkim.generate_rsa("rotate.test", "s1"), old)
    )
    hook, _ = await store.webhooks.add("shop", "https://hooks.example/x", [], old)
    old_file = tmp_path / "old.key"
    old_file.write_text(old_key)

    code, out, err = await hato(
        store, master_key, "secrets", "reseal", "--old-key-file", str(old_file)
    )
    assert code == 0, err
    assert out.startswith("2 resealed")
    key = (await store.directory.domain("rotate.test"))["dkim"][0]
    new.open(key["private_key_sealed"])
    assert key["sealed_with"] == new.fingerprint
    new.open((await store.webhooks.get(hook["_id"]))["secret_sealed"])
    code, out, _ = await hato(
        store, master_key, "secrets", "reseal", "--old-key-file", str(old_file)
    )
    assert code == 0 and out.startswith("0 resealed") and ", 2 already were" in out


async def test_read_commands_only_read_and_speak_json(store, master_key) -> None:
    """A read command on an empty database makes no index (no write rights needed) and
    prints JSON with --json; `dkim check` without --activate changes no key."""
    fresh = unique("ro")
    code, out, err = await hato(
        store, master_key, "tenant", "list", "--json", HATO_MONGODB_DATABASE=fresh
    )
    assert code == 0 and json.loads(out) == [], err
    assert await store.db.client[fresh].list_collection_names() == []
    await hato(store, master_key, "tenant", "add", "ro", "--network", "192.0.2.0/24")
    await hato(store, master_key, "domain", "add", "ro.test", "--tenant", "ro")
    code, out, _ = await hato(store, master_key, "tenant", "list", "--json")
    assert [t["networks"] for t in json.loads(out)] == [["192.0.2.0/24"]]
    code, out, _ = await hato(store, master_key, "domain", "list", "--json")
    assert json.loads(out)[0]["dkim"] == [
        {"selector": "hato", "algorithm": "rsa-sha256", "state": "active"}
    ]
    await hato(store, master_key, "dkim", "rotate", "ro.test")
    before = (await store.directory.domain("ro.test"))["dkim"]
    code, out, _ = await hato(store, master_key, "dkim", "check", "ro.test", "--json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False and report["changes"] == []
    assert (await store.directory.domain("ro.test"))["dkim"] == before


async def test_exit_codes_tell_failures_apart_and_remove_undoes_add(store, master_key) -> None:
    """Not found 3, conflict 4, usage 2; a tenant is removed once its domain is."""
    assert (await hato(store, master_key, "--version"))[1].startswith("hato ")
    assert (await hato(store, master_key, "tenant", "show", "nobody"))[0] == 3
    assert (await hato(store, master_key, "tenant", "add", "gone"))[0] == 0
    assert (await hato(store, master_key, "tenant", "add", "gone"))[0] == 4
    assert (await hato(store, master_key, "tenant", "frob"))[0] == 2
    assert (await hato(store, master_key, "domain", "add", "gone.test", "--tenant", "gone"))[0] == 0
    code, _, err = await hato(store, master_key, "tenant", "remove", "gone")
    assert code == 4 and "1 domain(s)" in err
    assert (await hato(store, master_key, "domain", "remove", "gone.test"))[0] == 0
    assert await store.directory.domain("gone.test") is None
    assert (await hato(store, master_key, "tenant", "remove", "gone"))[0] == 0
    assert await store.directory.tenant("gone") is None
    assert (await hato(store, master_key, "apikey", "revoke", "nope"))[0] == 3


async def test_console_users_are_made_listed_and_removed_with_their_password_shown_once(
    store, master_key
) -> None:
    """`hato user add` prints a tenant user's password once and stores only its Argon2id
    hash; an operator has no tenant; a duplicate is a conflict, and remove undoes add."""
    from shared.credentials import verify_password

    assert (await hato(store, master_key, "tenant", "add", "web"))[0] == 0
    code, out, err = await hato(store, master_key, "user", "add", "Ops@Web.test", "--tenant", "web")
    assert code == 0, err
    password = out.strip()
    doc = await store.directory.console_user("ops@web.test")
    assert doc["tenant"] == "web" and password not in str(doc)
    assert verify_password(doc["password_hash"], password)
    code, _, _ = await hato(store, master_key, "user", "add", "root@web.test", "--operator")
    assert code == 0
    assert (await store.directory.console_user("root@web.test"))["tenant"] is None
    code, out, _ = await hato(store, master_key, "user", "list", "--json")
    listed = {u["email"]: u for u in json.loads(out)}
    assert listed["ops@web.test"]["tenant"] == "web" and listed["root@web.test"]["operator"]
    assert "password" not in out
    assert (await hato(store, master_key, "user", "add", "ops@web.test", "--tenant", "web"))[0] == 4
    assert (await hato(store, master_key, "user", "add", "x@web.test"))[0] == 2
    assert (await hato(store, master_key, "user", "remove", "ops@web.test"))[0] == 0
    assert (await hato(store, master_key, "user", "remove", "ops@web.test"))[0] == 3


async def test_a_console_password_can_be_given_on_stdin(store, master_key) -> None:
    """`hato user add --password-stdin` keeps the password read (nothing printed on stdout);
    one shorter than 12 characters is refused with exit 2."""
    from shared.credentials import verify_password

    assert (await hato(store, master_key, "tenant", "add", "desk"))[0] == 0
    env = {
        **os.environ,
        "HATO_ENV_FILE": "",
        "HATO_MONGODB_URL": store.settings.url,
        "HATO_MONGODB_DATABASE": store.settings.database,
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": PREFIX,
        "HATO_MASTER_KEY": master_key,
    }
    args = ("user", "add", "--tenant", "desk", "--password-stdin")
    for email, password, code in (
        ("a@desk.test", "correct horse battery", 0),
        ("b@desk.test", "short", 2),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hato.cli", *args[:2], email, *args[2:],
            cwd=ROOT, env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate(f"{password}\n".encode())
        assert proc.returncode == code, err.decode()
        assert password not in out.decode()
    doc = await store.directory.console_user("a@desk.test")
    assert verify_password(doc["password_hash"], "correct horse battery")
    assert await store.directory.console_user("b@desk.test") is None

"""A job that dies takes no mail into limbo: its recipients end `failed` with the reason and a
`failed` event, and `hato dead list|retry|drop` shows the job, puts it back (its recipients wait
again and are delivered) or drops it; an inbound report nobody can read is dead-lettered, not
lost behind its 250 — the four services as real processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from shared import dkim
from shared.secrets import SecretBox, generate_master_key
from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import Stack, free_port
from tests.conftest import AMQP_URL, DOMAIN, MONGODB_URL, provision, unique
from tests.e2e.conftest import OPERATOR
from tests.helpers.cli import run_hato
from tests.helpers.sinks import Sink
from tests.helpers.smtp import RawSession, send
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

FBL = "fbl@hato.test"


@dataclass
class Dead:
    store: Store
    stack: Stack
    sink: Sink
    smtp_port: int
    http_port: int
    bounce_port: int
    env: dict[str, str]


@pytest.fixture(scope="module")
async def dead(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Dead]:
    database = unique("dead")
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    sink = await Sink(host="127.0.0.2").start()
    smtp_port, http_port, bounce_port = free_port(), free_port(), free_port()
    env = {
        "HATO_AMQP_URL": AMQP_URL,
        "HATO_AMQP_PREFIX": unique("dead"),
        "HATO_AMQP_QUEUE_EXPIRES": "600000",
        "HATO_AMQP_ERROR_BACKOFF": "0.1",
        "HATO_AMQP_MAX_REDELIVERIES": "1",
        "HATO_MONGODB_URL": MONGODB_URL,
        "HATO_MONGODB_DATABASE": database,
        "HATO_MASTER_KEY": master_key,
    }
    stack = Stack(
        env={
            **env,
            "HATO_INGEST_SMTP_PORT": str(smtp_port),
            "HATO_INGEST_HTTP_PORT": str(http_port),
            "HATO_INGEST_ADMIN_TOKEN": OPERATOR,
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_SIGNER_KEY_CACHE_SECONDS": "0",
            "HATO_BOUNCE_SMTP_PORT": str(bounce_port),
            "HATO_BOUNCE_FBL_ADDRESS": FBL,
            # No report can be read in a microsecond: each is tried twice, then dead-lettered.
            "HATO_BOUNCE_PARSE_TIMEOUT": "0.000001",
            "HATO_BOUNCE_PARSE_RETRY_DELAY": "0.2",
        },
        log_dir=tmp_path_factory.mktemp("logs"),
    )
    await stack.start_all()
    yield Dead(store, stack, sink, smtp_port, http_port, bounce_port, env)
    await stack.stop_all()
    await sink.stop()
    await store.client.drop_database(database)
    await store.close()


async def test_a_dead_job_fails_its_recipients_and_can_be_retried(
    dead: Dead, master_key: str, dkim_key
) -> None:
    """A sign job that cannot succeed (its key sealed with another master key) is
    dead-lettered: its recipient ends failed with the reason, `hato dead list` names the job,
    and once the key is fixed `hato dead retry` delivers the mail."""
    # The domain's key was sealed with another master key: the signer cannot open it.
    stranger = SecretBox(generate_master_key())
    await dead.store.directory.set_dkim_keys(DOMAIN, [dkim.to_document(dkim_key, stranger)])
    address = f"{unique('limbo')}@ok.test"
    outcome = await send(dead.smtp_port, rcpts=(address,))
    message_id = outcome.queued_id

    async def recipient() -> dict:
        return (await dead.store.messages.recipients(message_id))[0]

    failed = await eventually(recipient, until=lambda r: r["status"] == "failed", timeout=30)
    assert failed["reply"]["enhanced"] == "5.3.0" and "sign" in failed["reply"]["text"]
    events = [e["type"] for e in await dead.store.events.of_message(message_id)]
    assert "dead_lettered" in events and events[-1] == "failed"

    code, out, err = await run_hato(dead.env, "dead", "list", "--json")
    assert code == 0, err
    jobs = [j for j in json.loads(out) if j.get("message_id") == message_id]
    assert len(jobs) == 1 and jobs[0]["kind"] == "sign"
    assert "master key" in jobs[0]["reason"]
    assert jobs[0]["recipients"] == [failed["_id"]]

    # The operator fixes the cause (the key, sealed with this master key), then retries.
    await dead.store.directory.set_dkim_keys(
        DOMAIN, [dkim.to_document(dkim_key, SecretBox(master_key))]
    )
    code, out, err = await run_hato(dead.env, "dead", "retry", jobs[0]["id"])
    assert code == 0 and "1 retried" in out, (out, err)
    delivered = await eventually(recipient, until=lambda r: r["status"] == "delivered", timeout=30)
    assert "reply" in delivered and delivered["reply"]["code"] == 250
    assert any(address in r.rcpt_tos for r in dead.sink.received)

    code, out, _ = await run_hato(dead.env, "dead", "drop", "0000000000000000")
    assert code != 0  # an id that is not there is said to be missing


async def test_a_sign_batch_that_cannot_be_signed_fails_each_mail_alone(
    dead: Dead, master_key: str, dkim_key
) -> None:
    """Mails accepted together ride to the signer in sign batches; when a batch cannot be
    signed (the key does not open) its mails go back one by one and each is dead-lettered as
    its own sign job: each recipient failed with its own `dead_lettered` event, each job listed
    and retried alone. Retried all, once the key is fixed, every mail is delivered."""
    stranger = SecretBox(generate_master_key())
    await dead.store.directory.set_dkim_keys(DOMAIN, [dkim.to_document(dkim_key, stranger)])
    ingest = dead.stack.processes["ingest"]

    async def batched() -> tuple[float, float]:
        """Sign jobs and the broker messages that carried them, so far."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{ingest.ops_url}/metrics")).text
        found = dict.fromkeys(("sum", "count"), 0.0)
        for line in text.splitlines():
            for part in found:
                if line.startswith(f"hato_ingest_sign_jobs_per_message_{part} "):
                    found[part] = float(line.split()[1])
        return found["sum"], found["count"]

    before = await batched()
    addresses = [f"{unique('batch')}@ok.test" for _ in range(12)]
    outcomes = await asyncio.gather(*(send(dead.smtp_port, rcpts=(a,)) for a in addresses))
    message_ids = {o.queued_id for o in outcomes}
    jobs, messages = (a - b for a, b in zip(await batched(), before, strict=True))
    assert jobs == 12 and messages < 12, "no two of twelve mails shared a sign message"

    async def recipients() -> list[dict]:
        return [r for m in message_ids for r in await dead.store.messages.recipients(m)]

    await eventually(
        recipients, until=lambda rs: all(r["status"] == "failed" for r in rs), timeout=60
    )
    for message_id in message_ids:
        events = [e["type"] for e in await dead.store.events.of_message(message_id)]
        assert events.count("dead_lettered") == 1 and events[-1] == "failed", events
    _, out, _ = await run_hato(dead.env, "dead", "list", "--json")
    listed = [j for j in json.loads(out) if j.get("message_id") in message_ids]
    assert sorted(j["message_id"] for j in listed) == sorted(message_ids)
    assert {j["kind"] for j in listed} == {"sign"}

    await dead.store.directory.set_dkim_keys(
        DOMAIN, [dkim.to_document(dkim_key, SecretBox(master_key))]
    )
    code, out, err = await run_hato(dead.env, "dead", "retry", *(j["id"] for j in listed))
    assert code == 0 and "12 retried" in out, (out, err)
    await eventually(
        recipients, until=lambda rs: all(r["status"] == "delivered" for r in rs), timeout=60
    )


async def test_a_dropped_job_leaves_its_recipients_failed(dead: Dead, dkim_key) -> None:
    """An operator drops a dead job through the admin API: it is gone from the list (a second
    drop is 404, no token is 401) and its recipient stays failed."""
    await dead.store.directory.set_dkim_keys(
        DOMAIN, [dkim.to_document(dkim_key, SecretBox(generate_master_key()))]
    )
    address = f"{unique('drop')}@ok.test"
    message_id = (await send(dead.smtp_port, rcpts=(address,))).queued_id
    await eventually(
        lambda: dead.store.messages.recipients(message_id),
        until=lambda rs: rs[0]["status"] == "failed",
        timeout=30,
    )
    op = {"Authorization": f"Bearer {OPERATOR}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dead.http_port}") as http:
        jobs = (await http.get("/admin/v1/dead", headers=op)).json()["jobs"]
        job = next(j for j in jobs if j.get("message_id") == message_id)
        dropped = await http.delete(f"/admin/v1/dead/{job['id']}", headers=op)
        assert dropped.status_code == 200 and dropped.json()["dropped"][0]["id"] == job["id"]
        again = await http.delete(f"/admin/v1/dead/{job['id']}", headers=op)
        assert again.status_code == 404
        assert (await http.get("/admin/v1/dead")).status_code == 401
    _, out, _ = await run_hato(dead.env, "dead", "list", "--json")
    assert message_id not in {j.get("message_id") for j in json.loads(out)}
    assert (await dead.store.messages.recipients(message_id))[0]["status"] == "failed"


async def test_a_key_that_does_not_open_is_said_at_once(dead: Dead, dkim_key) -> None:
    """The signer's /readyz is 503 while a live key does not open with its master key, and
    says which; `hato dkim check` says so too. With the key fixed, the signer is ready."""
    await dead.store.directory.set_dkim_keys(
        DOMAIN, [dkim.to_document(dkim_key, SecretBox(generate_master_key()))]
    )
    signer = dead.stack.processes["signer"]
    async with httpx.AsyncClient() as http:
        ready = await http.get(f"{signer.ops_url}/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["dkim_keys"] is False
        assert "another master key" in ready.json()["problems"]["dkim_keys"]
        code, out, _ = await run_hato(dead.env, "dkim", "check", DOMAIN)
        assert code == 1 and "NOT USABLE" in out and "another master key" in out
        await dead.store.directory.set_dkim_keys(
            DOMAIN, [dkim.to_document(dkim_key, SecretBox(dead.env["HATO_MASTER_KEY"]))]
        )
        assert (await http.get(f"{signer.ops_url}/readyz")).status_code == 200


async def test_an_unreadable_report_is_dead_lettered_not_lost(dead: Dead) -> None:
    """A report the parser cannot read (here: no parse ends in time) is answered 250 once it
    is kept and queued, tried twice, then dead-lettered: it stays `unparsed` with the
    error, `hato dead list` names it, and a `dead_lettered` event names the report."""
    marker = unique("unreadable")
    raw = await RawSession.open(dead.bounce_port)
    await raw.cmd("EHLO mx.ok.test")
    assert (await raw.cmd("MAIL FROM:<>"))[0].startswith("250")
    assert (await raw.cmd(f"RCPT TO:<{FBL}>"))[0].startswith("250")
    await raw.cmd("DATA")
    await raw.send(f"From: a@example.org\r\nSubject: {marker}\r\n\r\nx\r\n.\r\n".encode())
    assert (await raw.reply())[0].startswith("250 2.0.0")
    await raw.close()

    async def jobs() -> list[dict]:
        code, out, err = await run_hato(dead.env, "dead", "list", "--json")
        assert code == 0, err
        return [j for j in json.loads(out) if j["kind"] == "report"]

    docs = await eventually(
        lambda: dead.store.db.reports.find({}).to_list(None),
        until=lambda ds: any(marker.encode() in bytes(d["raw"]) for d in ds),
    )
    report = next(d for d in docs if marker.encode() in bytes(d["raw"]))
    listed = await eventually(
        jobs, until=lambda js: any(j["report_id"] == report["_id"] for j in js), timeout=30
    )
    job = next(j for j in listed if j["report_id"] == report["_id"])
    assert "unreadable" in job["reason"] and "longer than" in job["reason"]
    kept = await dead.store.db.reports.find_one({"_id": report["_id"]})
    assert kept["state"] == "unparsed" and "longer than" in kept["error"]
    event = await eventually(
        lambda: dead.store.db.events.find_one(
            {"type": "dead_lettered", "detail.report_id": report["_id"]}
        ),
        until=lambda e: e is not None,
    )
    assert event["detail"]["queue"].endswith(".reports")

"""The dashboards and alert rules against a real Prometheus (Debian's ``prometheus``, which
scripts/infra.sh prometheus-tools installs): it scrapes a running stack, RabbitMQ's
rabbitmq_prometheus endpoint and the stack's own FerretDB every second while mail is accepted
over SMTP (with STARTTLS, a failed AUTH that locks the address out, a refused sender) and
HTTP, delivered, deferred until it expires, slowed down, bounced, complained about and
suppressed, and a job is dead-lettered. Then every panel's query and every dashboard
variable must return data, and every alert rule's expression must parse and evaluate."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import smtplib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest
import yaml

from shared.settings import StoreSettings
from shared.store import Store
from shared.testing import ROOT, Stack, free_port
from tests.conftest import AMQP_URL, DOMAIN, TENANT, provision, unique
from tests.helpers import reports
from tests.helpers.dns import DnsServer
from tests.helpers.ferretdb import PrivateFerretDB
from tests.helpers.sinks import Sink
from tests.helpers.smtp import RawSession, make_message
from tests.helpers.tls import client_context, make_certificate
from tests.helpers.waiting import eventually
from tools import dashboards

pytestmark = pytest.mark.integration

RULES = ROOT / "deploy" / "prometheus" / "rules" / "hato.rules.yml"
RABBITMQ_METRICS = "127.0.0.1:15692"  # rabbitmq_prometheus (scripts/infra.sh up enables it)
FBL = "fbl@feedback.hato.test"
# Grafana fills these in; here each variable means "all" and the rate window fits 1 s scrapes.
VARIABLES = {"$__rate_interval": "15s", "$tenant": ".*", "$pool": ".*"}

# What the sink answers each recipient: local parts pick the fate.
FATES = {
    "defer": "451 4.2.1 mailbox busy, try later",
    "slow": "421 4.7.0 too many messages, slow down",
    "bounce": "550 5.1.1 no such user",
}


def fate(address: str) -> str | None:
    return FATES.get(address.split("@")[0].rstrip("0123456789"))


@dataclass
class Observed:
    prometheus: str  # base URL
    http: httpx.AsyncClient


async def _prometheus(tmp: Path, targets: dict[str, list[str]], ferret_debug: int) -> tuple:
    binary = shutil.which("prometheus", path="/usr/bin:/usr/local/bin")
    if binary is None:
        pytest.fail("prometheus is missing: run scripts/infra.sh prometheus-tools")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "hato", "static_configs": [{"targets": targets["hato"]}]},
            {"job_name": "rabbitmq", "static_configs": [{"targets": [RABBITMQ_METRICS]}]},
            {
                "job_name": "ferretdb",
                "metrics_path": "/debug/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{ferret_debug}"]}],
            },
        ],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=2) as client:

        async def ready() -> bool:
            if process.returncode is not None:
                raise RuntimeError((tmp / "prometheus.log").read_text()[-3000:])
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get(f"{url}/-/ready")).status_code == 200
            return False

        await eventually(ready, timeout=30)
    return process, url


@pytest.fixture(scope="module")
async def observed(tmp_path_factory, master_key, dkim_key) -> AsyncIterator[Observed]:
    tmp = tmp_path_factory.mktemp("observe")
    try:
        _, writer = await asyncio.open_connection(*RABBITMQ_METRICS.split(":"))
        writer.close()
    except OSError:
        pytest.fail(f"RabbitMQ's metrics are not on {RABBITMQ_METRICS}: run scripts/infra.sh up")
    ferret = PrivateFerretDB(tmp / "ferretdb", metrics=True)
    await ferret.start()
    database = unique("observe")
    store = Store(StoreSettings(url=ferret.url, database=database, timeout=3))
    await store.ensure_indexes()
    await provision(store, master_key, dkim_key)
    await store.directory.upsert_tenant("rival")
    await store.directory.upsert_domain("rival.test", tenant="rival", verified=True)
    _, key = await store.directory.add_api_key(TENANT, name="observe")
    # A warm-up plan for the dispatcher's one source IP: its cap and headroom are on show.
    await store.pools.add_member(
        "default", {"ip": "127.0.0.1", "helo": "hato.test", "warmup": [500, 1000]}
    )
    sink = await Sink(host="127.0.0.2", rcpt_reply=fate).start()
    dns_server = await DnsServer().start()
    cert, cert_key = make_certificate(tmp)
    ports = {name: free_port() for name in ("smtp", "submission", "http", "bounce")}
    stack = Stack(
        env={
            "HATO_AMQP_URL": AMQP_URL,
            "HATO_AMQP_PREFIX": unique("observe"),
            "HATO_AMQP_QUEUE_EXPIRES": "600000",
            "HATO_MONGODB_URL": ferret.url,
            "HATO_MONGODB_DATABASE": database,
            "HATO_MASTER_KEY": master_key,
            "HATO_METRICS_INTERVAL": "1",
            "HATO_INGEST_SMTP_PORT": str(ports["smtp"]),
            "HATO_INGEST_SUBMISSION_PORT": str(ports["submission"]),
            "HATO_INGEST_HTTP_PORT": str(ports["http"]),
            "HATO_INGEST_TLS_CERT_FILE": str(cert),
            "HATO_INGEST_TLS_KEY_FILE": str(cert_key),
            "HATO_INGEST_AUTH_MAX_FAILURES": "1",
            "HATO_DNS_NAMESERVERS": dns_server.address,
            "HATO_DNS_TIMEOUT": "2",
            "HATO_DISPATCHER_ROUTES": f"*={sink.address}",
            "HATO_DISPATCHER_RETRY_DELAYS": "1",
            "HATO_DISPATCHER_MAX_AGE": "3",
            "HATO_VERP_KEY": "verp-" + unique("key"),
            "HATO_BOUNCE_SMTP_PORT": str(ports["bounce"]),
            "HATO_BOUNCE_FBL_ADDRESS": FBL,
        },
        log_dir=tmp / "logs",
    )
    (tmp / "logs").mkdir()
    await stack.start_all()
    process, url = await _prometheus(
        tmp,
        {"hato": [f"127.0.0.1:{p.ops_port}" for p in stack.processes.values()]},
        ferret.debug_port,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await traffic(stack, store, sink, ports, key, cert, http)
            yield Observed(url, http)
    finally:
        process.terminate()
        await process.wait()
        codes = await stack.stop_all()
        await sink.stop()
        dns_server.stop()
        await store.client.drop_database(database)
        await store.close()
        await ferret.stop()
    assert codes == {"ingest": 0, "signer": 0, "dispatcher": 0, "bounce": 0}


async def traffic(stack, store, sink, ports, key, cert, http) -> None:
    """Mail of every fate through every door, and one job nobody can process."""
    api = f"http://127.0.0.1:{ports['http']}"
    to = [
        "ok@gmail.com",
        "ok@outlook.com",
        "defer@docomo.ne.jp",
        "slow@ezweb.ne.jp",
        "bounce@yahoo.co.jp",
        "ok@softbank.ne.jp",
        "ok@example.com",
    ]
    body = {"from": f"Shop <orders@{DOMAIN}>", "to": to, "subject": "Hi", "text": "Hello."}
    auth = {"Authorization": f"Bearer {key}"}
    r = await http.post(f"{api}/v1/messages", json=body, headers=auth)
    assert r.status_code == 202, r.text
    refused = await http.post(
        f"{api}/v1/messages", json=body | {"from": "x@rival.test"}, headers=auth
    )
    assert refused.status_code >= 400
    await asyncio.to_thread(smtp_session, ports, cert)
    # A job the signer cannot decode: dead-lettered.
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.default_exchange.publish(
            aio_pika.Message(b"not a sign job"), routing_key=f"{stack.env['HATO_AMQP_PREFIX']}.sign"
        )
    # The bounce suppresses its recipient: mail to it again is suppressed at acceptance.
    await eventually(
        lambda: store.suppressions.suppressed(TENANT, ["bounce@yahoo.co.jp"]), timeout=30
    )
    again = await http.post(
        f"{api}/v1/messages", json=body | {"to": ["bounce@yahoo.co.jp"]}, headers=auth
    )
    assert again.status_code == 202, again.text
    # A complaint about the mail delivered to gmail, through the feedback loop address.
    received = await eventually(
        lambda: _received(sink, "ok@gmail.com"), until=lambda x: x is not None
    )
    arf = reports.arf("ok@gmail.com", received.mail_from, sender=f"orders@{DOMAIN}", subject="Hi")
    raw = await RawSession.open(ports["bounce"])
    await raw.cmd("EHLO isp.test")
    assert (await raw.cmd("MAIL FROM:<>"))[0].startswith("250")
    assert (await raw.cmd(f"RCPT TO:<{FBL}>"))[0].startswith("250")
    await raw.cmd("DATA")
    await raw.send(arf + b".\r\n")
    assert (await raw.reply())[0].startswith("250")
    await raw.close()


async def _received(sink: Sink, address: str):
    return next((r for r in sink.received if address in r.rcpt_tos), None)


def smtp_session(ports: dict[str, int], cert: Path) -> None:
    """Relay over STARTTLS from the tenant's network, a refused sender, and a failed AUTH on
    the submission port that locks 127.0.0.1 out of AUTH (HATO_INGEST_AUTH_MAX_FAILURES=1)."""
    context = client_context(cert)
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as s:
        s.starttls(context=context)
        s.ehlo()
        s.sendmail(f"orders@{DOMAIN}", ["tls@gmail.com"], make_message(to="tls@gmail.com"))
        with contextlib.suppress(smtplib.SMTPException):
            s.sendmail(
                "x@rival.test",
                ["a@gmail.com"],
                make_message(from_="x@rival.test", to="a@gmail.com"),
            )
    with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=30) as s:
        s.starttls(context=context)
        s.ehlo()
        with contextlib.suppress(smtplib.SMTPAuthenticationError):
            s.login("nobody", "wrong")
        with contextlib.suppress(smtplib.SMTPAuthenticationError, ssl.SSLError):
            s.login("nobody", "wrong")  # locked out by now


async def query(obs: Observed, expr: str) -> dict:
    r = await obs.http.get(f"{obs.prometheus}/api/v1/query", params={"query": expr})
    return r.json()


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


async def test_every_dashboard_panel_returns_data(observed: Observed) -> None:
    """Each query of each panel parses and returns at least one series once the mail above
    went through (retried for a while: the scrapes and the census are 1 s apart)."""
    targets = [
        (d.title, panel.title, target.expr)
        for d in dashboards.DASHBOARDS
        for row in d.rows
        for panel in row.panels
        for target in panel.targets
    ]

    async def empty() -> list[str]:
        missing = []
        for dashboard, panel, expr in targets:
            answer = await query(observed, substitute(expr))
            assert answer["status"] == "success", f"{dashboard} / {panel}: {expr}\n{answer}"
            if not answer["data"]["result"]:
                missing.append(f"{dashboard} / {panel}: {expr}")
        return missing

    try:
        await eventually(empty, until=lambda m: not m, timeout=45)
    except TimeoutError:
        pytest.fail("panels without data:\n" + "\n".join(await empty()))


async def test_every_dashboard_variable_has_values(observed: Observed) -> None:
    """The tenant and pool pickers list something (label_values over the series API)."""
    for d in dashboards.DASHBOARDS:
        for v in d.variables:
            metric, label = v.query.removeprefix("label_values(").rstrip(")").split(", ")
            r = await observed.http.get(
                f"{observed.prometheus}/api/v1/label/{label}/values", params={"match[]": metric}
            )
            assert r.json()["data"], f"{d.title}: {v.query}"


async def test_every_alert_rule_parses_and_evaluates(observed: Observed) -> None:
    """Prometheus loaded every rule of the file and evaluates each without error; each
    expression also runs as a query."""
    expected = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}

    async def loaded() -> dict[str, str]:
        r = await observed.http.get(f"{observed.prometheus}/api/v1/rules")
        rules = [rule for g in r.json()["data"]["groups"] for rule in g["rules"]]
        return {rule["name"]: rule.get("health", "") for rule in rules}

    health = await eventually(
        loaded, until=lambda h: set(h) == expected and all(v == "ok" for v in h.values())
    )
    assert set(health) == expected
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            answer = await query(observed, rule["expr"])
            assert answer["status"] == "success", f"{rule['alert']}: {answer}"


async def test_the_mail_shows_every_fate_and_provider_group(observed: Observed) -> None:
    """The traffic above is what the panels show: each recipient state and each provider
    group it was sent to, with deferrals by reason and bounces by the classifier's reason."""

    async def values(expr: str, label: str) -> set[str]:
        answer = await query(observed, expr)
        return {s["metric"].get(label, "") for s in answer["data"]["result"]}

    statuses = {"delivered", "deferred", "bounced", "expired", "suppressed", "complained"}
    await eventually(
        lambda: values("sum by (status) (hato_recipient_outcomes_total)", "status"),
        until=lambda seen: statuses <= seen,
    )
    providers = await values("sum by (provider) (hato_delivery_attempts_total)", "provider")
    assert providers >= {"gmail", "outlook", "docomo", "au", "yahoo", "softbank", "other"}
    reasons = await values("sum by (reason) (hato_delivery_deferrals_total)", "reason")
    assert {"mailbox", "throttled"} <= reasons
    assert await values('hato_bounces_total{source="complaint"}', "provider") == {"gmail"}
    assert "smtp" in await values("hato_ingest_refused_total", "door")

"""docker-compose.yml's settings deliver mail. No Docker engine runs here, so its secrets and
init jobs and four services run as processes with the environment, commands and healthchecks the
file gives them (read through the Compose Specification's loader), its network laid onto loopback
(172.28.a.b -> 127.28.a.b, tests/helpers/compose.py), and the real RabbitMQ and FerretDB
standing in for its rabbitmq and mongodb services under a prefix and database of this test's
own (the broker URL the secrets job wrote for the compose rabbitmq is pointed at the stand-in,
as the environment's URLs are). A recording SMTP server listens where the compose sink does, an
OTLP receiver where its jaeger does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiosmtplib
import httpx
import pytest

from shared.broker import Exchange
from shared.dns import records_for
from shared.settings import DnsSettings, StoreSettings
from shared.store import Store
from shared.testing import ROOT, SERVICES, ServiceProcess
from shared.verp import TokenKind, Verp
from tests.conftest import AMQP_URL, MONGODB_URL, unique
from tests.helpers.compose import Loopback, load, seconds
from tests.helpers.dkim_verify import dkimpy
from tests.helpers.otlp import OtlpReceiver
from tests.helpers.sinks import Received, Sink
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.integration

STAND_INS = {"rabbitmq": AMQP_URL, "mongodb": MONGODB_URL}
SECRETS = ("master.key", "verp.key", "admin.token", "amqp.url")
# The stand-ins are shared: this test's exchanges, queues and database are its own, whatever
# the compose file says.
ISOLATING = ("HATO_AMQP_PREFIX", "HATO_AMQP_QUEUE_EXPIRES", "HATO_MONGODB_DATABASE")


@dataclass
class ComposeRun:
    net: Loopback
    store: Store
    secrets: Path
    rabbitmq_conf: Path
    first_secrets: dict[str, str]
    processes: dict[str, ServiceProcess]
    sink: Sink
    env: dict[str, str]
    sink_health_before_start: int
    jaeger: OtlpReceiver

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    def port(self, service: str, published: int) -> int:
        """The container port behind ``service``'s port ``published`` on the host."""
        ports = self.net.project["services"][service]["ports"]
        return next(p["target"] for p in ports if p["published"] == str(published))


def base_env(prefix: str, database: str) -> dict[str, str]:
    """This machine's environment as a container's would be: no HATO_* of the developer's,
    `hato` and `python` from the project's venv (the image's), and no settings file (the
    image has no var/dev.env; this checkout may)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATO_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["HATO_ENV_FILE"] = ""
    return env | dict(zip(ISOLATING, (prefix, "600000", database), strict=True))


def environment(net: Loopback, service: str, env: dict[str, str]) -> dict[str, str]:
    """What ``service``'s process gets: ``env``, then the compose file's settings for it
    (rewritten for loopback), then this test's isolation."""
    return {**env, **net.environment(service, STAND_INS), **{k: env[k] for k in ISOLATING}}


async def run_once(net: Loopback, service: str, env: dict[str, str]) -> tuple[int, str]:
    """A one-shot compose service (the secrets or init job) to its end: (exit code, output)."""
    compose = net.project["services"][service]
    command = [net.rewrite(a, service, STAND_INS) for a in compose["command"]]
    proc = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=environment(net, service, env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(errors="replace")


async def start(net: Loopback, service: str, env: dict[str, str], logs: Path) -> ServiceProcess:
    """A long-running compose service as a process, with its command and environment."""
    compose = net.project["services"][service]
    service_env = environment(net, service, env)
    log_path = logs / f"{service}.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *(net.rewrite(a, service, STAND_INS) for a in compose["command"]),
            cwd=ROOT,
            env=service_env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    ops_port = int(service_env.get(f"HATO_{service.upper()}_OPS_PORT", "0"))
    return ServiceProcess(service, proc, ops_port, log_path)


async def healthcheck(net: Loopback, service: str, env: dict[str, str]) -> int:
    """Exit code of ``service``'s compose healthcheck, run against where it listens here."""
    check = net.project["services"][service]["healthcheck"]
    kind, *args = check["test"]
    args = [net.rewrite(a, service) for a in args]
    command = args if kind == "CMD" else ["sh", "-c", *args]
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await asyncio.wait_for(proc.wait(), timeout=seconds(check["timeout"]))
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -1


async def until_healthy(
    net: Loopback, service: str, env: dict[str, str], process: ServiceProcess | None = None
) -> None:
    """Runs the healthcheck until it passes, within its start period (as `service_healthy`)."""
    check = net.project["services"][service]["healthcheck"]
    deadline = asyncio.get_running_loop().time() + seconds(check["start_period"])
    while await healthcheck(net, service, env) != 0:
        if process is not None and process.process.returncode is not None:
            raise AssertionError(f"{service} exited:\n{process.log()[-3000:]}")
        if asyncio.get_running_loop().time() > deadline:
            log = process.log()[-3000:] if process else ""
            raise AssertionError(f"{service} never became healthy:\n{log}")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def compose(tmp_path_factory) -> AsyncIterator[ComposeRun]:
    folder = tmp_path_factory.mktemp("compose")
    secrets = folder / "volumes" / "secrets"
    # Docker fills a new volume from the image's /secrets: an empty folder of the hato user's.
    secrets.mkdir(parents=True, mode=0o700)
    rabbitmq_conf = folder / "volumes" / "rabbitmq-conf"
    rabbitmq_conf.mkdir(mode=0o755)
    logs = folder / "logs"
    logs.mkdir()
    net = Loopback(load(), volumes={"secrets": secrets, "rabbitmq-conf": rabbitmq_conf})
    prefix, database = unique("compose"), unique("compose")
    env = base_env(prefix, database)
    store = Store(StoreSettings(url=MONGODB_URL, database=database, timeout=3))

    # depends_on order: the secrets job, the init job (each twice: a restart of the stack runs
    # them again), the sink, then the four services.
    init_runs = [await run_once(net, "secrets", env)]
    first = {n: (secrets / n).read_text() for n in SECRETS if (secrets / n).exists()}
    init_runs.append(await run_once(net, "secrets", env))
    again = {n: (secrets / n).read_text() for n in SECRETS if (secrets / n).exists()}
    assert again == first, "the secrets job changed a secret on its second run"
    # The file names the compose rabbitmq (here its loopback address) with the generated user;
    # the stand-in RabbitMQ has users of its own, and the services read the URL from this file.
    url_file = secrets / "amqp.url"
    if url_file.exists():
        generated = urlsplit(url_file.read_text().strip())
        assert generated.hostname == net.address("rabbitmq"), generated.hostname
        url_file.write_text(STAND_INS["rabbitmq"])
    init_runs += [await run_once(net, "init", env) for _ in range(2)]
    sink_port = int(_option(net.project["services"]["sink"]["command"], "--port"))
    sink_health_before_start = await healthcheck(net, "sink", env)
    sink = await Sink(host=net.address("sink"), port=sink_port).start()
    jaeger = await OtlpReceiver(host=net.address("jaeger"), port=4318).start()
    processes: dict[str, ServiceProcess] = {}
    try:
        assert [code for code, _ in init_runs] == [0, 0, 0, 0], init_runs
        await until_healthy(net, "sink", env)
        for name in SERVICES:
            processes[name] = await start(net, name, env, logs)
        await asyncio.gather(*(until_healthy(net, n, env, processes[n]) for n in SERVICES))
        yield ComposeRun(
            net,
            store,
            secrets,
            rabbitmq_conf,
            first,
            processes,
            sink,
            env,
            sink_health_before_start,
            jaeger,
        )
    finally:
        codes = await asyncio.gather(*(p.terminate() for p in processes.values()))
        await sink.stop()
        await jaeger.stop()
        await store.client.drop_database(database)
        await store.close()
        await _delete_exchanges(prefix)
    assert dict(zip(processes, codes, strict=True)) == dict.fromkeys(SERVICES, 0)


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


async def _delete_exchanges(prefix: str) -> None:
    """Queues expire by themselves (HATO_AMQP_QUEUE_EXPIRES); exchanges do not."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        async with connection:
            channel = await connection.channel()
            for name in Exchange:
                await channel.exchange_delete(f"{prefix}.{name.value}")


async def test_secrets_job_generates_each_secret_once(compose: ComposeRun) -> None:
    """The secrets job writes the master key, VERP key, admin token and broker URL into its
    volume, readable by their owner only (a second run keeps them as they are), and RabbitMQ's
    user into RabbitMQ's conf.d, with the password the URL carries."""
    first = compose.first_secrets
    assert set(first) == set(SECRETS)
    for name in SECRETS:
        path = compose.secrets / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        assert len(first[name].strip()) >= 32, name
    for name in ("master.key", "verp.key", "admin.token"):  # the URL was pointed elsewhere
        assert compose.secret(name) == first[name].strip(), f"{name} changed"
    assert len({first[n].strip() for n in SECRETS}) == len(SECRETS)
    conf = (compose.rabbitmq_conf / "20-credentials.conf").read_text()
    url = urlsplit(first["amqp.url"].strip())
    assert f"default_user = {url.username}\ndefault_pass = {url.password}\n" == conf
    assert url.hostname == compose.net.address("rabbitmq")  # rabbitmq, laid onto loopback


async def test_healthchecks_pass_against_the_running_services(compose: ComposeRun) -> None:
    """Each service's compose healthcheck (python only: the image has no curl) exits 0 against
    the running service, and failed before the sink listened."""
    for name in (*SERVICES, "sink"):
        assert await healthcheck(compose.net, name, compose.env) == 0, name
    assert compose.sink_health_before_start != 0


async def test_mail_from_the_host_is_delivered_from_the_dispatchers_own_address(
    compose: ComposeRun,
) -> None:
    """Mail the host sends to ingest's published SMTP port (arriving from the compose gateway,
    which the dev tenant relays for) is signed with the key init made and delivered to the sink
    by the dispatcher from its own compose address, with a return path signed by the VERP key."""
    net = compose.net
    message = (
        "From: Orders <orders@hato.test>\r\nTo: alice@example.com\r\n"
        "Subject: compose delivers\r\n\r\nSent with docker-compose.yml's settings.\r\n"
    )
    async with aiosmtplib.SMTP(
        hostname=net.address("ingest"),
        port=compose.port("ingest", 2525),
        source_address=(net.loopback(net.gateway), 0),
        timeout=30,
    ) as client:
        _, reply = await client.sendmail("orders@hato.test", ["alice@example.com"], message)
    message_id = reply.rsplit(" ", 1)[-1]

    received: Received = (await compose.sink.wait_for(1, timeout=60))[0]
    own = net.project["services"]["dispatcher"]["networks"]["default"]["ipv4_address"]
    assert received.peer == net.loopback(own) == net.address("dispatcher")
    assert received.peer != net.address("sink")
    assert received.rcpt_tos == ["alice@example.com"]
    verp = Verp(compose.secret("verp.key").encode())
    token = verp.parse(received.mail_from)
    assert token is not None and token.kind is TokenKind.RECIPIENT
    assert (await compose.store.messages.recipient(token.id))["message_id"] == message_id
    domain = await compose.store.directory.domain("hato.test")
    published = {
        r.name.rstrip(".").lower(): r.value
        for r in records_for(domain, DnsSettings())
        if r.type == "TXT" and "._domainkey." in r.name
    }
    assert b"d=hato.test" in received.data
    assert dkimpy(received.data, published) == [True]

    # Its trace reached where the compose file's jaeger listens (HATO_OTLP_ENDPOINT), from each
    # service the mail crossed (the batch exporter sends every 5 s; bounce has no part in a
    # delivery nobody asked to hear about).
    message = await compose.store.messages.message(message_id)
    await eventually(
        lambda: asyncio.sleep(0, {s.service for s in compose.jaeger.trace(message["trace_id"])}),
        until=lambda services: services >= {"hato-ingest", "hato-signer", "hato-dispatcher"},
        timeout=20,
    )


async def test_admin_api_takes_the_generated_token(compose: ComposeRun) -> None:
    """Ingest reads the operator token from the file the secrets job generated
    (HATO_INGEST_ADMIN_TOKEN_FILE): it opens /admin/v1, and nothing else does."""
    host = compose.net.environment("ingest")["HATO_INGEST_HTTP_HOST"]
    url = f"http://{host}:{compose.port('ingest', 8025)}/admin/v1/pools"
    token = compose.secret("admin.token")
    async with httpx.AsyncClient(timeout=10) as http:
        good = await http.get(url, headers={"Authorization": f"Bearer {token}"})
        bad = await http.get(url, headers={"Authorization": "Bearer change-me"})
    assert good.status_code == 200
    assert bad.status_code == 401

"""docker-compose.yml as Docker Compose loads it (the Compose Specification's loader, through
tools/composecheck) and the Prometheus and Grafana files it mounts: every service healthy before
its dependents start, only real settings, no secret or password written down (a secrets job
makes them before anything starts), the dispatcher sending from an address of its own.
tests/e2e/test_compose_settings.py runs the same settings."""

from __future__ import annotations

import ipaddress
import json
import re
import stat
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shared.known_secrets import KNOWN_SECRETS
from shared.settings import ServiceSettings
from shared.testing import ROOT, SERVICES
from tests.helpers.compose import COMPOSE_FILE, Loopback, load, run_loader, seconds
from tests.helpers.settings import known_variables

# The image is python:3.11-slim with Hato installed: no curl, no wget.
IMAGE_TOOLS = {"python", "hato"}
# Settings holding a secret: compose must name a file instead (HATO_..._FILE).
SECRET_SETTINGS = ("HATO_MASTER_KEY", "HATO_VERP_KEY", "HATO_INGEST_ADMIN_TOKEN", "HATO_AMQP_URL")
# A URL with a written-down password in it: scheme://user:password@host (a template's
# placeholder, <generated> or a sed group \1, is none).
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]*:([\w.~%!*'+,;=-]*)@", re.IGNORECASE)
RABBITMQ_CONF_D = "/etc/rabbitmq/conf.d"


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return load()


def services(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return project["services"]


def one_shot(service: dict[str, Any]) -> bool:
    """A job that runs to its end (the secrets and init jobs): nothing waits for it to be
    healthy."""
    return service.get("restart") == "no"


def script(service: dict[str, Any]) -> str:
    """A job's command as one text (its `sh -ec` script, or its words)."""
    return " ".join(service["command"])


def hato_image(service: dict[str, Any]) -> bool:
    return Path(service.get("build", {}).get("context", "/nonexistent")) == ROOT


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The file of this checkout that a bind mount of ``service`` shows at ``container_path``."""
    wanted = PurePosixPath(container_path)
    for mount in service.get("volumes") or []:
        target = PurePosixPath(mount["target"])
        if mount["type"] == "bind" and (wanted == target or target in wanted.parents):
            return Path(mount["source"]) / wanted.relative_to(target)
    raise AssertionError(f"nothing of this checkout is mounted at {container_path}")


def network(project: dict[str, Any]) -> dict[str, Any]:
    return project["networks"]["default"]["ipam"]["config"][0]


def test_compose_file_loads_as_project_hato_with_every_service(project) -> None:
    """The loader accepts docker-compose.yml with no variable set, as project `hato` (volume
    names do not depend on the checkout's folder) with the whole stack."""
    assert project["name"] == "hato"
    assert set(services(project)) >= {
        *SERVICES,
        "secrets",
        "init",
        "sink",
        "rabbitmq",
        "mongodb",
        "prometheus",
        "grafana",
    }
    for name in SERVICES:
        assert services(project)[name]["command"] == ["python", "-m", f"services.{name}"]


def test_the_loader_refuses_what_docker_compose_would(tmp_path: Path) -> None:
    """The checker is the real loader: a dependency on a service that does not exist fails."""
    broken = tmp_path / "compose.yml"
    broken.write_text("services:\n  a:\n    image: x\n    depends_on: [nowhere]\n")
    result = run_loader(broken, project_dir=tmp_path)
    assert result.returncode == 1
    assert "nowhere" in result.stderr


def test_compose_sets_only_real_settings(project) -> None:
    """Every HATO_* variable a service (or the init job) gets is a setting that exists."""
    known = known_variables()
    for name, service in services(project).items():
        for variable in service.get("environment") or {}:
            if variable.startswith("HATO_"):
                assert variable in known, f"{name}: {variable} is no setting"


def test_every_long_running_service_has_a_healthcheck(project) -> None:
    """Each service but the one-shot init job has a healthcheck; Hato's own use only what the
    image has (python) and ask the ops port the service's settings open."""
    for name, service in services(project).items():
        if one_shot(service):
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        kind, *command = check["test"]
        assert kind in ("CMD", "CMD-SHELL"), name
        if hato_image(service):
            assert kind == "CMD" and command[0] in IMAGE_TOOLS, f"{name}: {command}"
        if name in SERVICES:
            env = service["environment"]
            port = env[f"HATO_{name.upper()}_OPS_PORT"]
            assert f"http://127.0.0.1:{port}/readyz" in command[-1], name
            # 127.0.0.1 from inside the container and Prometheus from outside must both reach it.
            assert env[f"HATO_{name.upper()}_OPS_HOST"] == "0.0.0.0", name


def test_dependencies_wait_for_health_or_completion(project) -> None:
    """depends_on waits for a healthy service or a finished job, never just a started one; each
    Hato service waits for the secrets job, RabbitMQ, MongoDB and the init job."""
    all_services = services(project)
    for name, service in all_services.items():
        for target, dep in (service.get("depends_on") or {}).items():
            condition = dep["condition"]
            if condition == "service_healthy":
                assert all_services[target].get("healthcheck"), f"{name} -> {target}"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {target}"
                assert one_shot(all_services[target]), f"{name} -> {target}"
    for name in (*SERVICES, "init"):
        deps = {t: d["condition"] for t, d in all_services[name]["depends_on"].items()}
        assert deps["rabbitmq"] == deps["mongodb"] == "service_healthy", name
        assert deps["secrets"] == "service_completed_successfully", name
        if name != "init":
            assert deps["init"] == "service_completed_successfully", name


def test_the_secrets_job_runs_before_the_broker_and_every_hato_process(project) -> None:
    """The one-shot secrets job waits for nothing, and RabbitMQ and everything that mounts the
    secrets volume start only once it has finished: nobody reads a secret before it exists."""
    all_services = services(project)
    job = all_services["secrets"]
    assert one_shot(job) and not job.get("depends_on")
    readers = {
        name
        for name, service in all_services.items()
        if any(m.get("source") == "secrets" for m in service.get("volumes") or [])
    }
    assert readers >= {*SERVICES, "init", "secrets"}
    for name in (readers - {"secrets"}) | {"rabbitmq"}:
        dep = (all_services[name].get("depends_on") or {}).get("secrets")
        assert dep == {"condition": "service_completed_successfully", "required": True}, name


def test_no_secret_is_written_in_the_file(project) -> None:
    """No value reads change-me, no URL carries a password (not RabbitMQ's either: no
    RABBITMQ_DEFAULT_PASS) and no secret is set inline: the services read each secret, the
    broker URL included, from a file of a volume they mount read-only, which the secrets job
    writes."""
    text = COMPOSE_FILE.read_text()
    assert "change-me" not in text.lower()
    assert not URL_PASSWORD.findall(text), "a URL with a password in docker-compose.yml"
    for name, service in services(project).items():
        for variable, value in (service.get("environment") or {}).items():
            assert "change-me" not in (value or "").lower(), f"{name}: {variable}={value}"
            assert not URL_PASSWORD.search(value or ""), f"{name}: {variable}={value}"
            assert not variable.startswith("RABBITMQ_DEFAULT_"), f"{name}: {variable}"
            if re.search(r"PASS|SECRET|TOKEN|KEY$", variable):
                assert (value or "").lower() not in KNOWN_SECRETS, f"{name}: {variable}={value}"
    job = services(project)["secrets"]
    job_mounts = {m["source"]: m for m in job["volumes"] if m["type"] == "volume"}
    made = script(job)
    for name, service in services(project).items():
        env = service.get("environment") or {}
        for secret in SECRET_SETTINGS:
            assert not env.get(secret), f"{name} sets {secret} inline"
            if f"{secret}_FILE" not in env:
                continue
            path = PurePosixPath(env[f"{secret}_FILE"])
            mount = next(
                m for m in service["volumes"] if PurePosixPath(m["target"]) in path.parents
            )
            assert mount["type"] == "volume" and mount["source"] in job_mounts, name
            assert mount.get("read_only"), f"{name} may write {path}"
            written = PurePosixPath(job_mounts[mount["source"]]["target"]) / path.relative_to(
                mount["target"]
            )
            assert str(written) in made, f"the secrets job does not make {written}"
    for name in (*SERVICES, "init"):
        env = services(project)[name]["environment"]
        assert env["HATO_MASTER_KEY_FILE"], name
        assert env["HATO_AMQP_URL_FILE"], name
    assert services(project)["ingest"]["environment"]["HATO_INGEST_ADMIN_TOKEN_FILE"]
    for name in ("dispatcher", "bounce"):  # one signs return paths, the other checks them
        assert services(project)[name]["environment"]["HATO_VERP_KEY_FILE"], name


def test_rabbitmq_takes_its_user_from_the_generated_conf(project) -> None:
    """RabbitMQ sets no user of its own: its conf.d is a volume only the secrets job writes
    (and RabbitMQ mounts read-only), holding default_user and default_pass."""
    rabbitmq, job = services(project)["rabbitmq"], services(project)["secrets"]
    assert not rabbitmq.get("environment"), "RabbitMQ's user comes from its conf.d"
    (conf,) = [m for m in rabbitmq["volumes"] if m["target"] == RABBITMQ_CONF_D]
    assert conf["type"] == "volume" and conf.get("read_only"), conf
    writers = [
        name
        for name, service in services(project).items()
        for m in service.get("volumes") or []
        if m.get("source") == conf["source"] and not m.get("read_only")
    ]
    assert writers == ["secrets"]
    made = script(job)
    assert "default_user = hato" in made and "default_pass = " in made


def test_the_secrets_job_makes_each_secret_once(project, tmp_path: Path) -> None:
    """Run twice as compose would (its volumes as folders here): the master key, VERP key,
    operator token, RabbitMQ's conf and the broker URL exist after the first run, Hato's
    readable by their owner only, RabbitMQ's by the broker's user too; the URL's password is
    the one RabbitMQ's conf gives its user, to the rabbitmq service; the second run changes
    nothing."""
    volumes = {"secrets": tmp_path / "secrets", "rabbitmq-conf": tmp_path / "rabbitmq-conf"}
    for folder in volumes.values():
        folder.mkdir()
    net = Loopback(project, volumes=volumes)
    command = [net.rewrite(a, "secrets") for a in services(project)["secrets"]["command"]]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HATO_ENV_FILE": ""}
    runs = []
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        runs.append({p.name: p.read_text() for v in volumes.values() for p in v.iterdir()})
    assert runs[0] == runs[1], "a rerun changed a secret"
    files = runs[0]
    assert set(files) == {
        "master.key",
        "verp.key",
        "unsubscribe.key",
        "admin.token",
        "amqp.url",
        "20-credentials.conf",
        "10-defaults.conf",
    }
    for name in ("master.key", "verp.key", "unsubscribe.key", "admin.token", "amqp.url"):
        assert stat.S_IMODE((volumes["secrets"] / name).stat().st_mode) == 0o600, name
    for conf in volumes["rabbitmq-conf"].iterdir():
        assert stat.S_IMODE(conf.stat().st_mode) == 0o644, conf.name
    conf = dict(line.split(" = ", 1) for line in files["20-credentials.conf"].splitlines() if line)
    url = urlsplit(files["amqp.url"].strip())
    assert (url.username, url.password) == (conf["default_user"], conf["default_pass"])
    assert (url.hostname, url.port) == (net.address("rabbitmq"), 5672)  # rabbitmq:5672 here
    assert len(conf["default_pass"]) >= 32 and conf["default_pass"].lower() not in KNOWN_SECRETS


def test_dispatcher_sends_from_its_own_fixed_address_to_the_sink(project) -> None:
    """The dispatcher owns a fixed address of the compose network (outside the range Docker
    hands out) and sends from it, to the sink's port, after the sink is healthy."""
    ipam = network(project)
    subnet = ipaddress.IPv4Network(ipam["subnet"])
    dynamic = ipaddress.IPv4Network(ipam["ip_range"])
    dispatcher = services(project)["dispatcher"]
    own = ipaddress.IPv4Address(dispatcher["networks"]["default"]["ipv4_address"])
    assert own in subnet and own not in dynamic
    env = dispatcher["environment"]
    assert env["HATO_DISPATCHER_SOURCE_IPS"].split(",") == [str(own)]
    sink = services(project)["sink"]["command"]
    route = dict(r.split("=", 1) for r in env["HATO_DISPATCHER_ROUTES"].split(","))["*"]
    host, port = route.rsplit(":", 1)
    assert host == "sink" and port == sink[sink.index("--port") + 1]
    assert dispatcher["depends_on"]["sink"]["condition"] == "service_healthy"


def test_dev_tenant_relays_for_the_compose_network(project) -> None:
    """Mail from the host arrives from the network's gateway: the init job lets the dev tenant
    relay for the network that contains it."""
    ipam = network(project)
    command = services(project)["init"]["command"]
    assert command[:3] == ["hato", "dev", "init"]
    relays = ipaddress.IPv4Network(command[command.index("--network") + 1])
    assert relays == ipaddress.IPv4Network(ipam["subnet"])
    assert ipaddress.IPv4Address(ipam["gateway"]) in relays


def test_broker_and_database_keep_their_data(project) -> None:
    """RabbitMQ has a fixed hostname (its node name, under which its queues live on the volume)
    and a named volume, MongoDB a named volume; Hato's services reach both by service name."""
    rabbitmq, mongodb = services(project)["rabbitmq"], services(project)["mongodb"]
    assert rabbitmq.get("hostname") == "rabbitmq"
    volumes = project["volumes"]
    for service, path in ((rabbitmq, "/var/lib/rabbitmq"), (mongodb, "/data/db")):
        mount = next(m for m in service["volumes"] if m["target"] == path)
        assert mount["type"] == "volume" and mount["source"] in volumes
    assert "@rabbitmq:5672/" in script(services(project)["secrets"]), "the broker URL"
    for name in (*SERVICES, "init"):
        env = services(project)[name]["environment"]
        assert urlsplit(env["HATO_MONGODB_URL"]).hostname == "mongodb", name


def test_stop_grace_outlasts_the_drain(project) -> None:
    """Docker waits longer than a service drains after SIGTERM before it kills it, with room for
    a drain in two steps (ingest: its SMTP sessions, then its consumers)."""
    default = ServiceSettings.model_fields["shutdown_grace"].default
    for name in SERVICES:
        service = services(project)[name]
        grace = float(service["environment"].get(f"HATO_{name.upper()}_SHUTDOWN_GRACE", default))
        assert seconds(service["stop_grace_period"]) > 2 * grace, name


def test_prometheus_evaluates_the_rules_and_scrapes_every_service(project) -> None:
    """Prometheus gets deploy/prometheus/prometheus.yml, whose rule_files match the alert rule
    files of deploy/prometheus/rules/ mounted beside it, and scrapes each service's ops port."""
    prometheus = services(project)["prometheus"]
    config_path = host_path(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_path == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"]
    matched: set[Path] = set()
    for pattern in config["rule_files"]:
        folder = host_path(prometheus, str(PurePosixPath(pattern).parent))
        files = sorted(folder.glob(PurePosixPath(pattern).name))
        assert files, f"rule_files {pattern} matches no file"
        for f in files:
            groups = yaml.safe_load(f.read_text())["groups"]
            assert groups and all(g["rules"] for g in groups), f
        matched |= set(files)
    assert matched == set((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
    (hato,) = [job for job in config["scrape_configs"] if job["job_name"] == "hato"]
    targets = {t for sc in hato["static_configs"] for t in sc["targets"]}
    expected = {
        f"{name}:{services(project)[name]['environment'][f'HATO_{name.upper()}_OPS_PORT']}"
        for name in SERVICES
    }
    assert targets == expected
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    rabbitmq = {t for sc in jobs["rabbitmq"]["static_configs"] for t in sc["targets"]}
    assert rabbitmq == {"rabbitmq:15692"}, "RabbitMQ's rabbitmq_prometheus endpoint"
    assert "rabbitmq" in services(project)


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboards(project) -> None:
    """Grafana gets a Prometheus datasource pointing at the prometheus service and loads every
    dashboard of deploy/grafana/dashboards/, whose datasources are all of that type."""
    grafana = services(project)["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    provisioning = "/etc/grafana/provisioning"
    datasources = host_path(grafana, f"{provisioning}/datasources")
    assert datasources.is_relative_to(ROOT / "deploy" / "grafana" / "provisioning")
    sources = [
        d for f in datasources.glob("*.yml") for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    assert [(d["type"], d["url"], d.get("isDefault")) for d in sources] == [
        ("prometheus", "http://prometheus:9090", True)
    ]
    providers = [
        p
        for f in host_path(grafana, f"{provisioning}/dashboards").glob("*.yml")
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    folders = {host_path(grafana, p["options"]["path"]) for p in providers}
    assert folders == {ROOT / "deploy" / "grafana" / "dashboards"}
    dashboards = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["panels"], path.name
        kinds = {d.get("type") for d in _datasources(dashboard)}
        assert kinds <= {"prometheus", "datasource"}, f"{path.name}: {kinds}"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path(grafana, home).is_file()
    # No login at all: there is no default admin password to forget to change.
    assert grafana["environment"]["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    assert grafana["environment"]["GF_AUTH_BASIC_ENABLED"] == "false"


def _datasources(node: Any) -> list[dict[str, Any]]:
    """Every datasource reference ({type, uid}) in a dashboard."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            found.append(node["datasource"])
        for value in node.values():
            found += _datasources(value)
    elif isinstance(node, list):
        for value in node:
            found += _datasources(value)
    return found


def test_traces_go_to_jaeger_whose_ui_the_host_opens(project) -> None:
    """Every Hato service exports its spans over OTLP/HTTP to the jaeger service (Jaeger v2, its
    image pinned), whose UI the host opens on 127.0.0.1:16686; its healthcheck asks Jaeger's
    own health endpoint. tests/e2e/test_compose_settings.py receives the spans there."""
    jaeger = services(project)["jaeger"]
    image, _, tag = jaeger["image"].partition(":")
    assert image == "jaegertracing/jaeger"
    assert re.fullmatch(r"2\.\d+\.\d+", tag), "Jaeger v2, a fixed version"
    assert [(p["host_ip"], p["published"], p["target"]) for p in jaeger["ports"]] == [
        ("127.0.0.1", "16686", 16686)
    ]
    assert "http://127.0.0.1:13133/status" in jaeger["healthcheck"]["test"]
    for name in SERVICES:
        assert services(project)[name]["environment"]["HATO_OTLP_ENDPOINT"] == (
            "http://jaeger:4318"
        ), name


def test_published_ports_bind_loopback_only(project) -> None:
    """Every port the stack publishes listens on the host's 127.0.0.1 only: nothing of a dev
    stack is reachable from the network by accident."""
    for name, service in services(project).items():
        for port in service.get("ports") or []:
            assert port["host_ip"] == "127.0.0.1", f"{name}: {port}"


def test_jobs_write_their_volumes_without_root(project) -> None:
    """The one-shot jobs run as the image's user, and the image makes each folder a job's
    volume mounts writable that user's (Docker copies the owner into a new volume), so the
    secrets job can write the secrets and RabbitMQ's conf."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)[-1]
    owned = {
        path: owner for owner, path in re.findall(r"install -d -o (\S+) .*?(/\S+)", dockerfile)
    }
    for name in ("secrets", "init"):
        job = services(project)[name]
        assert not job.get("user"), f"the {name} job needs no other user"
        for mount in job["volumes"]:
            if not mount.get("read_only"):
                assert owned.get(mount["target"]) == user, f"{mount['target']} is not {user}'s"

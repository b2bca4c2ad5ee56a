"""deploy/k8s/ read the way a cluster would take it, without a cluster: every kustomization
builds, every object passes Kubernetes' strict schemas (custom resources their CRDs'), the
settings the pods get load, and the manifests keep the promises the README makes (probes,
drains, secrets as files, PodDisruptionBudgets that survive a node drain, monitoring that
matches deploy/prometheus and deploy/grafana)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from services.bounce.settings import BounceSettings
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from services.signer.settings import SignerSettings
from shared.known_secrets import problems
from tests.helpers.k8s import (
    K8S,
    KUBERNETES_VERSIONS,
    NAME,
    PART_OF,
    ROOT,
    SERVICES,
    build,
    container,
    custom_resource_problems,
    kubernetes_problems,
    kustomizations,
    named,
    of_kind,
    overlays,
    pod_env,
    replicas,
    selects,
    settings_variables,
    workload,
)
from tests.helpers.settings import known_variables

SETTINGS = {
    "ingest": IngestSettings,
    "signer": SignerSettings,
    "dispatcher": DispatcherSettings,
    "bounce": BounceSettings,
}
OPS_PORTS = {"ingest": 9101, "signer": 9102, "dispatcher": 9103, "bounce": 9104}
PRODUCTION = K8S / "overlays" / "production"
DEV = K8S / "overlays" / "dev"
IDS = [str(p.relative_to(K8S)) for p in kustomizations()]


def test_there_is_a_dev_and_a_production_overlay() -> None:
    """The two overlays the README describes exist (every overlay found is built below)."""
    assert {p.name for p in overlays()} >= {"dev", "production"}


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_every_object_passes_the_strict_kubernetes_schemas(path: Path) -> None:
    """Each rendered object validates against Kubernetes 1.33's and 1.37's schemas with no
    unknown field, and each custom resource against its Prometheus Operator CRD."""
    problems = []
    for obj in build(path):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        custom = custom_resource_problems(obj)
        if custom is not None:
            problems += [f"{where}: {p}" for p in custom]
            continue
        for version in KUBERNETES_VERSIONS:
            problems += [
                f"{where} (Kubernetes {version}): {p}" for p in kubernetes_problems(obj, version)
            ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_manifests_set_only_settings_that_exist(path: Path) -> None:
    """Every HATO_* variable a ConfigMap, Secret or container sets is a real setting."""
    known = known_variables()
    unknown = [f"{where}: {v}" for where, v in settings_variables(build(path)) if v not in known]
    assert not unknown, unknown


def test_hato_variables_named_in_the_manifests_text_exist() -> None:
    """Comments and generator literals in deploy/k8s/ name only real settings too."""
    known = known_variables()
    files = [p for p in K8S.rglob("*") if p.suffix in (".yaml", ".json")]
    unknown = {
        f"{p.relative_to(ROOT)}: {v}"
        for p in files
        for v in re.findall(r"\bHATO_[A-Z0-9_]+\b", p.read_text())
        if v not in known
    }
    assert not unknown, sorted(unknown)


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_each_pod_gets_settings_its_service_can_load(path: Path, monkeypatch) -> None:
    """With exactly the environment a pod starts with, its service's settings load, hold no
    secret anyone could know (the service would refuse to start), the ops endpoint listens on
    the port the probes use, and the drain grace is what the pod spec was sized for."""
    objs = build(path)
    for service in SERVICES:
        w = workload(objs, service)
        env = pod_env(objs, w, node=_a_node(objs))
        for name in [n for n in os.environ if n.startswith("HATO_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = SETTINGS[service]()
        assert problems(settings) == [], service
        assert settings.ops_port == OPS_PORTS[service], service
        assert settings.ops_host != "127.0.0.1", f"{service}: probes cannot reach loopback"
        if service == "dispatcher":
            assert settings.own_source_ips(), "the dispatcher owns no source IP"


def _a_node(objs) -> str:
    """A node the dispatchers' IP map lists (when the overlay has one)."""
    env = pod_env(objs, workload(objs, "dispatcher"))
    return next(iter(json.loads(env.get("HATO_DISPATCHER_SOURCE_IPS_BY_NODE", "{}"))), "node-1")


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_every_service_runs_from_the_one_image_with_probes_limits_and_no_root(
    path: Path,
) -> None:
    """One image, the command picks the service; readiness /readyz and liveness /healthz on
    the ops port; requests and limits; non-root, read-only root, no privilege escalation."""
    objs = build(path)
    images = set()
    for service in SERVICES:
        w = workload(objs, service)
        pod = w["spec"]["template"]["spec"]
        c = container(w)
        images.add(c["image"])
        assert c["command"] == ["python", "-m", f"services.{service}"]
        ops = {p["name"]: p["containerPort"] for p in c["ports"]}["ops"]
        assert ops == OPS_PORTS[service]
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        for kind in ("requests", "limits"):
            assert set(c["resources"][kind]) == {"cpu", "memory"}, f"{service} {kind}"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's user
        assert pod["automountServiceAccountToken"] is False
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
    assert len(images) == 1, images


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_termination_grace_outlasts_the_drain(path: Path) -> None:
    """terminationGracePeriodSeconds covers the preStop pause plus the service's one
    shutdown grace with time to close connections: SIGKILL never cuts a drain short."""
    objs = build(path)
    config = named(objs, "ConfigMap", "hato-config")["data"]
    for service in SERVICES:
        w = workload(objs, service)
        key = f"HATO_{service.upper()}_SHUTDOWN_GRACE"
        grace = float(config.get(key, SETTINGS[service].model_fields["shutdown_grace"].default))
        pre_stop = container(w).get("lifecycle", {}).get("preStop", {})
        pause = pre_stop.get("sleep", {}).get("seconds", 0)
        budget = w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert budget >= pause + grace + 5, f"{service}: {budget} s < {pause} + {grace} + 5"


SECRET_FILES = {
    "ingest": {
        "HATO_MASTER_KEY_FILE": "hato-secrets",
        "HATO_INGEST_ADMIN_TOKEN_FILE": "hato-secrets",
        "HATO_INGEST_TLS_CERT_FILE": "hato-ingest-tls",
        "HATO_INGEST_TLS_KEY_FILE": "hato-ingest-tls",
        "HATO_UNSUBSCRIBE_KEY_FILE": "hato-secrets",
    },
    "signer": {
        "HATO_MASTER_KEY_FILE": "hato-secrets",
        "HATO_SIGNER_KEYS_DIR": "hato-dkim-keys",
        "HATO_UNSUBSCRIBE_KEY_FILE": "hato-secrets",
    },
    "dispatcher": {"HATO_VERP_KEY_FILE": "hato-secrets"},
    "bounce": {
        "HATO_MASTER_KEY_FILE": "hato-secrets",
        "HATO_VERP_KEY_FILE": "hato-secrets",
        "HATO_UNSUBSCRIBE_KEY_FILE": "hato-secrets",
    },
}


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_secrets_are_mounted_as_files_where_the_settings_look(path: Path) -> None:
    """Each *_FILE / keys-dir setting points into a mounted Secret that has that key; no
    secret value is an environment variable of the pod spec."""
    objs = build(path)
    for service, wanted in SECRET_FILES.items():
        w = workload(objs, service)
        c = container(w)
        env = {e["name"]: e.get("value") for e in c["env"]}
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
        for variable, secret in wanted.items():
            where = env[variable]
            folder, _, file = where.rpartition("/")
            volume = mounts.get(where) or mounts[folder]
            assert volume["secret"]["secretName"] == secret, f"{service} {variable}"
            items = volume["secret"].get("items")
            if items and variable != "HATO_SIGNER_KEYS_DIR":
                assert file in {i["path"] for i in items}, f"{service}: {file} not mounted"
        for e in c["env"]:
            assert "secretKeyRef" not in e.get("valueFrom", {}), f"{service}: {e['name']}"


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_ingest_and_signer_autoscale_and_the_others_have_replicas(path: Path) -> None:
    """HorizontalPodAutoscalers scale ingest and signer (not in dev, one replica each);
    a Deployment an autoscaler owns sets no replicas of its own to fight it."""
    objs = build(path)
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(objs, "HorizontalPodAutoscaler")}
    if path == DEV:
        assert not scaled
        for service in SERVICES:
            assert workload(objs, service)["spec"]["replicas"] == 1, service
        return
    assert scaled == {"ingest", "signer"}
    for service in ("ingest", "signer"):
        assert "replicas" not in workload(objs, service)["spec"], service


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_every_service_has_a_disruption_budget_that_lets_a_drain_through(path: Path) -> None:
    """Each service's PodDisruptionBudget allows at least one eviction when all its pods are
    ready, so `kubectl drain` never waits forever, even with one replica (dev)."""
    objs = build(path)
    for service in SERVICES:
        assert _allowed_evictions(objs, service) >= 1, service


def test_ingest_dispatcher_and_bounce_survive_a_node_drain_in_production() -> None:
    """In production each of ingest, dispatcher and bounce keeps at least one pod serving
    while a drain evicts: replicas above what the budget lets go. No cluster runs here,
    so this is a read of the manifests."""
    objs = build(PRODUCTION)
    for service in ("ingest", "dispatcher", "bounce"):
        count = replicas(objs, workload(objs, service))
        allowed = _allowed_evictions(objs, service)
        assert 1 <= allowed < count, f"{service}: {count} replicas, {allowed} may go at once"


def _allowed_evictions(objs, service: str) -> int:
    w = workload(objs, service)
    labels = w["spec"]["template"]["metadata"]["labels"]
    budgets = [
        p for p in of_kind(objs, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)
    ]
    assert len(budgets) == 1, f"{service}: {len(budgets)} PodDisruptionBudgets"
    spec, count = budgets[0]["spec"], replicas(objs, w)
    if "maxUnavailable" in spec:
        return min(int(spec["maxUnavailable"]), count)
    return count - int(spec["minAvailable"])


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_smtp_services_keep_the_client_address_and_reach_the_listeners(path: Path) -> None:
    """SMTP 25/587/465 (and bounce's 25) are LoadBalancers with externalTrafficPolicy Local,
    whose target ports are the container ports the settings make the listeners bind."""
    objs = build(path)
    config = named(objs, "ConfigMap", "hato-config")["data"]
    listeners = {
        ("ingest", 25): int(config["HATO_INGEST_SMTP_PORT"]),
        ("ingest", 587): int(config["HATO_INGEST_SUBMISSION_PORT"]),
        ("ingest", 465): int(config["HATO_INGEST_SMTPS_PORT"]),
        ("ingest", 8025): int(config["HATO_INGEST_HTTP_PORT"]),
        ("bounce", 25): int(config["HATO_BOUNCE_SMTP_PORT"]),
    }
    found = set()
    for svc in of_kind(objs, "Service"):
        service = svc["spec"]["selector"].get(NAME)
        w = workload(objs, service) if service in SERVICES else None
        ports = {p["name"]: p["containerPort"] for p in container(w)["ports"]} if w else {}
        for port in svc["spec"]["ports"]:
            key = (service, port["port"])
            if key not in listeners:
                continue
            found.add(key)
            assert ports[port["targetPort"]] == listeners[key], key
            if port["port"] in (25, 587, 465):
                assert svc["spec"]["type"] == "LoadBalancer", key
                assert svc["spec"]["externalTrafficPolicy"] == "Local", key
    assert found == set(listeners)


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_network_policies_open_only_service_ports_and_the_needed_egress(path: Path) -> None:
    """Every Hato pod's ingress is limited to ports it serves; all egress is limited, with
    SMTP (25) for the dispatcher and HTTPS for bounce's webhooks."""
    objs = build(path)
    policies = of_kind(objs, "NetworkPolicy")
    for service in SERVICES:
        w = workload(objs, service)
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert labels[PART_OF] == "hato"
        mine = [p for p in policies if selects(p["spec"]["podSelector"], labels)]
        ingress = [p for p in mine if "Ingress" in p["spec"]["policyTypes"]]
        egress = [p for p in mine if "Egress" in p["spec"]["policyTypes"]]
        assert ingress and egress, f"{service}: ingress {len(ingress)}, egress {len(egress)}"
        served = {p["name"] for p in container(w)["ports"]}
        for policy in ingress:
            for rule in policy["spec"].get("ingress", []):
                assert rule.get("ports"), f"{service}: a rule opens every port"
                assert {p["port"] for p in rule["ports"]} <= served, service
        out = {p["port"] for pol in egress for r in pol["spec"]["egress"] for p in r["ports"]}
        assert {53, 5672, 27017} <= out, service
        assert (25 in out) == (service == "dispatcher"), service
        assert (443 in out) == (service == "bounce"), service


def test_production_uses_quorum_queues_and_dispatchers_send_from_their_nodes_ips() -> None:
    """Production: quorum queues; dispatchers on the host network of the labelled nodes, one
    per node, each taking its node's entry of the IP map (keyed by spec.nodeName) and the
    pod name as its instance; every map entry is a valid address list."""
    objs = build(PRODUCTION)
    config = named(objs, "ConfigMap", "hato-config")["data"]
    assert config["HATO_AMQP_QUEUE_TYPE"] == "quorum"
    w = workload(objs, "dispatcher")
    assert w["kind"] == "StatefulSet"
    pod = w["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {"hato/source-ips": "true"}
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}) for e in container(w)["env"]}
    assert env["HATO_DISPATCHER_NODE"]["fieldPath"] == "spec.nodeName"
    assert env["HATO_DISPATCHER_INSTANCE"]["fieldPath"] == "metadata.name"
    # On the host network 0.0.0.0 would put the ops port on the public source IPs too.
    assert env["HATO_DISPATCHER_OPS_HOST"]["fieldPath"] == "status.podIP"
    by_node = json.loads(pod_env(objs, w)["HATO_DISPATCHER_SOURCE_IPS_BY_NODE"])
    settings = DispatcherSettings(source_ips_by_node=by_node)
    ips = [
        ip for node in by_node for ip in settings.model_copy(update={"node": node}).own_source_ips()
    ]
    assert len(ips) == len(set(ips)), "an address is on two nodes"
    assert w["spec"]["replicas"] <= len(by_node), "more dispatchers than nodes with IPs"
    # The map has a ConfigMap of its own: changing it replaces the dispatchers only.
    for service in ("ingest", "signer", "bounce"):
        assert "HATO_DISPATCHER_SOURCE_IPS_BY_NODE" not in pod_env(objs, workload(objs, service))


def test_dev_runs_its_own_rabbitmq_and_mongodb_with_volumes() -> None:
    """Dev: RabbitMQ and MongoDB as StatefulSets with volume claims, and a RabbitMQ that takes
    Hato's largest message and its user from the operator's Secret rabbitmq-credentials (a
    conf.d file, readable by the broker's group only), with no guest let in from afar."""
    objs = build(DEV)
    for name, port in (("rabbitmq", 5672), ("mongodb", 27017)):
        server = named(objs, "StatefulSet", name)
        assert server["spec"]["volumeClaimTemplates"], name
        assert port in {p["port"] for p in named(objs, "Service", name)["spec"]["ports"]}
    rabbitmq = named(objs, "StatefulSet", "rabbitmq")
    volumes = {v["name"]: v for v in rabbitmq["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container(rabbitmq)["volumeMounts"]}
    mount = mounts["/etc/rabbitmq/conf.d/30-credentials.conf"]
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "rabbitmq-credentials"
    assert mount["subPath"] in {i["path"] for i in secret["items"]}
    assert secret["defaultMode"] == 0o440
    assert rabbitmq["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 999
    env = pod_env(objs, workload(objs, "ingest"))
    conf = named(objs, "ConfigMap", "rabbitmq-config")["data"]["20-hato.conf"]
    assert "loopback_users" not in conf
    limit = int(re.search(r"^max_message_size = (\d+)$", conf, re.MULTILINE).group(1))
    largest = int(env["HATO_INGEST_MAX_MESSAGE_SIZE"])
    # Bare LFs become CRLF on acceptance (up to twice the bytes), plus the JSON envelope.
    assert limit >= 2 * largest + 2**20, (limit, largest)


@pytest.mark.parametrize("path", kustomizations(), ids=IDS)
def test_no_password_is_written_in_the_manifests(path: Path) -> None:
    """No rendered object carries a password: no Secret is generated (a secretGenerator's
    value is the same for everyone who builds this repository), no URL in a ConfigMap or a
    pod spec has one, and no RabbitMQ lets guest in from afar. The operator creates the
    Secrets with passwords of their own (README, "Deploy → Kubernetes")."""
    objs = build(path)
    assert not of_kind(objs, "Secret"), "a Secret written in deploy/k8s/"
    text = yaml.safe_dump_all(objs)
    assert not re.findall(r"://[^/\s:@'\"]*:[^@\s/'\"]*@", text), "a URL with a password"
    assert "loopback_users.guest = false" not in text


def test_the_prometheus_rule_carries_the_alert_rules_file() -> None:
    """The PrometheusRule's groups are deploy/prometheus/rules/hato.rules.yml's, exactly."""
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/hato.rules.yml").read_text())
    (rule,) = of_kind(build(PRODUCTION), "PrometheusRule")
    assert rule["spec"]["groups"] == rules["groups"], (
        "deploy/k8s/components/monitoring/prometheusrule.yaml differs from "
        "deploy/prometheus/rules/hato.rules.yml: copy the groups over"
    )


def test_the_grafana_dashboards_are_configmaps_with_the_files_content() -> None:
    """Each deploy/grafana/dashboards/*.json is in a ConfigMap labelled for Grafana's
    sidecar, byte for byte."""
    maps = [
        m
        for m in of_kind(build(PRODUCTION), "ConfigMap")
        if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    shipped = {name: text for m in maps for name, text in m["data"].items()}
    files = sorted((ROOT / "deploy/grafana/dashboards").glob("*.json"))
    assert files
    for file in files:
        assert file.name in shipped, f"{file.name}: add it to deploy/grafana/kustomization.yaml"
        assert shipped[file.name] == file.read_text(), file.name
        json.loads(shipped[file.name])
    assert len(shipped) == len(files), "a dashboard ConfigMap has no file any more"


def test_the_pod_monitor_scrapes_every_service_as_job_hato() -> None:
    """The PodMonitor selects the four services' pods and scrapes their ops port; its job
    label comes out as "hato", which the alert rules' up{job="hato"} expects."""
    objs = build(PRODUCTION)
    (monitor,) = of_kind(objs, "PodMonitor")
    spec = monitor["spec"]
    assert [e["port"] for e in spec["podMetricsEndpoints"]] == ["ops"]
    for service in SERVICES:
        labels = workload(objs, service)["spec"]["template"]["metadata"]["labels"]
        assert selects(spec["selector"], labels), service
        assert labels[spec["jobLabel"]] == "hato", service

"""deploy/k8s/ rendered and checked offline: ``kustomize build`` with the kustomize that
``scripts/infra.sh k8s-tools`` builds from the Go module proxy, Kubernetes' own JSON schemas
(the kubernetes-validate package) and the Prometheus Operator's CRDs (from its Go module).

A missing tool fails the test that needs it, saying how to get it: these checks are all a
cluster-less machine has to keep the manifests honest, so they never skip.
"""

from __future__ import annotations

import base64
import copy
import functools
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
INFRA = ROOT / "scripts" / "infra.sh"
KUSTOMIZE = ROOT / "var" / "bin" / "kustomize"
GET_TOOLS = "run scripts/infra.sh k8s-tools (make test does)"

# The oldest Kubernetes the manifests promise to work on, and the newest kubernetes-validate
# 1.37.0 has schemas of. 1.33: PodDisruptionBudget unhealthyPodEvictionPolicy and the
# preStop sleep action are in both.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
SERVICES = ("ingest", "signer", "dispatcher", "bounce")
PART_OF = "app.kubernetes.io/part-of"
NAME = "app.kubernetes.io/name"

Obj = dict[str, Any]


def pinned(variable: str) -> str:
    """A version pinned in scripts/infra.sh: one place for what is built and what is tested."""
    found = re.search(rf"^\s*{variable}=(\S+)", INFRA.read_text(), re.MULTILINE)
    assert found, f"scripts/infra.sh pins no {variable}"
    return found.group(1)


def overlays() -> list[Path]:
    return sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))


def kustomizations() -> list[Path]:
    """The base and every overlay: each must build."""
    return [K8S / "base", *overlays()]


@functools.cache
def build(path: Path) -> tuple[Obj, ...]:
    """The objects ``kustomize build path`` renders."""
    if not KUSTOMIZE.exists():
        pytest.fail(f"no kustomize at {KUSTOMIZE.relative_to(ROOT)}: {GET_TOOLS}")
    version = subprocess.run(
        [KUSTOMIZE, "version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    want = pinned("KUSTOMIZE_VERSION")
    if version != want:
        pytest.fail(f"var/bin/kustomize is {version or 'unknown'}, not {want}: {GET_TOOLS}")
    done = subprocess.run(
        [KUSTOMIZE, "build", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode:
        pytest.fail(f"kustomize build {path.relative_to(ROOT)} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def of_kind(objs: Iterable[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: Iterable[Obj], kind: str, name: str) -> Obj:
    """The object of ``kind`` whose name is ``name`` (or ``name-<hash>`` for generated ones)."""
    for o in of_kind(objs, kind):
        if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", o["metadata"]["name"]):
            return o
    raise AssertionError(f"no {kind} {name}")


def workload(objs: Iterable[Obj], service: str) -> Obj:
    """The Deployment or StatefulSet running ``service``."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet") and o["metadata"]["name"] == service:
            return o
    raise AssertionError(f"no workload {service}")


def container(w: Obj) -> Obj:
    (c,) = w["spec"]["template"]["spec"]["containers"]
    return c


def replicas(objs: Iterable[Obj], w: Obj) -> int:
    """The pods a workload keeps: its autoscaler's minimum, else spec.replicas (default 1)."""
    for hpa in of_kind(objs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) == (w["kind"], w["metadata"]["name"]):
            return hpa["spec"].get("minReplicas", 1)
    return w["spec"].get("replicas", 1)


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "only matchLabels is read here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def pod_env(objs: tuple[Obj, ...], w: Obj, *, node: str = "node-1") -> dict[str, str]:
    """The environment a pod of ``w`` starts with: envFrom ConfigMaps and Secrets, then env,
    with the downward API's fields filled in as the kubelet would."""
    c = container(w)
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(named(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            name = source["secretRef"]["name"]
            secrets = [s for s in of_kind(objs, "Secret") if s["metadata"]["name"] == name]
            for secret in secrets:  # created by the operator when the overlay has none
                env.update({k: base64.b64decode(v).decode() for k, v in secret["data"].items()})
    fields = {
        "metadata.name": f"{w['metadata']['name']}-0",
        "spec.nodeName": node,
        "status.podIP": "10.0.0.7",
    }
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def settings_variables(objs: Iterable[Obj]) -> Iterator[tuple[str, str]]:
    """(where, variable) for every HATO_* name the rendered objects set."""
    for o in objs:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in ("ConfigMap", "Secret"):
            for key in o.get("data", {}):
                if key.startswith("HATO_"):
                    yield where, key
        spec = o.get("spec", {}).get("template", {}).get("spec", {})
        for c in spec.get("containers", []):
            for e in c.get("env", []):
                if e["name"].startswith("HATO_"):
                    yield where, e["name"]


def kubernetes_problems(obj: Obj, version: str) -> list[str]:
    """What Kubernetes' strict JSON schema of ``version`` says against a built-in object."""
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is missing: run scripts/bootstrap.sh (dev extras)")
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


@functools.cache
def crd_schemas() -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) → the schema of each version the Prometheus Operator's CRDs serve,
    made strict the way the API server's pruning is: an unknown field fails here, where the
    server would drop it without a word."""
    folder = ROOT / "var" / "k8s" / "crds"
    folder /= f"prometheus-operator-{pinned('PROMETHEUS_OPERATOR_VERSION')}"
    files = sorted(folder.glob("*.yaml"))
    if not files:
        pytest.fail(f"no CRDs in {folder.relative_to(ROOT)}: {GET_TOOLS}")
    schemas = {}
    for file in files:
        for crd in yaml.safe_load_all(file.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict(schema: Any) -> Any:
    """``additionalProperties: false`` wherever a schema lists properties and keeps no
    unknown fields (x-kubernetes-preserve-unknown-fields)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    for key in ("properties", "patternProperties"):
        if key in schema:
            schema[key] = {k: strict(v) for k, v in schema[key].items()}
    for key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), dict | list):
            schema[key] = strict(schema[key])
    return schema


def custom_resource_problems(obj: Obj) -> list[str] | None:
    """What its CRD's schema says against a custom resource; None when no CRD is known."""
    import jsonschema  # kubernetes-validate's own dependency

    schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return None
    # CRD schemas are OpenAPI 3.0: JSON Schema draft 4's keywords.
    validator = jsonschema.Draft4Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]

"""The dashboards and alert rules as files: generated dashboards are current, the alert rules
pass `promtool check rules` and their unit tests, and every metric they name is one Hato
exports (or RabbitMQ's, FerretDB's, or Prometheus' own). tests/e2e/test_observe.py runs them
against a real Prometheus."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import services.bounce.service
import services.dispatcher.service
import services.ingest.service
import services.signer.service  # noqa: F401
from tools import dashboards, prometheusrule

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "hato.rules.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests" / "hato.rules.test.yml"
# What Hato does not export itself: RabbitMQ's rabbitmq_prometheus, the Go runtime of
# FerretDB's /debug/metrics, and Prometheus' own `up`.
FOREIGN = re.compile(r"^(rabbitmq_|go_|up$)")
FUNCTIONS_AND_WORDS = {
    "sum", "max", "min", "count", "avg", "rate", "increase", "delta", "deriv", "by",
    "on", "group_left", "group_right", "without", "and", "or", "unless", "time", "vector",
    "absent", "histogram_quantile", "ignoring", "bool", "le",
}  # fmt: skip


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run scripts/infra.sh prometheus-tools")
    return path


def exported() -> set[str]:
    """Every series name Hato's processes export (histograms' and counters' included)."""
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
            names.add(family.name + suffix)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label names and values removed)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    # label lists of aggregations and vector matching
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r'"[^"]*"', "", expr)
    words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", expr))
    return {w for w in words if w not in FUNCTIONS_AND_WORDS}


def dashboard_exprs() -> list[str]:
    return [target.expr for d in dashboards.DASHBOARDS for r in d.rows for p in r.panels
            for target in p.targets]  # fmt: skip


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for g in groups for rule in g["rules"]]


def test_the_dashboard_files_are_what_tools_dashboards_makes() -> None:
    """deploy/grafana/dashboards/*.json equal the generated ones (python -m tools.dashboards)."""
    for path, text in dashboards.files().items():
        assert path.exists(), f"{path.name} is missing: run python -m tools.dashboards"
        assert path.read_text() == text, f"{path.name} is stale: run python -m tools.dashboards"
    assert set(dashboards.FOLDER.glob("*.json")) == set(dashboards.files())


def test_the_prometheus_rule_is_what_tools_prometheusrule_makes() -> None:
    """deploy/k8s's PrometheusRule carries the rules file's text (tools/prometheusrule.py)."""
    assert prometheusrule.TARGET.read_text() == prometheusrule.render()


def test_every_metric_the_dashboards_and_rules_name_is_exported() -> None:
    """A panel or rule naming a metric no Hato process exports fails here first."""
    known = exported()
    for expr in dashboard_exprs() + rule_exprs():
        missing = {m for m in metric_names(expr) if m not in known and not FOREIGN.match(m)}
        missing = {m for m in missing if not m.startswith("process_")}
        assert not missing, f"{expr}: {missing} not exported by Hato"


def test_alert_rules_pass_promtool_check() -> None:
    """`promtool check rules` accepts the rules file."""
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_pass_their_unit_tests() -> None:
    """`promtool test rules`: each alert fires on the series it is for, and not on others."""
    done = subprocess.run(
        [promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_severity_a_summary_and_a_runbook() -> None:
    """What the on-call person reads when it fires."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("page", "warn", "info"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["runbook"], rule["alert"]

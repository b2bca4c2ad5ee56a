"""Copies the groups of deploy/prometheus/rules/hato.rules.yml into the PrometheusRule of
deploy/k8s/components/monitoring (``python -m tools.prometheusrule``; ``--check`` only says
whether it is current). The rules file is the one to edit; tests/unit/test_k8s.py fails while
the two differ."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "hato.rules.yml"
TARGET = ROOT / "deploy" / "k8s" / "components" / "monitoring" / "prometheusrule.yaml"
HEADER = """\
# The alert rules of deploy/prometheus/rules/hato.rules.yml for the Prometheus Operator: the
# same groups under spec, copied by `python -m tools.prometheusrule` (tests/unit/test_k8s.py
# fails when the two differ). Prometheus picks the rule up when its ruleSelector matches these
# labels: add your Prometheus' label here (kube-prometheus-stack selects release: <its release
# name> by default).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: hato
  labels:
    app.kubernetes.io/name: hato
spec:
"""


def render() -> str:
    """The PrometheusRule: the rules file's ``groups:`` block, text and all, under spec."""
    lines = RULES.read_text().splitlines()
    start = lines.index("groups:")
    return HEADER + "".join(f"  {line}\n" if line else "\n" for line in lines[start:])


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = TARGET.read_text() == text
        if not current:
            print(f"{TARGET.relative_to(ROOT)} differs: run python -m tools.prometheusrule")
        return 0 if current else 1
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

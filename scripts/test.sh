#!/usr/bin/env bash
# Runs the whole test suite against real servers: installs and starts RabbitMQ and FerretDB
# (scripts/infra.sh) unless HATO_AMQP_URL / HATO_MONGODB_URL point elsewhere.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
scripts/infra.sh up
scripts/infra.sh test-tools  # Mail::DKIM, the independent DKIM verifier of the signer tests
scripts/infra.sh browser-tools  # chromium and chromium-driver: the console's browser test
scripts/infra.sh build  # tests start a FerretDB of their own to stop it
scripts/infra.sh compose-check  # the compose loader tests/unit/test_deploy_files.py runs
scripts/infra.sh prometheus-tools  # prometheus and promtool: the dashboard and alert rule tests
scripts/infra.sh k8s-tools  # kustomize and CRDs tests/unit/test_k8s.py validates deploy/k8s/ with
exec .venv/bin/python -m pytest "$@"

"""docker-compose.yml only sets settings that exist, and runs every service."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.helpers.settings import known_variables

ROOT = Path(__file__).resolve().parents[2]


def test_compose_sets_only_real_settings_and_runs_every_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = known_variables()
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("HATO_"):
                assert variable in known, f"{name}: {variable} is no setting"
    commands = {
        " ".join(s.get("command", []))
        for s in compose["services"].values()
        if isinstance(s.get("command"), list)
    }
    for service in ("ingest", "signer", "dispatcher", "bounce"):
        assert f"python -m services.{service}" in commands

"""docker-compose.yml only sets settings that exist, and runs every service."""

from __future__ import annotations

from pathlib import Path

import yaml

from hato.cli import CliSettings
from services.bounce.settings import BounceSettings
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from services.signer.settings import SignerSettings
from shared.settings import (
    BrokerSettings,
    SecretsSettings,
    StoreSettings,
    TelemetrySettings,
)

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("broker", "store", "telemetry", "secrets")


def known_variables() -> set[str]:
    names = set()
    for cls in (
        IngestSettings,
        SignerSettings,
        DispatcherSettings,
        BounceSettings,
        BrokerSettings,
        StoreSettings,
        TelemetrySettings,
        SecretsSettings,
        CliSettings,
    ):
        prefix = cls.model_config.get("env_prefix", "")
        names |= {f"{prefix}{f}".upper() for f in cls.model_fields if f not in SECTIONS}
    return names


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

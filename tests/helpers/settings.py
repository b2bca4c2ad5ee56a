"""Every settings class, and the environment variables they read."""

from __future__ import annotations

from hato.cli import CliSettings, DevSettings
from services.bounce.settings import BounceSettings
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from services.signer.settings import SignerSettings
from shared.egress import EgressSettings
from shared.settings import (
    BrokerSettings,
    DnsSettings,
    SecretsSettings,
    StoreSettings,
    TelemetrySettings,
    UnsubscribeSettings,
    VerpSettings,
)

SETTINGS_CLASSES = (
    IngestSettings,
    SignerSettings,
    DispatcherSettings,
    BounceSettings,
    CliSettings,
    DevSettings,
    BrokerSettings,
    StoreSettings,
    TelemetrySettings,
    SecretsSettings,
    DnsSettings,
    VerpSettings,
    UnsubscribeSettings,
    EgressSettings,
)
SECTIONS = (
    "broker",
    "store",
    "telemetry",
    "secrets",
    "dns",
    "verp",
    "unsubscribe",
    "egress",
    "dev",
)


def own_fields(cls):
    """A settings class's fields, less the shared sections it is composed of."""
    return {name: f for name, f in cls.model_fields.items() if name not in SECTIONS}


def known_variables() -> set[str]:
    names = set()
    for cls in SETTINGS_CLASSES:
        prefix = cls.model_config.get("env_prefix", "")
        names |= {f"{prefix}{f}".upper() for f in own_fields(cls)}
    return names

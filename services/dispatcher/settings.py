"""Settings of the dispatcher service (``HATO_DISPATCHER_*`` plus the shared sections).

Tables (routes per tenant, pace per domain and per tenant) are typed sections, best kept in
the TOML file ``HATO_DISPATCHER_CONFIG_FILE`` names::

    [tenant_routes]
    acme = "*=smtp.acme.example:587"

    [throttle."docomo.ne.jp"]
    connections = 1
    per_minute = 30
    recipients = 50
    max_size = 10485760

    [tenant_throttle.acme."gmail.com"]
    per_minute = 300

Any other dispatcher setting may be written there too (``retry_delays = [60, 600]``); the
environment wins over the file (tables are merged, field by field). The environment still
takes a table as JSON (``HATO_DISPATCHER_THROTTLE='{"docomo.ne.jp": {"connections": 1}}'``);
either way it is checked at start: an unknown field, a bad route, a limit below one or a
domain given twice stops the service.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from services.dispatcher.routes import RouteTable
from services.dispatcher.rules import Rule, load, rule_set
from services.dispatcher.throttle import DEFAULT, Pace
from shared.egress import EgressSettings
from shared.errors import ConfigError
from shared.settings import (
    DnsSettings,
    SecretsSettings,
    ServiceSettings,
    VerpSettings,
    comma_list,
)

CONFIG_FILE = "HATO_DISPATCHER_CONFIG_FILE"


class PaceSetting(BaseModel):
    """The limits of one destination domain; a field left out keeps the general default
    (not the domain's preset)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connections: int = Field(DEFAULT.connections, ge=1, description="Concurrent transactions.")
    per_connection: int = Field(
        DEFAULT.per_connection, ge=1, description="Messages on one connection."
    )
    per_minute: float = Field(DEFAULT.per_minute, gt=0, description="Messages per minute.")
    recipients: int = Field(
        DEFAULT.recipients, ge=1, description="Recipients in one SMTP transaction."
    )
    max_size: int = Field(
        DEFAULT.max_size,
        ge=0,
        description="Largest message in bytes; a bigger one bounces at once (0: no limit).",
    )

    def limits(self) -> Pace:
        return Pace(
            self.connections, self.per_connection, self.per_minute, self.recipients, self.max_size
        )


def _domains(table: dict[str, PaceSetting]) -> dict[str, PaceSetting]:
    """The table by lower-case domain; one domain spelt twice is refused, not half-applied."""
    by_domain: dict[str, PaceSetting] = {}
    for domain, pace in table.items():
        name = domain.strip().lower().rstrip(".")
        if name in by_domain:
            raise ValueError(f"{name} is given twice")
        by_domain[name] = pace
    return by_domain


class DispatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_DISPATCHER_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        path = os.environ.get(CONFIG_FILE, "")
        if not path:
            return sources
        if not Path(path).is_file():
            raise ConfigError(f"{CONFIG_FILE} names {path}, which is not a readable file")
        return (*sources, TomlConfigSettingsSource(settings_cls, toml_file=path))

    dns: DnsSettings = Field(default_factory=DnsSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)  # the seal key's source
    egress: EgressSettings = Field(default_factory=EgressSettings)
    verp: VerpSettings = Field(default_factory=VerpSettings)
    source_ips: Annotated[list[str], NoDecode] = Field(
        ["127.0.0.1"], description="Source IPs this instance owns and sends from."
    )
    pools: Annotated[list[str], NoDecode] = Field(
        ["default"],
        description="Pools served with this instance's IPs when no pool document names them.",
    )
    source_ips_by_node: dict[str, list[str]] = Field(
        {},
        description='Source IPs per node, JSON {"node": ["ip", ...]}; when set, an instance '
        "sends from its node's entry (see node) instead of source_ips.",
    )
    node: str = Field("", description="The node this instance runs on (Kubernetes: spec.nodeName).")
    instance: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        description="This instance's name in heartbeats (Kubernetes: the pod's name).",
    )
    helo_name: str = Field(
        "hato.localhost", description="EHLO name of a source IP whose pool member has none."
    )
    routes: str = Field(
        "", description="Static routes 'domain=host:port,...' ('*': every other domain)."
    )
    tenant_routes: dict[str, str] = Field(
        {}, description="Static routes per tenant: tenant = 'domain=host:port,...'."
    )
    mx_port: int = Field(25, ge=1, description="Port of destination MX servers.")
    tls_required: Annotated[list[str], NoDecode] = Field(
        [], description="Destination domains whose mail must go over verified TLS."
    )
    retry_delays: Annotated[list[float], NoDecode] = Field(
        [60, 300, 900, 3600, 14400],
        description="Seconds before each retry of a deferred recipient; the last repeats.",
    )
    max_age: float = Field(
        72 * 3600, gt=0, description="Seconds after acceptance a deferred recipient expires."
    )
    smtp_timeout: float = Field(
        300, gt=0, description="Cap on RFC 5321 4.5.3.2 reply timeouts, in seconds."
    )
    transaction_deadline: float = Field(
        900,
        gt=0,
        description="Seconds one SMTP transaction may take in all, connecting included; keep "
        "it well under RabbitMQ's consumer_timeout (30 minutes by default), past which the "
        "broker hands the job to another consumer and the mail could go out twice.",
    )
    connect_timeout: float = Field(30, gt=0, description="Seconds to wait for a connection.")
    reuse_connections: bool = Field(True, description="Keep connections open between jobs.")
    chunking: bool = Field(
        True,
        description="Send with BDAT (RFC 3030 CHUNKING) to servers that offer it and "
        "PIPELINING; false sends with DATA everywhere.",
    )
    max_messages_per_connection: int = Field(
        100, ge=1, description="Transactions on one connection before it is closed."
    )
    idle_timeout: float = Field(30, gt=0, description="Seconds an unused connection stays open.")
    throttle: dict[str, PaceSetting] = Field(
        {},
        description="Pace per destination domain, over the presets (a domain's subdomains "
        "share it).",
    )
    tenant_throttle: dict[str, dict[str, PaceSetting]] = Field(
        {},
        description="Pace per tenant and destination domain, over throttle and the presets.",
    )
    hold_delay: float = Field(
        300,
        gt=0,
        description="Seconds a suspended delivery waits before it looks again (once the "
        "suspension is lifted or expires, or on `hato queue retry`, it goes at once); its "
        "attempts are not counted.",
    )
    rules_file: str = Field(
        "",
        description="TOML file of reply rules ([[rule]] tables; read again when it changes "
        "or on SIGHUP); empty: the rules table here, then the built-in rules.",
    )
    rules: list[Rule] = Field(
        [], description="Reply rules (when no rules_file), before the built-in ones."
    )
    default_rules: bool = Field(
        True, description="Apply the built-in reply rules after the configured ones."
    )
    handoff_ttl: float = Field(
        60, gt=0, description="Seconds a job waits for its IP's instance before re-routing."
    )
    heartbeat_interval: float = Field(5, gt=0, description="Seconds between heartbeats.")
    heartbeat_timeout: float = Field(
        15, gt=0, description="Seconds without a heartbeat before an instance counts as gone."
    )

    @field_validator("routes")
    @classmethod
    def _route_text(cls, value: str) -> str:
        RouteTable.parse(value)  # ValueError: the setting is refused at start
        return value

    @field_validator("tenant_routes")
    @classmethod
    def _tenant_routes(cls, value: dict[str, str]) -> dict[str, str]:
        for tenant, text in value.items():
            try:
                RouteTable.parse(text)
            except ValueError as exc:
                raise ValueError(f"{tenant}: {exc}") from None
        return value

    @field_validator("throttle")
    @classmethod
    def _throttle_domains(cls, value: dict[str, PaceSetting]) -> dict[str, PaceSetting]:
        return _domains(value)

    @field_validator("tenant_throttle")
    @classmethod
    def _tenant_throttle_domains(cls, value: dict[str, Any]) -> dict[str, dict[str, PaceSetting]]:
        return {tenant: _domains(table) for tenant, table in value.items()}

    def route_tables(self) -> tuple[RouteTable, dict[str, RouteTable]]:
        """The static routes, and those of each tenant."""
        return RouteTable.parse(self.routes), {
            tenant: RouteTable.parse(text) for tenant, text in self.tenant_routes.items()
        }

    def paces(self) -> tuple[dict[str, Pace], dict[str, dict[str, Pace]]]:
        """The limits by domain over the presets, and by tenant and domain."""
        return {d: p.limits() for d, p in self.throttle.items()}, {
            t: {d: p.limits() for d, p in table.items()}
            for t, table in self.tenant_throttle.items()
        }

    @field_validator("rules_file")
    @classmethod
    def _rules_file(cls, value: str) -> str:
        if value:
            load(value)  # ValueError: the service stops at start, naming the problem
        return value

    def rule_set(self) -> tuple[Rule, ...]:
        """The reply rules in force: the rules file's (read now), else the table's, then the
        built-in ones unless left out."""
        if self.rules_file:
            given = load(self.rules_file)
            return rule_set(given.rule, defaults=given.default_rules and self.default_rules)
        return rule_set(self.rules, defaults=self.default_rules)

    @field_validator("source_ips_by_node")
    @classmethod
    def _addresses(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for node, ips in value.items():
            for ip in ips:
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    raise ValueError(f"{node}: {ip!r} is not an IP address") from None
        return value

    def own_source_ips(self) -> list[str]:
        """The source IPs this instance owns. With ``source_ips_by_node`` set, those of the node
        it runs on: on Kubernetes the addresses live on nodes and a pod takes the set of the
        node it was scheduled to, so the map is keyed by node, not by pod."""
        if not self.source_ips_by_node:
            return list(self.source_ips)
        if not self.node:
            raise ConfigError(
                "HATO_DISPATCHER_SOURCE_IPS_BY_NODE is set but HATO_DISPATCHER_NODE is not "
                "(Kubernetes: set it from spec.nodeName)"
            )
        ips = self.source_ips_by_node.get(self.node)
        if not ips:
            raise ConfigError(
                f"node {self.node} has no source IPs in HATO_DISPATCHER_SOURCE_IPS_BY_NODE "
                f"(it lists {', '.join(sorted(self.source_ips_by_node)) or 'no node'})"
            )
        return list(ips)

    _split_ips = comma_list("source_ips")
    _split_pools = comma_list("pools")
    _split_tls = comma_list("tls_required")
    _split_delays = comma_list("retry_delays")

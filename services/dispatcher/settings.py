"""Settings of the dispatcher service (``HATO_DISPATCHER_*`` plus the shared sections)."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.egress import EgressSettings
from shared.errors import ConfigError
from shared.settings import (
    DnsSettings,
    SecretsSettings,
    ServiceSettings,
    VerpSettings,
    comma_list,
)


class DispatcherSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_DISPATCHER_", extra="ignore")

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
    tenant_routes: str = Field(
        "", description='Per-tenant static routes: {"tenant": "domain=host:port,..."}.'
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
    max_messages_per_connection: int = Field(
        100, ge=1, description="Transactions on one connection before it is closed."
    )
    idle_timeout: float = Field(30, gt=0, description="Seconds an unused connection stays open.")
    throttle: str = Field(
        "", description='Per-domain limits over the presets: {"d": {"connections": 2, ...}}.'
    )
    tenant_throttle: str = Field(
        "", description='Per-tenant limits: {"tenant": {"domain": {"per_minute": 30}}}.'
    )
    handoff_ttl: float = Field(
        60, gt=0, description="Seconds a job waits for its IP's instance before re-routing."
    )
    heartbeat_interval: float = Field(5, gt=0, description="Seconds between heartbeats.")
    heartbeat_timeout: float = Field(
        15, gt=0, description="Seconds without a heartbeat before an instance counts as gone."
    )

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

"""Settings of the bounce service (``HATO_BOUNCE_*`` plus the shared sections)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.egress import EgressSettings
from shared.settings import (
    DnsSettings,
    SecretsSettings,
    ServiceSettings,
    UnsubscribeSettings,
    VerpSettings,
    comma_list,
)


class BounceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_BOUNCE_", extra="ignore")

    purge_interval: float = Field(
        3600, gt=0, description="Seconds between purges of expired events (servers without TTL)."
    )
    retention_days: float = Field(
        30,
        gt=0,
        description="Days a message, its recipients and events are kept once every recipient "
        "is final (a tenant's limits.retention_days overrides it); mail still waiting is kept.",
    )
    retention_interval: float = Field(
        3600, gt=0, description="Seconds between passes deleting messages past retention."
    )
    lease_ttl: float = Field(
        30,
        gt=0,
        description="Seconds a replica's lease (events purge, one webhook endpoint) lasts "
        "unrenewed; another replica takes over after it.",
    )

    verp: VerpSettings = Field(default_factory=VerpSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    domain_check_interval: float = Field(
        21600,
        ge=0,
        description="Seconds between re-checks of every sending domain's DNS (SPF, DKIM, "
        "DMARC, return-path MX, PTR, MTA-STS); a domain that stops passing raises a "
        "domain_check_failed event. 0: no re-checks.",
    )
    unsubscribe: UnsubscribeSettings = Field(default_factory=UnsubscribeSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    smtp_host: str = Field("127.0.0.1", description="Address of the inbound bounce listener.")
    smtp_port: int = Field(
        -1, ge=-1, description="Port of the inbound bounce listener (25 in production); -1: off."
    )
    fbl_address: str = Field(
        "", description="The feedback-loop address complaint reports (ARF) are sent to."
    )
    max_message_size: int = Field(
        10_485_760, ge=1024, description="Largest bounce or report accepted, in bytes."
    )
    parse_workers: int = Field(
        2, ge=1, description="Worker processes that parse inbound reports (off the event loop)."
    )
    parse_timeout: float = Field(
        30, gt=0, description="Seconds a report may take to parse; then it is kept unparsed."
    )
    parse_retry_delay: float = Field(
        60, ge=0, description="Seconds before an unread report is parsed again, once."
    )
    soft_bounce_limit: int = Field(
        3, ge=1, description="Soft bounces within the window that suppress an address."
    )
    soft_bounce_window_days: float = Field(7, gt=0, description="Window of soft bounces, days.")
    soft_suppression_days: float = Field(
        30, gt=0, description="Days a suppression for repeated soft bounces lasts."
    )
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    webhook_interval: float = Field(
        0.5, gt=0, description="Seconds between passes over the webhook outbox."
    )
    webhook_timeout: float = Field(
        5.0, gt=0, description="Seconds a webhook POST may take, connecting included."
    )
    webhook_binding_refresh: float = Field(
        30,
        gt=0,
        description="Seconds between checks that the webhook queue's bindings follow "
        "the webhooks (changes made through Hato apply at once).",
    )
    webhook_backoff: Annotated[list[float], NoDecode] = Field(
        [1, 5, 30, 120, 600, 1800, 3600, 7200],
        description="Seconds before each retry of a failed webhook POST; then it fails.",
    )

    _split_backoff = comma_list("webhook_backoff")

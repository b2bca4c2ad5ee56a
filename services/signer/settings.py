"""Settings of the signer service (``HATO_SIGNER_*`` plus the shared sections)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import (
    DnsSettings,
    SecretsSettings,
    ServiceSettings,
    UnsubscribeSettings,
    comma_list,
)


class SignerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_SIGNER_", extra="ignore")

    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    unsubscribe: UnsubscribeSettings = Field(default_factory=UnsubscribeSettings)
    pools: Annotated[list[str], NoDecode] = Field(
        ["default"], description="IP pools whose delivery queues are declared (comma-separated)."
    )
    unsigned_policy: Literal["send", "fail"] = Field(
        "send", description="A message whose domain has no usable key: 'send' unsigned or 'fail'."
    )
    max_recipients_per_job: int = Field(
        50, ge=1, description="Most recipients in one delivery job (one SMTP transaction)."
    )
    delivery_batch: int = Field(
        16,
        ge=1,
        description="Most delivery jobs of one pool in one broker message (those of messages "
        "signed together); 1: a message a job, for dispatchers that predate delivery batches.",
    )
    key_cache_seconds: float = Field(
        30.0,
        ge=0,
        description="Seconds a domain's keys are kept in memory when no change is announced.",
    )
    keys_dir: str = Field(
        "", description="Folder of PEM keys named <selector>._domainkey.<domain>.pem (secrets)."
    )
    rotation_interval: float = Field(
        3600, gt=0, description="Seconds between rotation passes (activate published keys...)."
    )
    lease_ttl: float = Field(
        30,
        gt=0,
        description="Seconds the key rotation lease lasts unrenewed; another replica takes "
        "over after it.",
    )
    rotate_after_days: int = Field(
        0, ge=0, description="Start a key rotation when an active key is this old; 0: never."
    )

    _split_pools = comma_list("pools")

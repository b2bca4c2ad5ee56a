"""Settings of the bounce service (``HATO_BOUNCE_*`` plus the shared sections)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, VerpSettings


class BounceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_BOUNCE_", extra="ignore")

    event_batch: int = Field(200, ge=1, description="Most events written in one insert.")
    event_batch_wait: float = Field(
        0.05, ge=0, description="Seconds an event may wait for others to share its insert."
    )
    purge_interval: float = Field(
        3600, gt=0, description="Seconds between purges of expired events (servers without TTL)."
    )

    verp: VerpSettings = Field(default_factory=VerpSettings)
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
    soft_bounce_limit: int = Field(
        3, ge=1, description="Soft bounces within the window that suppress an address."
    )
    soft_bounce_window_days: float = Field(7, gt=0, description="Window of soft bounces, days.")
    soft_suppression_days: float = Field(
        30, gt=0, description="Days a suppression for repeated soft bounces lasts."
    )

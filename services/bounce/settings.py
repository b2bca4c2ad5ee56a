"""Settings of the bounce service (``HATO_BOUNCE_*`` plus the shared sections)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class BounceSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_BOUNCE_", extra="ignore")

    event_batch: int = Field(200, ge=1, description="Most events written in one insert.")
    event_batch_wait: float = Field(
        0.05, ge=0, description="Seconds an event may wait for others to share its insert."
    )
    purge_interval: float = Field(
        3600, gt=0, description="Seconds between purges of expired events (servers without TTL)."
    )

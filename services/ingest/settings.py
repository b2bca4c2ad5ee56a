"""Settings of the ingest service (``HATO_INGEST_*`` plus the shared sections)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_INGEST_", extra="ignore")

    smtp_host: str = Field("127.0.0.1", description="Address the SMTP listener binds.")
    smtp_port: int = Field(2525, ge=0, description="Port of the SMTP listener (0: any free port).")
    hostname: str = Field("hato.localhost", description="Name in the SMTP banner and EHLO reply.")
    max_message_size: int = Field(
        26_214_400, ge=1024, description="Largest message accepted, in bytes (SIZE)."
    )
    max_recipients: int = Field(100, ge=1, description="Most recipients in one SMTP transaction.")
    policy_refresh: float = Field(
        10.0, gt=0, description="Seconds between reloads of tenants, networks and domains."
    )

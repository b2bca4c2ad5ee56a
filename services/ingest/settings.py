"""Settings of the ingest service (``HATO_INGEST_*`` plus the shared sections)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.errors import ConfigError
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
    http_host: str = Field("127.0.0.1", description="Address the HTTP API binds.")
    http_port: int = Field(8025, ge=0, description="Port of the HTTP API (0: any free port).")
    admin_token: SecretStr = Field(
        SecretStr(""), description="Operator bearer token for the HTTP API; prefer the file."
    )
    admin_token_file: str = Field(
        "", description="File holding the operator token (a mounted secret)."
    )
    policy_refresh: float = Field(
        10.0, gt=0, description="Seconds between reloads of tenants, networks and domains."
    )

    def operator_token(self) -> str:
        """The operator token from the setting or its file ('' when neither is set)."""
        token = self.admin_token.get_secret_value()
        if not token and self.admin_token_file:
            try:
                token = Path(self.admin_token_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the admin token file: {exc.strerror}") from None
        return token

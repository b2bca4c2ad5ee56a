"""Settings of the ingest service (``HATO_INGEST_*`` plus the shared sections)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.egress import EgressSettings
from shared.errors import ConfigError
from shared.settings import DnsSettings, SecretsSettings, ServiceSettings, UnsubscribeSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HATO_INGEST_", extra="ignore")

    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    schedule_interval: float = Field(
        5, gt=0, description="Seconds between looks for scheduled messages whose time has come."
    )
    lease_ttl: float = Field(
        30,
        gt=0,
        description="Seconds the scheduled-release lease lasts unrenewed; another replica "
        "takes over after it.",
    )
    unsubscribe: UnsubscribeSettings = Field(default_factory=UnsubscribeSettings)
    smtp_host: str = Field("127.0.0.1", description="Address the SMTP listeners bind.")
    smtp_port: int = Field(
        2525,
        ge=0,
        description="Relay port (25 in production): authorised networks, or AUTH after STARTTLS.",
    )
    submission_port: int = Field(
        -1,
        ge=-1,
        description="Submission port (587): STARTTLS, then AUTH or an authorised network; -1: off.",
    )
    smtps_port: int = Field(-1, ge=-1, description="Implicit-TLS submission port (465); -1: off.")
    legacy_tls_port: int = Field(
        -1,
        ge=-1,
        description="Extra STARTTLS relay listener for old devices (see legacy_tls_min_version).",
    )
    legacy_tls_min_version: Literal["TLSv1", "TLSv1.1", "TLSv1.2"] = Field(
        "TLSv1", description="Lowest TLS version the legacy listener accepts."
    )
    tls_cert_file: str = Field("", description="PEM certificate chain for STARTTLS and port 465.")
    tls_key_file: str = Field("", description="PEM private key of the certificate.")
    auth_max_failures: int = Field(
        5, ge=1, description="Failed AUTH attempts from one address before it is locked out."
    )
    auth_failure_window: float = Field(
        300, gt=0, description="Seconds in which auth_max_failures failures lock an address out."
    )
    auth_lockout: float = Field(300, gt=0, description="Seconds a locked-out address waits.")
    auth_max_failures_per_user: int = Field(
        20,
        ge=1,
        description="Failed AUTH attempts for one user name, from any address, before the name "
        "is locked out for auth_lockout (guessing spread over many addresses).",
    )
    smtp_greet_pause: float = Field(
        0.2,
        ge=0,
        description="Seconds the SMTP banner waits; a client that talks before it is refused "
        "(554 5.5.0) and dropped.",
    )
    smtp_max_errors: int = Field(
        20, ge=1, description="Error replies in one SMTP session before it is closed (421 4.7.0)."
    )
    smtp_max_connections_per_client: int = Field(
        50, ge=1, description="SMTP sessions one client address may hold open at once."
    )
    smtp_timeout: float = Field(
        300,
        gt=0,
        description="Seconds an SMTP session may wait for the next command, and the whole of "
        "DATA may take (a slow drip is cut there).",
    )
    hostname: str = Field("hato.localhost", description="Name in the SMTP banner and EHLO reply.")
    max_message_size: int = Field(
        26_214_400, ge=1024, description="Largest message accepted, in bytes (SIZE)."
    )
    max_recipients: int = Field(100, ge=1, description="Most recipients in one SMTP transaction.")
    sign_batch: int = Field(
        32,
        ge=1,
        description="Most accepted messages in one sign job on the broker (those accepted "
        "together); 1: a sign job a message, for signers that predate sign batches.",
    )
    max_line_length: int = Field(
        2048,
        ge=998,
        le=65536,
        description="Longest line taken, in octets without CRLF (Postfix's 2,048); a longer one "
        "is refused (500 5.5.2, HTTP 400). Lines over 998 are repaired before signing.",
    )
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
    console: bool = Field(True, description="Serve the web console at /console on the HTTP door.")
    console_secure_cookies: bool = Field(
        False,
        description="Mark console cookies Secure even over plain HTTP: TLS ends at a proxy in "
        "front (over HTTPS they are Secure anyway).",
    )
    console_grafana_url: str = Field(
        "", description="Grafana's dashboards, linked from the console's overview."
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

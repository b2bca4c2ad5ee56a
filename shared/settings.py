"""Configuration sections shared by every service, read from ``HATO_*`` environment variables.

Each service composes its own settings object from these sections (see
``services/<name>/settings.py``); only a service's ``__main__`` builds it.
Every field has a default and a one-line description.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.errors import ConfigError
from shared.verp import VerpMode

if TYPE_CHECKING:
    from shared.unsubscribe import Unsubscribe


def comma_list(field: str):
    """A validator reading ``a,b,c`` from the environment as a list (for NoDecode list fields)."""
    from pydantic import field_validator

    def split(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    return field_validator(field, mode="before")(classmethod(split))


class BrokerSettings(BaseSettings):
    """How to reach RabbitMQ and how to name and shape what is declared there."""

    model_config = SettingsConfigDict(env_prefix="HATO_AMQP_", extra="ignore")

    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/",
        description="AMQP URL of RabbitMQ; for a cluster, one URL per node, comma-separated: a "
        "service connects to the first that answers and, when its connection is lost, to any "
        "that answers (the next one in the list first), then declares the topology and "
        "consumes again by itself. Publishes in flight while it switches fail as Unavailable.",
    )
    url_file: str = Field(
        "",
        description="File holding the AMQP URL(s) (a mounted secret: a URL carries the broker "
        "password); when set, the URL is read from it and url is ignored.",
    )
    prefix: str = Field(
        "hato", description="Prefix of every exchange and queue name (isolates test runs)."
    )
    queue_type: Literal["classic", "quorum"] = Field(
        "classic",
        description="x-queue-type of durable queues: 'classic' for dev, 'quorum' in production "
        "(replicated; dead-letters at least once). The per-process control queues stay classic.",
    )
    delivery_limit: int = Field(
        20,
        ge=0,
        description="x-delivery-limit of the consumed quorum queues: a job the broker handed "
        "out this many times without an ack (its consumer crashed or lost its connection each "
        "time) is dead-lettered (to hato.dead) instead of crashing consumers for ever; 0: not "
        "set (RabbitMQ 4.x then applies its own default of 20). Classic queues have none.",
    )
    queue_expires: int = Field(
        0,
        ge=0,
        description="x-expires of queues in ms (unused queues are deleted); 0: never. Tests only.",
    )
    prefetch: int = Field(32, ge=1, description="Unacked messages a consumer may hold at once.")
    publish_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a publisher confirm before giving up."
    )
    connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a connection (to each URL in turn)."
    )
    reconnect_interval: float = Field(
        1.0,
        gt=0,
        description="Seconds before trying every URL again when none answered after a lost "
        "connection; doubles each round up to 30.",
    )
    handler_grace: float = Field(
        30.0,
        ge=0,
        description="Seconds a reconnected process waits for handlers still running from the "
        "lost connection before consuming again (their messages come back; one job must not "
        "run twice at once).",
    )
    max_redeliveries: int = Field(
        5, ge=0, description="Retries for unexpected handler errors before dead-lettering."
    )
    max_attempts: int = Field(
        1000,
        ge=1,
        description="Attempts of one job a handler may ask for (RetryLater) before it is "
        "dead-lettered (its recipients end failed): nothing retries for ever.",
    )
    max_transient_retries: int = Field(
        500,
        ge=0,
        description="Retries of one job while the store or the broker fails (backing off up to "
        "5 minutes: about 40 hours) before it is dead-lettered.",
    )
    error_backoff: float = Field(
        5.0, gt=0, description="Seconds before retrying a message whose handler failed."
    )
    seal_key: SecretStr = Field(
        SecretStr(""),
        description="Key that seals the jobs, results and events Hato's services pass each "
        "other (HMAC in a header); prefer seal_key_file. Empty: derived from the master key.",
    )
    seal_key_file: str = Field("", description="File holding the seal key (a mounted secret).")
    management_url: str = Field(
        "",
        description="URL of RabbitMQ's management HTTP API, with an administrator's user and "
        "password (http://admin:secret@127.0.0.1:15672), for `hato amqp user`. Empty: port 15672 "
        "on the host of the first AMQP URL, with its user and password.",
    )

    def urls(self) -> list[str]:
        """The broker URLs in the order they are tried: from ``url_file`` when it is set (read
        on every call, so a rewritten file is used on the next connect), else ``url``."""
        return [part.strip() for part in self.url_setting().split(",") if part.strip()]

    def url_setting(self) -> str:
        """The URL text as configured: the file's content or ``url``."""
        if not self.url_file:
            return self.url
        try:
            return Path(self.url_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read HATO_AMQP_URL_FILE {self.url_file}: {exc.strerror}"
            ) from None

    def url_source(self) -> str:
        """The setting the URLs come from, for messages: HATO_AMQP_URL or HATO_AMQP_URL_FILE."""
        return "HATO_AMQP_URL_FILE" if self.url_file else "HATO_AMQP_URL"


class StoreSettings(BaseSettings):
    """How to reach MongoDB (or FerretDB) and what to call the database."""

    model_config = SettingsConfigDict(env_prefix="HATO_MONGODB_", extra="ignore")

    url: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB connection URL.")
    database: str = Field("hato", description="Database name.")
    timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a server before a write fails."
    )
    events_ttl_days: int = Field(30, ge=1, description="Days events are kept (TTL index).")
    batch_wait: float = Field(
        0.004,
        ge=0,
        le=0.1,
        description="Seconds a busy service's next group write waits for more items (0: never).",
    )


class TelemetrySettings(BaseSettings):
    """Logging and tracing."""

    model_config = SettingsConfigDict(env_prefix="HATO_", extra="ignore")

    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    log_format: str = Field("json", description="'json' (one object per line) or 'console'.")
    otlp_endpoint: str = Field(
        "", description="OTLP/HTTP endpoint for traces (e.g. http://otel:4318); empty: no export."
    )
    metrics_interval: float = Field(
        15.0,
        gt=0,
        description="Seconds between reads of what /metrics reports from the broker and the "
        "store (queue depths, oldest job age, DKIM keys, warm-up headroom).",
    )


class ServiceSettings(BaseSettings):
    """Sections and the ops endpoint every service has; subclasses add their own fields."""

    model_config = SettingsConfigDict(extra="ignore")

    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    ops_host: str = Field("127.0.0.1", description="Address of /healthz, /readyz and /metrics.")
    ops_port: int = Field(0, ge=0, description="Port of /healthz, /readyz and /metrics (0: any).")
    shutdown_grace: float = Field(
        20.0, gt=0, description="Seconds in-flight work gets to finish after SIGTERM."
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="Event loop: uvloop (libuv, faster) or Python's own asyncio."
    )
    gc_threshold: tuple[int, int, int] = Field(
        (20_000, 20, 50),
        description="Python's collector thresholds (gc.set_threshold), as a JSON list. Python's "
        "own (700, 10, 10) collect the youngest objects every few mails and every object the "
        "process holds every few seconds, a pause of tens of milliseconds each time; the "
        "objects of start-up are frozen (gc.freeze) and never scanned again either way.",
    )


class SecretsSettings(BaseSettings):
    """Where the master key that encrypts private keys at rest comes from, and whether a
    service may start with secrets anyone could know (shared/known_secrets.py)."""

    model_config = SettingsConfigDict(env_prefix="HATO_", extra="ignore")

    master_key: SecretStr = Field(
        SecretStr(""),
        description="Fernet master key (urlsafe base64, 32 bytes); prefer master_key_file.",
    )
    master_key_file: str = Field(
        "",
        description="File holding the master key (a mounted secret); used if master_key is empty.",
    )
    allow_default_secrets: bool = Field(
        False,
        description="Start even when a secret is a known default or placeholder (guest, hato, "
        "change-me, ... in a URL to a host that is not loopback, or as a key or token); "
        "throwaway setups only: each is logged as a warning.",
    )


class DnsSettings(BaseSettings):
    """DNS: the resolver used to verify domains, and what tenants are told to publish."""

    model_config = SettingsConfigDict(env_prefix="HATO_DNS_", extra="ignore")

    nameservers: Annotated[list[str], NoDecode] = Field(
        [], description="Resolvers as host or host:port, comma-separated; empty: the system's."
    )
    timeout: float = Field(5.0, gt=0, description="Seconds a DNS lookup may take.")
    spf_include: str = Field(
        "spf.hato.localhost", description="Domain tenants include in SPF (it lists the pool IPs)."
    )
    return_path_label: str = Field(
        "bounces", description="Label of the tenant's return-path (bounce) subdomain."
    )
    return_path_host: str = Field(
        "bounces.hato.localhost", description="Host the return-path subdomain is a CNAME of."
    )
    bounce_mx: str = Field(
        "",
        description="Host name of the inbound bounce listener: the MX a return-path domain "
        "must lead to (hato domain check); empty: return_path_host itself.",
    )

    _split = comma_list("nameservers")


class UnsubscribeSettings(BaseSettings):
    """One-click unsubscribe: the key of its tokens (signer makes them, ingest and bounce
    check them) and where its links point."""

    model_config = SettingsConfigDict(env_prefix="HATO_", extra="ignore")

    unsubscribe_key: SecretStr = Field(
        SecretStr(""), description="HMAC key of unsubscribe tokens; prefer the file."
    )
    unsubscribe_key_file: str = Field(
        "", description="File holding the unsubscribe key (a mounted secret)."
    )
    public_url: str = Field(
        "",
        description="Where the internet reaches ingest's HTTP door (https://mail.example.com): "
        "the base of List-Unsubscribe links; empty: mailto only, no one-click.",
    )
    unsubscribe_label: str = Field(
        "bounces", description="Label of the subdomain the unsubscribe mailto goes to."
    )

    def secret(self) -> bytes:
        value = self.unsubscribe_key.get_secret_value()
        if not value and self.unsubscribe_key_file:
            value = Path(self.unsubscribe_key_file).read_text().strip()
        return value.encode()

    def make(self) -> Unsubscribe | None:
        """The token maker and checker, None without a key (no unsubscribe then)."""
        from shared.unsubscribe import Unsubscribe  # it counts in metrics, which read settings

        key = self.secret()
        if not key:
            return None
        return Unsubscribe(key, self.public_url, self.unsubscribe_label)


class VerpSettings(BaseSettings):
    """The key that signs VERP return paths (dispatcher) and checks them (bounce)."""

    model_config = SettingsConfigDict(env_prefix="HATO_VERP_", extra="ignore")

    key: SecretStr = Field(SecretStr(""), description="HMAC key of return paths; prefer the file.")
    key_file: str = Field("", description="File holding the VERP key (a mounted secret).")
    label: str = Field("bounces", description="Label of the return-path subdomain.")
    mode: VerpMode = Field(
        VerpMode.RECIPIENT,
        description="'recipient' (one return path, so one transaction, per recipient), "
        "'message' (one per message), or 'off' (the envelope sender as submitted).",
    )
    ttl_days: int = Field(
        14,
        ge=1,
        description="Days a return path stays valid for bounces: retries last up to 3 days, "
        "late bounces come days after.",
    )

    def secret(self) -> bytes:
        value = self.key.get_secret_value()
        if not value and self.key_file:
            value = Path(self.key_file).read_text().strip()
        return value.encode()

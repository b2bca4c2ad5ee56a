"""The admin API's bodies: what a request may hold (unknown fields refused) and what each
route answers (fields that a later version adds pass through)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.admin import DOMAIN, NAME, SELECTOR
from shared.directory import relay_network

_NAME = NAME

# -- requests ---------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsIn(_In):
    max_message_size: int | None = Field(None, ge=1024)
    max_recipients: int | None = Field(None, ge=1)
    messages_per_hour: int | None = Field(None, ge=1)
    max_age: float | None = Field(None, gt=0, description="Seconds deferred mail is retried.")
    retention_days: float | None = Field(
        None, gt=0, description="Days a message is kept once all its recipients are final."
    )
    jis_extensions: Literal["cp50220", "utf-8", "refuse"] | None = Field(
        None,
        description="A JSON message in ISO-2022-JP with characters beyond JIS X 0208 (①, 髙, "
        "﨑): written in Microsoft's extension (cp50220, the default), sent in UTF-8 instead "
        "(with a charset_fallback event), or refused (400 naming the character).",
    )
    missing_headers: Literal["add", "refuse"] | None = Field(
        None,
        description="A message without Message-ID or Date: add them (the default) or refuse it.",
    )
    unsubscribe_list: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="List of the one-click unsubscribe added to mail that names none.",
    )


def _relay_networks(networks: list[str], wide: bool) -> list[str]:
    try:
        return [relay_network(n, wide=wide) for n in networks]
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class TenantIn(_In):
    name: str = Field(pattern=_NAME)
    pool: str = Field("default", pattern=_NAME)
    networks: list[str] = []
    limits: LimitsIn = LimitsIn()
    signing_domain: str | None = Field(
        None, description="Fallback DKIM domain for From domains without a key."
    )
    other_pools: list[str] = Field([], description="Pools a message may name instead.")
    allow_wide_networks: bool = Field(
        False, description="Take networks wider than /8 (IPv4) or /32 (IPv6): they relay freely."
    )

    @model_validator(mode="after")
    def _networks(self) -> TenantIn:
        self.networks = _relay_networks(self.networks, self.allow_wide_networks)
        return self


class TenantChangeIn(_In):
    """What changes of a tenant; what is left out stays as it is."""

    pool: str | None = Field(None, pattern=_NAME)
    limits: LimitsIn | None = None
    signing_domain: str | None = None
    other_pools: list[str] | None = None


class PoolMemberIn(_In):
    ip: str
    helo: str | None = Field(None, max_length=253, description="EHLO name of this source IP.")
    warmup: list[int] = Field([], description="Daily caps for day 1, 2, ... (the last holds).")


class NetworkIn(_In):
    cidr: str
    allow_wide: bool = Field(
        False, description="Take a network wider than /8 (IPv4) or /32 (IPv6): it relays freely."
    )

    @model_validator(mode="after")
    def _cidr(self) -> NetworkIn:
        self.cidr = _relay_networks([self.cidr], self.allow_wide)[0]
        return self


class DomainIn(_In):
    domain: str = Field(max_length=253, pattern=DOMAIN)
    verified: bool = Field(False, description="Operator's word that the domain is theirs.")
    selector: str = Field("hato", pattern=SELECTOR)


class CredentialIn(_In):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")
    allowed_from: list[str] = Field([], description="Addresses or domains it may send from.")


class ApiKeyIn(_In):
    name: str = Field("", max_length=100)
    allowed_from: list[str] = []


# -- answers ----------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")  # what later versions add passes through


class DeadJob(_Out):
    id: str = Field(description="The job's id: a hash of its body.")
    queue: str = Field(description="The queue it died in.")
    reason: str
    failed_at: str
    kind: str = Field(description="The job's kind, or `undecodable`.")
    message_id: str | None = None
    tenant: str | None = None
    recipients: list[str] | None = None
    size: int | None = None
    done: str = Field(description="`retry` or `drop` when it was done to the job, else empty.")


class DeadJobs(BaseModel):
    jobs: list[DeadJob]


class Retried(BaseModel):
    retried: list[DeadJob]


class Dropped(BaseModel):
    dropped: list[DeadJob]


class TenantOut(_Out):
    name: str
    pool: str | None
    other_pools: list[str]
    networks: list[str]
    limits: dict[str, int | float | str | None] = Field(description="What is set; unset: default.")
    signing_domain: str | None
    created_at: datetime | None


class PoolMember(_Out):
    ip: str
    helo: str | None = None
    warmup: list[int] = []
    started_at: datetime | None = None


class PoolOut(BaseModel):
    name: str
    members: list[PoolMember]


class PoolMemberAdded(PoolMember):
    pool: str


class DnsRecord(BaseModel):
    name: str
    type: str
    value: str
    purpose: str


class DomainAdded(BaseModel):
    domain: str
    tenant: str
    verified: bool
    dns_records: list[DnsRecord] = Field(description="The records to publish.")


class DomainOut(BaseModel):
    domain: str
    verified: bool
    dns_records: list[DnsRecord]


class DkimCheck(BaseModel):
    selector: str
    name: str
    status: str = Field(description="found, missing, different or dns-error.")


class DomainVerified(BaseModel):
    domain: str
    verified: bool
    dkim: list[DkimCheck]


class CredentialCreated(BaseModel):
    username: str
    password: str = Field(description="Shown in this answer only; stored hashed.")
    allowed_from: list[str]


class CredentialOut(BaseModel):
    username: str
    allowed_from: list[str]
    created_at: datetime | None


class ApiKeyCreated(BaseModel):
    prefix: str
    key: str = Field(description="Shown in this answer only; stored hashed.")
    name: str
    allowed_from: list[str]


class ApiKeyOut(BaseModel):
    prefix: str
    name: str
    allowed_from: list[str]
    created_at: datetime | None


# -- the delivery queue -----------------------------------------------------------------------


class QueueFilterIn(_In):
    """Which waiting mail a queue command is about (an empty field matches all)."""

    tenant: str = Field("", description="A tenant's mail.")
    domain: str = Field("", description="Mail to a destination domain and its subdomains.")
    source_ip: str = Field("", description="Mail sent from a source IP.")


class SuspendIn(QueueFilterIn):
    provider: str = Field("", description="Only towards a provider group or domain.")
    reason: str = Field("", max_length=500)
    expires_in: float | None = Field(
        None, gt=0, le=366 * 86400, description="Seconds until it is lifted by itself."
    )


class PurgeIn(QueueFilterIn):
    reason: str = Field(min_length=1, max_length=500, description="What the senders see.")


class MoveIn(_In):
    tenant: str = Field("", description="A tenant's mail.")
    domain: str = Field("", description="Mail to a destination domain and its subdomains.")
    pool: str = Field(pattern=_NAME, description="The pool to send from.")
    expires_in: float | None = Field(
        None, gt=0, le=366 * 86400, description="Seconds until it is lifted by itself."
    )


class QueueControlOut(_Out):
    id: str
    action: str = Field(description="suspend, move, avoid or slow.")
    tenant: str
    domain: str
    source_ip: str
    provider: str
    pool: str | None = None
    factor: float | None = None
    reason: str
    origin: str = Field(description="`operator`, or `rule:<name>` for a reply rule's action.")
    created_at: datetime | None
    expires_at: datetime | None
    lifted: bool | None = None


class QueueStatusOut(_Out):
    filter: dict[str, str]
    waiting: int = Field(description="Recipients waiting (queued or deferred).")
    attempts: int = Field(description="Delivery attempts they have had so far.")
    oldest: datetime | None
    oldest_seconds: float | None
    by_tenant: dict[str, int]
    by_domain: dict[str, int]
    by_source_ip: dict[str, int] = Field(description="By the source IP of the last attempt.")
    by_reason: dict[str, int] = Field(description="queued, deferred or `suspended: <what>`.")
    controls: list[QueueControlOut]


class QueueRetriedOut(_Out):
    filter: dict[str, str]
    waiting: int = Field(description="Waiting recipients that match.")


class QueuePurgedOut(_Out):
    filter: dict[str, str]
    purged: int = Field(description="Recipients now bounced.")
    reason: str

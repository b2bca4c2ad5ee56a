"""Every message that crosses the broker, and the one codec for them.

An AMQP body is the message's JSON envelope on one line, a ``\\n``, then the
payload bytes (the raw RFC 5322 message for jobs, a batch's jobs' messages one
after another; nothing for results and events). Recipient lists ride in the
body, never in AMQP headers, whose frame size is limited. ``kind`` names the
model; ``schema_version`` lets a consumer refuse what it does not understand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.domains import domain_of
from shared.errors import CodecError
from shared.ids import event_id

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/vnd.hato+json-payload"


def utcnow() -> datetime:
    """The time now, in UTC: the one clock of the store, the events and the schedules."""
    return datetime.now(UTC)


class RecipientStatus(StrEnum):
    """Where a recipient stands; all but scheduled, queued and deferred are final."""

    SCHEDULED = "scheduled"  # held until the message's send_at
    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    FAILED = "failed"
    SANDBOXED = "sandboxed"  # sent in sandbox (test) mode: checked and recorded, never sent
    CANCELLED = "cancelled"  # a scheduled message its sender cancelled before its time

    @property
    def is_final(self) -> bool:
        return self not in WAITING and self is not RecipientStatus.SCHEDULED


WAITING = frozenset({RecipientStatus.QUEUED, RecipientStatus.DEFERRED})
"""What a delivery attempt may move (a scheduled recipient waits for its time first)."""


class MessageStage(StrEnum):
    """How far a message itself got (its document's ``status``; what its recipients say is
    added when it is read, ``shared/views.py``)."""

    ACCEPTED = "accepted"  # durable, not signed yet
    SIGNED = "signed"  # read from its signed or unsigned event, never stored
    SUPPRESSED = "suppressed"  # every recipient was on the suppression list
    FAILED = "failed"  # cannot be sent: no key under the fail policy
    SANDBOXED = "sandboxed"  # sandbox (test) mode: checked and recorded, nothing sent
    SCHEDULED = "scheduled"  # held until its send_at (shared/schedule.py)
    CANCELLED = "cancelled"  # cancelled by its sender before its send_at


class MessageStatus(StrEnum):
    """What a message's status says besides its stage and its recipients' common status."""

    PARTIALLY_DELIVERED = "partially_delivered"  # final, some delivered and some not
    UNDELIVERED = "undelivered"  # final, none delivered, in different ways


class Change(StrEnum):
    """What moves a recipient from one status to another, and who writes it."""

    ATTEMPT = "attempt"  # the dispatcher: a delivery attempt's outcome, or its expiry
    FEEDBACK = "feedback"  # the bounce service: an asynchronous bounce, a complaint
    FAILURE = "failure"  # the signer (no key, policy fail) or a dead-lettered job
    RETRY = "retry"  # an operator retries a dead-lettered job (hato dead retry)
    RELEASE = "release"  # ingest: a scheduled message's time has come
    CANCEL = "cancel"  # its sender cancels a scheduled message
    PURGE = "purge"  # an operator bounces waiting mail (hato queue purge)


# The one table of a recipient's life. Ingest writes ``queued`` (or ``suppressed``, or in
# sandbox mode ``sandboxed``) when it accepts the mail; after that each change may move a
# recipient only from the statuses on the left to those on the right, and the store's
# writes filter on the left side, so a change that comes late (a redelivered job, a report
# about a recipient already final) moves nothing. A feedback may come before the attempt
# that caused it is written (a receiver that bounces at once): it wins, and the attempt then
# finds the recipient final.
TRANSITIONS: dict[Change, tuple[frozenset[RecipientStatus], frozenset[RecipientStatus]]] = {
    Change.ATTEMPT: (
        WAITING,
        frozenset(
            {
                RecipientStatus.DEFERRED,
                RecipientStatus.DELIVERED,
                RecipientStatus.BOUNCED,
                RecipientStatus.EXPIRED,
                RecipientStatus.FAILED,
            }
        ),
    ),
    Change.FEEDBACK: (
        WAITING | {RecipientStatus.DELIVERED},
        frozenset({RecipientStatus.BOUNCED, RecipientStatus.COMPLAINED}),
    ),
    Change.FAILURE: (WAITING, frozenset({RecipientStatus.FAILED})),
    Change.RETRY: (frozenset({RecipientStatus.FAILED}), frozenset({RecipientStatus.QUEUED})),
    Change.RELEASE: (
        frozenset({RecipientStatus.SCHEDULED}),
        frozenset({RecipientStatus.QUEUED}),
    ),
    Change.CANCEL: (
        frozenset({RecipientStatus.SCHEDULED}),
        frozenset({RecipientStatus.CANCELLED}),
    ),
    Change.PURGE: (WAITING, frozenset({RecipientStatus.BOUNCED})),
}


def moves_from(change: Change, to: RecipientStatus) -> list[str]:
    """The statuses ``change`` may move a recipient from to ``to``, as a store query wants
    them; ValueError when the table has no such move."""
    sources, targets = TRANSITIONS[change]
    if to not in targets:
        raise ValueError(f"no {change.value} makes a recipient {to.value}")
    return sorted(s.value for s in sources)


class EventType(StrEnum):
    """What the timeline of a message can say."""

    ACCEPTED = "accepted"
    SIGNED = "signed"
    UNSIGNED = "unsigned"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    FAILED = "failed"
    SANDBOXED = "sandboxed"  # accepted in sandbox (test) mode: recorded, not sent
    SCHEDULED = "scheduled"  # accepted, held until its send_at
    CANCELLED = "cancelled"  # a scheduled message cancelled by its sender
    UNSUBSCRIBED = "unsubscribed"  # a recipient left a list (one-click link or mailto)
    DEAD_LETTERED = "dead_lettered"
    CHARSET_FALLBACK = "charset_fallback"  # sent in UTF-8: the asked charset lacked a character
    DKIM_KEY_PENDING = "dkim_key_pending"  # a new key waits for its DNS record
    DKIM_KEY_ACTIVATED = "dkim_key_activated"
    DKIM_KEY_RETIRED = "dkim_key_retired"
    DOMAIN_CHECK_FAILED = "domain_check_failed"  # a passing domain's DNS broke (re-check)
    RULE_TRIGGERED = "rule_triggered"  # a reply rule acted on a (source IP, provider)
    RULE_ENDED = "rule_ended"  # ... and its action ended by itself
    QUEUE_SUSPENDED = "queue_suspended"  # an operator suspended delivery (hato queue)
    QUEUE_RESUMED = "queue_resumed"
    QUEUE_MOVED = "queue_moved"
    QUEUE_RETRIED = "queue_retried"
    QUEUE_PURGED = "queue_purged"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: int = SCHEMA_VERSION


class Recipient(BaseModel):
    """One envelope recipient and the id its state is kept under."""

    model_config = ConfigDict(frozen=True)

    id: str
    address: str

    @property
    def domain(self) -> str:
        return domain_of(self.address)


class Reply(BaseModel):
    """An SMTP reply with its RFC 3463 enhanced status code: a remote server's (or Hato's own
    word when there was none), or one Hato's listeners give; ``str()`` is the wire form."""

    model_config = ConfigDict(frozen=True)

    code: int
    enhanced: str = ""
    text: str = ""

    @classmethod
    def of(cls, code: int, enhanced: str = "", text: str = "") -> Reply:
        """A reply from its three parts, as a table of replies writes them."""
        return cls(code=code, enhanced=enhanced, text=text)

    def __str__(self) -> str:
        return " ".join(str(p) for p in (self.code, self.enhanced, self.text) if p)


class _Job(_Model):
    """What every job carries: whose message it is, from whom, to whom, through which pool.
    ``created_at`` is the acceptance time (retries and expiry count from it)."""

    message_id: str
    tenant: str
    mail_from: str
    recipients: tuple[Recipient, ...]
    pool: str
    created_at: datetime = Field(default_factory=utcnow)
    max_age: float | None = None  # seconds the tenant gives a deferred recipient
    # The sender's tags and metadata, carried along so that every event of the mail has them
    # without a lookup (webhook formats, event consumers, filters).
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = Field(default_factory=dict)


class SignJob(_Job):
    """ingest → signer: an accepted message to sign; payload is the raw message."""

    kind: Literal["sign"] = "sign"
    from_domain: str
    # One-click unsubscribe from this list: the signer gives each recipient its own
    # List-Unsubscribe fields, signed (shared/unsubscribe.py). None: the message as it is.
    unsubscribe_list: str | None = None


J = TypeVar("J", bound=_Job)


class _Batch(_Model, Generic[J]):
    """Several jobs in one broker message: under load a confirmed publish, a queued message and
    a delivery with its ack cost about the same whatever they carry. The payload is the jobs'
    messages one after another, ``sizes`` long each."""

    jobs: tuple[J, ...] = Field(min_length=1)
    sizes: tuple[Annotated[int, Field(ge=0)], ...]

    @classmethod
    def of(cls, items: Sequence[tuple[J, bytes]]) -> tuple[Self, bytes]:
        """The batch of ``items`` (a job and its message each) and its payload."""
        batch = cls(jobs=tuple(j for j, _ in items), sizes=tuple(len(raw) for _, raw in items))
        return batch, b"".join(raw for _, raw in items)

    @property
    def created_at(self) -> datetime:
        """When its oldest message was accepted (a queue's wait counts from it)."""
        return min(j.created_at for j in self.jobs)

    def split(self, payload: bytes) -> list[tuple[J, bytes]]:
        """Each job with its message; CodecError when the sizes do not add up."""
        if len(self.sizes) != len(self.jobs) or sum(self.sizes) != len(payload):
            raise CodecError(
                f"{self.kind}: {len(self.jobs)} jobs and {len(self.sizes)} sizes adding up to "  # type: ignore[attr-defined]
                f"{sum(self.sizes)} bytes, for a payload of {len(payload)}"
            )
        items, at = [], 0
        for job, size in zip(self.jobs, self.sizes, strict=True):
            items.append((job, payload[at : at + size]))
            at += size
        return items


class SignBatch(_Batch[SignJob]):
    """ingest → signer: several accepted messages to sign (the acceptances of one group
    commit). The signer handles each job as it would handle it alone; a batch whose handling
    fails goes back on the sign queue as its single jobs (services/signer)."""

    kind: Literal["sign_batch"] = "sign_batch"


class DeliveryJob(_Job):
    """signer → dispatcher: recipients of one destination domain; payload is the signed message."""

    kind: Literal["deliver"] = "deliver"
    domain: str


class DeliveryBatch(_Batch[DeliveryJob]):
    """signer → dispatcher: delivery jobs of one pool, each with its signed message (the
    messages of one sign batch). ``consume()`` hands each job to the handler as if it came
    alone and settles each on its own: a job to retry or to dead-letter goes on as itself."""

    kind: Literal["deliver_batch"] = "deliver_batch"

    @property
    def pool(self) -> str:
        return self.jobs[0].pool


BATCHES = (SignBatch, DeliveryBatch)
"""The messages that carry several jobs."""


class RecipientResult(BaseModel):
    """What one delivery attempt did for one recipient."""

    model_config = ConfigDict(frozen=True)

    recipient_id: str
    address: str
    status: RecipientStatus
    reply: Reply
    # The SMTP command the reply answered ("MAIL", "RCPT", "DATA"), None when unknown or
    # when there was no reply: a "550 No such user" at RCPT is a missing mailbox, after
    # DATA the recipient's filter (Sisimai's UserUnknown vs Filtered).
    command: str | None = None


class DeliveryResult(_Model):
    """dispatcher → bounce: the outcome of one delivery attempt of one job."""

    kind: Literal["result"] = "result"
    message_id: str
    tenant: str
    attempt: int
    destination: str
    results: tuple[RecipientResult, ...]
    source_ip: str | None = None
    at: datetime = Field(default_factory=utcnow)
    tags: tuple[str, ...] = ()  # the job's, for the events of the attempt
    metadata: dict[str, str] = Field(default_factory=dict)


class Event(_Model):
    """A line of a message's timeline, published on the events exchange and stored."""

    kind: Literal["event"] = "event"
    id: str
    type: EventType
    message_id: str | None = None  # None for events about a tenant's setup (DKIM keys ...)
    tenant: str
    recipient_id: str | None = None
    address: str | None = None
    reply: Reply | None = None
    detail: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    at: datetime = Field(default_factory=utcnow)
    tags: tuple[str, ...] = ()  # the message's tags (SendGrid: categories)
    metadata: dict[str, str] = Field(default_factory=dict)  # its metadata (custom args)

    @classmethod
    def of(
        cls,
        type_: EventType,
        *,
        tenant: str,
        message_id: str | None = None,
        recipient_id: str | None = None,
        address: str | None = None,
        step: tuple[object, ...] = (),
        reply: Reply | None = None,
        detail: dict[str, str | int | float | bool | None] | None = None,
        at: datetime | None = None,
        tags: tuple[str, ...] | list[str] = (),
        metadata: dict[str, str] | None = None,
    ) -> Event:
        """The event ``type_`` of this message and recipient at ``step`` (the delivery
        attempt, the sign job, the report ...). Its id is derived from them: the same step
        recorded again (a redelivered job, a report applied twice) is the same event, which a
        receiver that de-duplicates by id drops."""
        return cls(
            id=event_id(type_, message_id, recipient_id, *step),
            type=type_,
            message_id=message_id,
            tenant=tenant,
            recipient_id=recipient_id,
            address=address,
            reply=reply,
            detail=detail or {},
            at=at or utcnow(),
            tags=tuple(tags),
            metadata=metadata or {},
        )


class ChangeKind(StrEnum):
    """What an operator changed: which cached configuration services must drop."""

    TENANTS = "tenants"  # tenants, their networks, limits, credentials and API keys
    DOMAINS = "domains"  # sending domains and their DKIM keys
    POOLS = "pools"  # IP pools and their members
    WEBHOOKS = "webhooks"  # tenants' webhook endpoints and the events they take
    QUEUE = "queue"  # queue controls; a name "retry:<scope JSON>" asks for a retry now


class Changed(_Model):
    """An operator (``hato``, the admin API, the key rotation) changed configuration; every
    running service drops what it cached of it at once instead of at its next refresh.
    ``name`` is the tenant, domain or pool ("" for any)."""

    kind: Literal["changed"] = "changed"
    what: ChangeKind
    name: str = ""


class ReportJob(_Model):
    """bounce listener → its report consumer: an inbound report kept raw in ``reports`` under
    ``report_id``, to be read, matched to what its return paths name, and applied. The raw
    report stays in the database, not in the job: it is an operator's to look at, and a job
    dead-lettered because the report cannot be read is retried from it."""

    kind: Literal["report"] = "report"
    report_id: str
    rcpt_tos: tuple[str, ...]


BrokerMessage = Annotated[
    SignJob
    | SignBatch
    | DeliveryJob
    | DeliveryBatch
    | DeliveryResult
    | Event
    | Changed
    | ReportJob,
    Field(discriminator="kind"),
]
_adapter: TypeAdapter[BrokerMessage] = TypeAdapter(BrokerMessage)


def encode(message: _Model, payload: bytes = b"") -> bytes:
    """The AMQP body for ``message`` followed by ``payload``."""
    return message.model_dump_json().encode() + b"\n" + payload


def describe(exc: ValidationError, *, whole: str = "body", limit: int = 5) -> str:
    """A validation error in one line: ``field.path: problem; ...``."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or whole}: {e['msg']}" for e in exc.errors()[:limit]
    )


def decode(body: bytes) -> tuple[BrokerMessage, bytes]:
    """Split an AMQP body into its model and payload; raises CodecError when it is not one."""
    head, sep, payload = body.partition(b"\n")
    if not sep:
        raise CodecError("no envelope line (expected JSON, a newline, then the payload)")
    try:
        message = _adapter.validate_json(head)
    except ValidationError as exc:
        raise CodecError(f"invalid envelope: {describe(exc, whole='envelope')}") from None
    if message.schema_version > SCHEMA_VERSION:
        raise CodecError(f"unsupported schema_version {message.schema_version}")
    return message, payload

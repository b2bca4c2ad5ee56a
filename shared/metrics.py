"""Prometheus metrics that answer an operator's questions about the mail, in one place.

What is counted where, and why the labels are what they are:

- Labels are bounded. ``tenant`` and ``pool`` are operator-made; ``source_ip`` is a pool
  member; a destination is a *provider group* (``provider_group``: gmail, outlook, yahoo,
  docomo, au, softbank or other), never a recipient or a raw domain; a bounce ``reason`` is
  the classifier's vocabulary; a deferral ``reason`` is ``deferral_reason``'s.
- Counters on the hot path cost a label lookup each; nothing here reads the store or the
  broker per message. What needs a read (queue depths, DKIM keys, warm-up headroom) is taken
  by a ``Census`` that each service runs every ``metrics_interval`` seconds.
- Latency histograms have buckets that fit mail: milliseconds for accepting and signing,
  up to ten minutes for one SMTP transaction, up to a week from acceptance to a final state
  (deferred mail retries for hours; ``HATO_DISPATCHER_MAX_AGE`` is three days).

The older metrics stay where they were: ``hato_consumed_messages_total`` and friends in
``shared/telemetry.py``, the per-service counters in the services.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from prometheus_client import Counter, Gauge, Histogram

from shared import logging as hlog
from shared.domains import domain_of
from shared.schemas import Reply
from shared.settings import BrokerSettings

log = hlog.get_logger(__name__)

# -- buckets ---------------------------------------------------------------------------------

FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SMTP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)  # RFC 5321 4.5.3.2
MAIL_BUCKETS = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800,
    3600, 7200, 14400, 43200, 86400, 172800, 259200, 604800,
)  # fmt: skip

# -- the metrics -----------------------------------------------------------------------------

SERVICE_INFO = Gauge(
    "hato_service_info",
    "1 for each running Hato process: its service and version (join on instance).",
    ["service", "version"],
)
DEPENDENCY_UP = Gauge(
    "hato_dependency_up",
    "1 when the process reaches the dependency (broker: connected; store: answers a ping).",
    ["dependency"],
)
STORE_PING_SECONDS = Gauge(
    "hato_store_ping_seconds", "Round trip of the last ping to MongoDB, in seconds."
)

QUEUE_MESSAGES = Gauge(
    "hato_queue_messages",
    "Broker messages ready in a queue (not yet taken by a consumer), by queue; a batch "
    "of jobs is one.",
    ["queue"],
)
QUEUE_CONSUMERS = Gauge("hato_queue_consumers", "Consumers of a broker queue.", ["queue"])
QUEUE_OLDEST_AGE = Gauge(
    "hato_queue_oldest_job_age_seconds",
    "Estimated age of the oldest job waiting in a work queue (see shared/metrics.py).",
    ["queue"],
)
QUEUE_WAIT = Histogram(
    "hato_queue_wait_seconds",
    "Age of a job when a consumer took it on its first attempt (mail age for mail jobs).",
    ["queue"],
    buckets=MAIL_BUCKETS,
)

ACCEPT_SECONDS = Histogram(
    "hato_ingest_accept_seconds",
    "From a door handing a message over to its being durable and its sign job confirmed.",
    ["door"],
    buckets=FAST_BUCKETS,
)
REFUSED = Counter(
    "hato_ingest_refused_total",
    "Refusals by door, class (temporary or permanent) and reply: each 4xx/5xx SMTP reply "
    "(code and enhanced code), each refused HTTP send or AMQP submission (HTTP status).",
    ["door", "class", "reply"],
)
SMTP_SESSIONS = Counter(
    "hato_ingest_smtp_sessions_total", "SMTP connections opened, by listener.", ["listener"]
)
SMTP_OPEN = Gauge(
    "hato_ingest_smtp_open_sessions", "SMTP connections open now, by listener.", ["listener"]
)
SMTP_TLS = Counter(
    "hato_ingest_smtp_tls_total",
    "SMTP sessions that completed a TLS handshake (STARTTLS or implicit), by listener and "
    "protocol version.",
    ["listener", "version"],
)
SMTP_AUTH = Counter(
    "hato_ingest_smtp_auth_total",
    "SMTP AUTH attempts by result: ok, failed, locked (refused: address locked out), error.",
    ["result"],
)
SMTP_LOCKOUTS = Counter(
    "hato_ingest_smtp_lockouts_total",
    "Client addresses locked out after too many failed AUTH attempts.",
)
HTTP_REQUESTS = Counter(
    "hato_ingest_http_requests_total",
    "HTTP API requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "hato_ingest_http_request_seconds",
    "HTTP API request latency by method and route template.",
    ["method", "route"],
    buckets=FAST_BUCKETS,
)
TLS_EXPIRY = Gauge(
    "hato_tls_certificate_expiry_timestamp_seconds",
    "When the TLS certificate a listener serves expires (Unix time), by certificate subject.",
    ["subject"],
)

SIGN_SECONDS = Histogram(
    "hato_signer_sign_seconds",
    "Time to DKIM-sign one message with all its keys.",
    buckets=FAST_BUCKETS,
)
DKIM_KEY_AGE = Gauge(
    "hato_dkim_key_age_seconds",
    "Age of each DKIM key not retired: active since activation, pending since creation.",
    ["tenant", "domain", "selector", "algorithm", "status"],
)
DKIM_ROTATE_AFTER = Gauge(
    "hato_dkim_rotate_after_seconds",
    "Key age at which the signer starts a rotation (HATO_SIGNER_ROTATE_AFTER_DAYS; 0: never).",
)

OUTCOMES = Counter(
    "hato_recipient_outcomes_total",
    "Recipient state changes by tenant, provider group and status: delivered, deferred "
    "(each deferral), bounced, expired, suppressed, complained, failed.",
    ["tenant", "provider", "status"],
)
UNSUBSCRIBES = Counter(
    "hato_unsubscribes_total",
    "Recipients unsubscribed from one of a tenant's lists, by tenant and source (one-click, "
    "mailto); a repeat of the same unsubscribe is not counted.",
    ["tenant", "source"],
)
ATTEMPTS = Counter(
    "hato_delivery_attempts_total",
    "Recipients of delivery attempts by pool, source IP, provider group and status "
    "(delivered, deferred, bounced, expired).",
    ["pool", "source_ip", "provider", "status"],
)
DEFERRALS = Counter(
    "hato_delivery_deferrals_total",
    "Deferred recipients by pool, source IP, provider group and reason (deferral_reason).",
    ["pool", "source_ip", "provider", "reason"],
)
ATTEMPT_SECONDS = Histogram(
    "hato_delivery_attempt_seconds",
    "One SMTP transaction to a destination server, connecting included.",
    ["pool", "provider"],
    buckets=SMTP_BUCKETS,
)
TRANSACTIONS = Counter(
    "hato_delivery_transactions_total",
    "SMTP transactions to destination servers by provider group and TLS (none or version).",
    ["provider", "tls"],
)
FINAL_SECONDS = Histogram(
    "hato_accept_to_final_seconds",
    "From acceptance to a recipient's final state, by status and provider group.",
    ["status", "provider"],
    buckets=MAIL_BUCKETS,
)
THROTTLED_SECONDS = Counter(
    "hato_dispatcher_throttled_seconds_total",
    "Time delivery jobs waited for their destination's pace (a slot or the per-minute rate), "
    "by source IP and provider group.",
    ["source_ip", "provider"],
)
SLOWDOWNS = Counter(
    "hato_dispatcher_slowdowns_total",
    "421 or 4.7.x replies that halved a destination's pace, by source IP and provider group.",
    ["source_ip", "provider"],
)
RULES_TRIGGERED = Counter(
    "hato_dispatcher_rules_triggered_total",
    "Reply rules whose action started (slow_down, pause, move_ip), by rule and action.",
    ["rule", "action"],
)
RULES_ENDED = Counter(
    "hato_dispatcher_rules_ended_total",
    "Reply rules' actions that ended by themselves, by rule and action.",
    ["rule", "action"],
)
PACE = Gauge(
    "hato_dispatcher_pace_ratio",
    "Pace kept towards a provider group from a source IP, as a share of its configured limit "
    "(1: full speed; that of the group's destination attempted last).",
    ["source_ip", "provider"],
)
SENT_TODAY = Gauge(
    "hato_dispatcher_sent_today", "Messages sent from a source IP today (UTC).", ["source_ip"]
)
WARMUP_CAP = Gauge(
    "hato_dispatcher_warmup_cap",
    "Today's warm-up cap of a pool member (absent: no warm-up plan).",
    ["pool", "source_ip"],
)
WARMUP_HEADROOM = Gauge(
    "hato_dispatcher_warmup_headroom",
    "Messages a pool member may still send today under its warm-up plan.",
    ["pool", "source_ip"],
)

BOUNCES = Counter(
    "hato_bounces_total",
    "Classified bounces and complaints by tenant, provider group, reason (the classifier's) "
    "and source: delivery (the dispatcher's own 5xx or expiry) or what came back (dsn, arf...).",
    ["tenant", "provider", "reason", "source"],
)

# -- destinations as provider groups ---------------------------------------------------------

PROVIDERS = ("gmail", "outlook", "yahoo", "docomo", "au", "softbank", "other")

# Domain suffixes (the domain itself or any subdomain) of each group's mailboxes.
_DOMAINS: dict[str, str] = {
    "gmail.com": "gmail",
    "googlemail.com": "gmail",
    "outlook.com": "outlook",
    "hotmail.com": "outlook",
    "live.com": "outlook",
    "msn.com": "outlook",
    "outlook.jp": "outlook",
    "live.jp": "outlook",
    "hotmail.co.jp": "outlook",
    "yahoo.com": "yahoo",
    "yahoo.co.jp": "yahoo",
    "ymail.com": "yahoo",
    "rocketmail.com": "yahoo",
    "aol.com": "yahoo",  # AOL's mailboxes run on Yahoo's servers
    "docomo.ne.jp": "docomo",
    "ezweb.ne.jp": "au",
    "au.com": "au",
    "softbank.ne.jp": "softbank",
    "i.softbank.jp": "softbank",
    "vodafone.ne.jp": "softbank",  # [a-z].vodafone.ne.jp: SoftBank's older addresses
    "disney.ne.jp": "softbank",  # Disney Mobile on SoftBank
    "ymobile.ne.jp": "softbank",  # Y!mobile is SoftBank's brand
}
# Country variants: yahoo.co.uk, hotmail.fr, outlook.de, live.com.au ...
_BRANDS = {"yahoo": "yahoo", "hotmail": "outlook", "outlook": "outlook", "live": "outlook"}
# MX host suffixes: a company domain hosted by Google Workspace or Microsoft 365 is judged
# by those providers' rules, so it belongs to their group.
_MX: dict[str, str] = {
    "google.com": "gmail",
    "googlemail.com": "gmail",
    "outlook.com": "outlook",  # *.mail.protection.outlook.com, *.olc.protection.outlook.com
    "hotmail.com": "outlook",
    "yahoodns.net": "yahoo",
    "yahoo.co.jp": "yahoo",
    "docomo.ne.jp": "docomo",
    "ezweb.ne.jp": "au",
    "softbank.ne.jp": "softbank",
}
_COUNTRY_LABEL = re.compile(r"^[a-z]{2,3}$")


def _suffix_match(name: str, table: Mapping[str, str]) -> str | None:
    labels = name.split(".")
    for i in range(len(labels) - 1):
        hit = table.get(".".join(labels[i:]))
        if hit is not None:
            return hit
    return None


@functools.lru_cache(maxsize=8192)
def provider_group(domain: str, mx_host: str = "") -> str:
    """The provider group of a destination: by the recipient's domain, else by the MX host
    the dispatcher sent to (when it knows it), else ``other``. One function for every
    metric, so a provider's rates add up across them."""
    name = domain.strip().lower().rstrip(".")
    hit = _suffix_match(name, _DOMAINS)
    if hit is not None:
        return hit
    labels = name.split(".")
    if 2 <= len(labels) <= 3 and labels[0] in _BRANDS:
        if all(_COUNTRY_LABEL.match(label) for label in labels[1:]):
            return _BRANDS[labels[0]]
    if mx_host:
        hit = _suffix_match(mx_host.strip().lower().rstrip("."), _MX)
        if hit is not None:
            return hit
    return "other"


def provider_of_address(address: str) -> str:
    return provider_group(domain_of(address))


# -- deferrals ---------------------------------------------------------------------------------

DEFERRAL_REASONS = (
    "throttled",
    "connection",
    "dns",
    "mailbox_full",
    "mailbox",
    "remote_system",
    "policy",
    "other",
)


def deferral_reason(reply: Reply) -> str:
    """Why a recipient was deferred, from the reply's codes (RFC 3463), in a bounded set:
    ``throttled`` (421, 4.7.x "slow down"), ``connection`` (no connection, lost, timed out:
    Hato's own 4.4.1/4.4.2), ``dns`` (4.4.3/4.4.4), ``mailbox_full`` (4.2.2), ``mailbox``
    (other 4.2.x, 4.1.x), ``remote_system`` (4.3.x), ``policy`` (4.5.x, 4.6.x), ``other``."""
    enhanced = reply.enhanced
    if reply.code == 421 or enhanced.startswith("4.7."):
        return "throttled"
    if enhanced in ("4.4.1", "4.4.2", "4.4.7"):
        return "connection"
    if enhanced in ("4.4.3", "4.4.4"):
        return "dns"
    if enhanced == "4.2.2":
        return "mailbox_full"
    if enhanced.startswith(("4.2.", "4.1.")):
        return "mailbox"
    if enhanced.startswith(("4.3.", "4.4.")):
        return "remote_system"
    if enhanced.startswith(("4.5.", "4.6.")):
        return "policy"
    return "other"


# -- ingest: SMTP replies and the HTTP API -------------------------------------------------

_ENHANCED = re.compile(r"^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b")


def smtp_reply(line: str) -> None:
    """Count an SMTP reply ingest sends when it refuses something (a 4xx or 5xx)."""
    if line[:1] not in ("4", "5") or not line[:3].isdigit():
        return
    m = _ENHANCED.match(line)
    reply = f"{line[:3]} {m.group(1)}" if m else line[:3]
    REFUSED.labels("smtp", "temporary" if line[0] == "4" else "permanent", reply).inc()


def refused(door: str, status: int) -> None:
    """Count a refused HTTP send or AMQP submission by its HTTP status."""
    temporary = status in (429, 503) or status >= 500
    REFUSED.labels(door, "temporary" if temporary else "permanent", str(status)).inc()


_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_SENDS = ("/v1/messages", "/v1/messages/raw", "/v1/messages/batch")


class HttpMetrics:
    """ASGI middleware: requests by method, route template (not the path: ids would make a
    series each) and status, with latency; refused sends are also counted as refusals.
    Sits inside any middleware that copies the scope, so it sees the route the router set."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
            if method == "POST" and route in _SENDS and status >= 400:
                refused("http", status)


def certificate_expiry(cert_file: str) -> None:
    """Export when the PEM certificate (the first of the file) expires."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    with open(cert_file, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    TLS_EXPIRY.labels(subject[:200]).set(cert.not_valid_after_utc.timestamp())


# -- delivery ----------------------------------------------------------------------------------


def bounce(tenant: str, address: str, reason: str, source: str) -> None:
    """Count one classified bounce or complaint (``source``: delivery, or what came back)."""
    BOUNCES.labels(tenant, provider_of_address(address), reason, source[:32]).inc()


def mail_age(created_at: datetime, now: datetime | None = None) -> float:
    """Seconds since ``created_at`` (a naive time is taken as UTC)."""
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - created_at).total_seconds())


def attempt_outcomes(
    *,
    tenant: str,
    pool: str,
    source_ip: str,
    provider: str,
    created_at: datetime,
    results: Iterable[Any],
) -> None:
    """Count one delivery attempt's recipients (``RecipientResult``s): by tenant, by pool and
    source IP, deferrals by reason, and the time from acceptance of those now final."""
    now = datetime.now(UTC)
    for r in results:
        status = r.status.value
        ATTEMPTS.labels(pool, source_ip, provider, status).inc()
        OUTCOMES.labels(tenant, provider, status).inc()
        if status == "deferred":
            DEFERRALS.labels(pool, source_ip, provider, deferral_reason(r.reply)).inc()
        elif r.status.is_final:
            FINAL_SECONDS.labels(status, provider).observe(mail_age(created_at, now))


def transaction(pool: str, provider: str, seconds: float, attempt: Any) -> None:
    """Count one SMTP transaction (an ``Attempt``) and how long it took."""
    ATTEMPT_SECONDS.labels(pool, provider).observe(seconds)
    if attempt.reached:
        version = getattr(attempt, "tls_version", None)
        tls = version or ("unknown" if attempt.tls else "none")
        TRANSACTIONS.labels(provider, tls).inc()


# -- queue waits (wrapping consume() handlers) ------------------------------------------------


@dataclass
class _Taken:
    wait: float
    at: float  # monotonic


_last_taken: dict[str, _Taken] = {}


def observe_wait(queue: str, attempt: int, message: Any) -> None:
    """Record how old a job was when taken. Only first attempts: a retried job's enqueue time
    is not known, and its acceptance time would count the retry delays as queueing."""
    if attempt != 1:
        return
    clock = getattr(message, "created_at", None) or getattr(message, "at", None)
    if not isinstance(clock, datetime):
        return
    wait = mail_age(clock)
    QUEUE_WAIT.labels(queue).observe(wait)
    _last_taken[queue] = _Taken(wait, time.monotonic())


def waits(handler: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """A consume() handler that records the age of each job it takes (``observe_wait``)."""

    async def handle(delivery: Any) -> None:
        observe_wait(delivery.queue, delivery.attempt, delivery.message)
        await handler(delivery)

    return handle


# -- the census: what is read periodically -----------------------------------------------------


@dataclass
class QueueSeen:
    """What a census saw of a queue last time."""

    at: float  # monotonic
    depth: int
    taken: float  # this process's consume() count for the queue
    age: float | None


def oldest_job_age(
    prev: QueueSeen | None,
    *,
    now: float,
    depth: int,
    consumers: int,
    consuming: bool,
    taken: float,
    last_wait: float | None,
) -> float | None:
    """Estimate the age of the oldest job in a work queue (FIFO), without taking it.

    RabbitMQ tells only how many jobs wait, so the age is pieced together:

    - an empty queue: 0;
    - the queue moved since the last look (this process took jobs, or it got shorter): the
      age of the last job this process took on a first attempt (the head is no older), or 0;
    - it did not move and nobody else could have taken from it (no consumer, or this process
      is the only one): the same head is still there, so the last estimate plus the time
      since (starting from 0 when first seen waiting: a lower bound);
    - it did not move here but other processes consume it: None, theirs to tell.

    Reporters' estimates combine with ``max by (queue)``."""
    if depth == 0:
        return 0.0
    if prev is not None and (taken > prev.taken or depth < prev.depth):
        return last_wait if last_wait is not None else 0.0
    if consumers == 0 or (consuming and consumers == 1):
        if prev is None or prev.age is None:
            return 0.0
        return prev.age + max(0.0, now - prev.at)
    return None


def consumed_counts() -> dict[str, float]:
    """This process's consume() outcomes so far, per queue (any outcome: a job was taken)."""
    from shared.telemetry import CONSUMED

    counts: dict[str, float] = {}
    for family in CONSUMED.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                queue = sample.labels.get("queue", "")
                counts[queue] = counts.get(queue, 0.0) + sample.value
    return counts


class QueueProbe:
    """Passive declares (depth and consumers of a queue) on a connection of its own: a probe
    of a queue that does not exist closes its channel, and the service's own connection is
    the broker module's to manage. One connection per process, opened when first needed."""

    def __init__(self, settings: BrokerSettings, *, name: str) -> None:
        self.settings = settings
        self.name = name
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def _channel(self) -> aio_pika.abc.AbstractChannel:
        if self._connection is None or self._connection.is_closed:
            self._connection = None
            errors = []
            for url in self.settings.urls() or ["amqp://guest:guest@127.0.0.1:5672/"]:
                try:
                    self._connection = await aio_pika.connect(
                        url,
                        timeout=self.settings.connect_timeout,
                        client_properties={"connection_name": f"hato-{self.name}-metrics"},
                    )
                    break
                except Exception as exc:  # any node that does not answer: the next one
                    errors.append(repr(exc))
            if self._connection is None:
                raise ConnectionError(f"no broker for the queue probe: {'; '.join(errors)}")
        return await self._connection.channel()

    async def measure(self, queues: Iterable[str]) -> dict[str, tuple[int, int] | None]:
        """queue (without the prefix) → (jobs ready, consumers), None when it does not exist."""
        out: dict[str, tuple[int, int] | None] = {}
        channel = await self._channel()
        try:
            for queue in queues:
                try:
                    declared = await channel.declare_queue(
                        f"{self.settings.prefix}.{queue}", passive=True
                    )
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    out[queue] = None
                    channel = await self._channel()  # the broker closed that one
                    continue
                result = declared.declaration_result
                out[queue] = (result.message_count, result.consumer_count)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        return out

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def retry_queue(delay: float) -> str:
    """The TTL queue a retry after ``delay`` seconds waits in (named as the broker names it)."""
    return f"retry.{max(100, round(delay * 10) * 100)}"


def _is_work_queue(queue: str) -> bool:
    # Retry queues empty by their TTL and the dead-letter queue is read by people: the age
    # of a job in them says nothing about a stuck consumer.
    return not (queue.startswith("retry.") or queue == "dead")


class Census:
    """What a service reads periodically for its metrics: its dependencies, the queues it
    consumes or feeds, and whatever the service adds (``collectors``)."""

    def __init__(
        self,
        runtime: Any,  # shared.runtime.Runtime (not imported: it imports the broker)
        service: str,
        *,
        queues: Callable[[], Awaitable[Iterable[str]]],
        collectors: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.runtime = runtime
        self.service = service
        self.queues = queues
        self.collectors = list(collectors)
        self.probe = QueueProbe(runtime.settings.broker, name=service)
        self._seen: dict[str, QueueSeen] = {}
        self._reported: set[str] = set()

    async def run(self) -> None:
        """One look at everything; a part that fails is logged and leaves the others."""
        await self.dependencies()
        try:
            await self.backlog()
        except Exception as exc:
            log.warning("queue census failed", error=repr(exc))
            self._forget(set(self._reported))
        for collect in self.collectors:
            try:
                await collect()
            except Exception as exc:
                log.warning("metrics census failed", part=collect.__name__, error=repr(exc))

    async def dependencies(self) -> None:
        DEPENDENCY_UP.labels("broker").set(1 if self.runtime.broker.is_connected else 0)
        started = time.perf_counter()
        up = await self.runtime.store.ping()
        DEPENDENCY_UP.labels("store").set(1 if up else 0)
        if up:
            STORE_PING_SECONDS.set(time.perf_counter() - started)

    async def backlog(self) -> None:
        queues = sorted(set(await self.queues()))
        measured = await self.probe.measure(queues)
        now = time.monotonic()
        taken = consumed_counts()
        consuming = self.runtime.broker.consuming()
        gone = self._reported - {q for q, m in measured.items() if m is not None}
        self._forget(gone)
        for queue, found in measured.items():
            if found is None:
                continue
            depth, consumers = found
            QUEUE_MESSAGES.labels(queue).set(depth)
            QUEUE_CONSUMERS.labels(queue).set(consumers)
            self._reported.add(queue)
            if not _is_work_queue(queue):
                continue
            last = _last_taken.get(queue)
            prev = self._seen.get(queue)
            since = prev.at if prev is not None else 0.0
            age = oldest_job_age(
                prev,
                now=now,
                depth=depth,
                consumers=consumers,
                consuming=queue in consuming,
                taken=taken.get(queue, 0.0),
                last_wait=last.wait if last is not None and last.at >= since else None,
            )
            self._seen[queue] = QueueSeen(now, depth, taken.get(queue, 0.0), age)
            if age is None:
                with contextlib.suppress(KeyError):
                    QUEUE_OLDEST_AGE.remove(queue)
            else:
                QUEUE_OLDEST_AGE.labels(queue).set(age)

    def _forget(self, queues: set[str]) -> None:
        """Stale numbers are worse than none: drop what could not be measured."""
        for queue in queues:
            for gauge in (QUEUE_MESSAGES, QUEUE_CONSUMERS, QUEUE_OLDEST_AGE):
                with contextlib.suppress(KeyError):
                    gauge.remove(queue)
            self._seen.pop(queue, None)
        self._reported -= queues

    async def close(self) -> None:
        await self.probe.close()


def version() -> str:
    try:
        return importlib.metadata.version("hato")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def start_census(
    runtime: Any,
    service: str,
    interval: float,
    *,
    queues: Callable[[], Awaitable[Iterable[str]]],
    collectors: Sequence[Callable[[], Awaitable[None]]] = (),
) -> Census:
    """Say which service this process is, and take a census every ``interval`` seconds
    until the service stops (``Census.close`` afterwards)."""
    SERVICE_INFO.labels(service, version()).set(1)
    census = Census(runtime, service, queues=queues, collectors=collectors)
    runtime.every(interval, census.run)
    return census


# -- collectors of the services' own state -----------------------------------------------------


def warmup(pools: Iterable[Any], own_ips: Iterable[str], sent_today: Callable[[str], int]) -> None:
    """Messages sent today from this instance's IPs, and each one's warm-up cap and headroom
    in every pool it is a member of (``Pool``s of services/dispatcher/pools.py)."""
    mine = set(own_ips)
    today = datetime.now(UTC)
    for ip in mine:
        SENT_TODAY.labels(ip).set(sent_today(ip))
    for pool in pools:
        for member in pool.members:
            if member.ip not in mine:
                continue
            cap = member.daily_cap(today)
            if cap is None:
                for gauge in (WARMUP_CAP, WARMUP_HEADROOM):
                    with contextlib.suppress(KeyError):
                        gauge.remove(pool.name, member.ip)
                continue
            WARMUP_CAP.labels(pool.name, member.ip).set(cap)
            WARMUP_HEADROOM.labels(pool.name, member.ip).set(max(0, cap - sent_today(member.ip)))


async def dkim_keys(directory: Any, *, rotate_after_days: int) -> None:
    """Every non-retired DKIM key's age (a read of the domains; the census calls it)."""
    from shared import dkim

    DKIM_ROTATE_AFTER.set(rotate_after_days * 86400)
    docs = await directory.domains()
    now = datetime.now(UTC)
    rows = []
    for doc in docs:
        for key in doc.get("dkim") or []:
            status = dkim.status(key)
            if status == dkim.RETIRED:
                continue
            since = key.get("activated_at") if status == dkim.ACTIVE else None
            since = since or key.get("created_at")
            if not isinstance(since, datetime):
                continue
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            labels = (doc.get("tenant", ""), doc["_id"], key.get("selector", ""))
            rows.append((*labels, key.get("algorithm", ""), status, mail_age(since, now)))
    # No await from here on: a scrape never sees the gauge half rebuilt.
    DKIM_KEY_AGE.clear()
    for *labels, age in rows:
        DKIM_KEY_AGE.labels(*labels).set(age)

"""The broker's names and where each message goes: the AMQP headers Hato sets, the
exchanges and queues, and ``route()``.

Topology (every name carries the ``HATO_AMQP_PREFIX``, default ``hato``)::

    submit   (fanout)  ------------->  submit           platform teams → ingest (JSON, README)
    work     (direct)  --sign-------->  sign             ingest → signer
                       --results----->  results          dispatcher → bounce
                       --reports----->  reports          bounce listener → its consumer
    deliver  (direct)  --<pool>------>  deliver.<pool>   signer → dispatcher
    events   (topic)   --<tenant>.<type>-> any queue a platform team binds;
                       --#.dead_lettered-> events.store  (consume() has no store: bounce
                                                         writes these for it)
                       --<tenant>.<type>-> webhooks      bound by the bounce service for what
                                                         tenants' webhooks subscribed to
    retry.<ms> (fanout) ->  retry.<ms>  TTL <ms>, then dead-lettered through the default
                                        exchange back to the queue named by the routing key
    dead     (fanout)  ------------->  dead             what no consumer could process
                       ------------->  dead.watch       a copy of each, for the bounce service:
                                                         the dead_lettered event of a job
                                                         RabbitMQ itself dead-lettered
    control  (fanout)  ------------->  control.<service>.<id>  configuration changed: one
                                                         exclusive queue per running process
"""

from __future__ import annotations

from enum import StrEnum

from shared import logging as hlog
from shared import schemas
from shared.errors import (
    Unavailable,
)

log = hlog.get_logger(__name__)


ATTEMPT_HEADER = "x-hato-attempt"


ERRORS_HEADER = "x-hato-errors"


TRANSIENT_HEADER = "x-hato-transient"  # retries after the store or the broker failed


REASON_HEADER = "x-hato-reason"


QUEUE_HEADER = "x-hato-queue"


FAILED_AT_HEADER = "x-hato-failed-at"


# The traceparent of a job's first attempt: every retry's span links to it (span links, not
# parenthood: a retry is caused by the producer's publish like the first attempt was).
FIRST_ATTEMPT_HEADER = "x-hato-first-attempt"


# HMAC-SHA256 of the body under the seal key: what one Hato service hands another (jobs,
# results, events) is refused unless a holder of the key published it. A platform team that may
# publish to the broker cannot forge a sign job (and get mail signed with another tenant's
# key), a delivery job (and relay from the pool IPs), a result (and suppress a recipient) or
# an event (and reach a tenant's webhooks).
SEAL_HEADER = "x-hato-seal"


SEALED = (
    schemas.SignJob,
    schemas.SignBatch,
    schemas.DeliveryJob,
    schemas.DeliveryBatch,
    schemas.DeliveryResult,
    schemas.Event,
    schemas.ReportJob,
)


class Exchange(StrEnum):
    SUBMIT = "submit"
    WORK = "work"
    DELIVER = "deliver"
    EVENTS = "events"
    DEAD = "dead"
    CONTROL = "control"


class Queue(StrEnum):
    SUBMIT = "submit"
    SIGN = "sign"
    RESULTS = "results"
    REPORTS = "reports"
    EVENTS_STORE = "events.store"
    WEBHOOKS = "webhooks"
    DEAD = "dead"
    DEAD_WATCH = "dead.watch"


def retry_ms(delay: float) -> int:
    """The TTL of the retry queue that holds a job ``delay`` seconds (0.1 s steps)."""
    return max(100, round(delay * 10) * 100)


def retry_name(delay: float) -> str:
    """The retry queue (and exchange) of ``delay``, without the prefix."""
    return f"retry.{retry_ms(delay)}"


def deliver_queue(pool: str) -> str:
    """The queue of an IP pool's delivery jobs (before the prefix)."""
    return f"deliver.{pool}"


def ip_queue(pool: str, ip: str) -> str:
    """The queue of the jobs a pool's member IP was chosen for (before the prefix)."""
    return f"deliver.{pool}.ip.{ip}"


def route(message: schemas.BrokerMessage) -> tuple[Exchange, str]:
    """Where a message is published: the exchange and the routing key."""
    match message:
        case schemas.SignJob() | schemas.SignBatch():
            return Exchange.WORK, Queue.SIGN.value
        case schemas.DeliveryJob() | schemas.DeliveryBatch():
            return Exchange.DELIVER, message.pool
        case schemas.DeliveryResult():
            return Exchange.WORK, Queue.RESULTS.value
        case schemas.ReportJob():
            return Exchange.WORK, Queue.REPORTS.value
        case schemas.Event():
            return Exchange.EVENTS, f"{message.tenant}.{message.type.value}"
        case schemas.Changed():
            return Exchange.CONTROL, ""
    raise TypeError(f"no route for {type(message).__name__}")


NO_ROUTE = 312  # AMQP 0-9-1 reply code of a mandatory message no queue was bound for


DEAD_LETTERED = f"#.{schemas.EventType.DEAD_LETTERED.value}"


class NoRoute(Unavailable):
    """Raised when the broker returned a mandatory message: no queue is bound for its
    routing key (a pool's delivery queue that was never declared, say)."""

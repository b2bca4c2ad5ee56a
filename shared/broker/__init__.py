"""The broker, in one place: names, topology, publishing with confirms, and ``consume()``,
the same for every service.

- ``topology``: the names (exchanges, queues, headers) and ``route()``, where a message goes;
- ``client``: ``Broker``, the connection: declaring, publishing with confirms, failing over;
- ``consuming``: ``consume()`` and its ack policy, a part of ``Broker``;
- ``dead_letters``: dead letters for the bounce service and operators, a part of ``Broker``.

Services import what they need from here.
"""

from __future__ import annotations

from shared.broker.client import (
    RECONNECT_CAP,
    RENEW_PAUSE,
    Broker,
    redact,
    settle,
)
from shared.broker.consuming import (
    Consuming,
    Decoder,
    Delivery,
    Handler,
    undecoded,
)
from shared.broker.dead_letters import (
    RETRY_DROPS,
    SECRET_FIELDS,
    DeadLetters,
    Revival,
    broker_death,
    dead_lettered_event,
    dead_lettered_events,
    dead_messages,
    dead_reply,
    scrubbed,
)
from shared.broker.topology import (
    ATTEMPT_HEADER,
    DEAD_LETTERED,
    ERRORS_HEADER,
    FAILED_AT_HEADER,
    FIRST_ATTEMPT_HEADER,
    NO_ROUTE,
    QUEUE_HEADER,
    REASON_HEADER,
    SEAL_HEADER,
    SEALED,
    TRANSIENT_HEADER,
    Exchange,
    NoRoute,
    Queue,
    deliver_queue,
    ip_queue,
    retry_ms,
    retry_name,
    route,
)

__all__ = [
    "ATTEMPT_HEADER",
    "DEAD_LETTERED",
    "ERRORS_HEADER",
    "FAILED_AT_HEADER",
    "FIRST_ATTEMPT_HEADER",
    "NO_ROUTE",
    "QUEUE_HEADER",
    "REASON_HEADER",
    "RECONNECT_CAP",
    "RENEW_PAUSE",
    "RETRY_DROPS",
    "SEALED",
    "SEAL_HEADER",
    "SECRET_FIELDS",
    "TRANSIENT_HEADER",
    "Broker",
    "Consuming",
    "DeadLetters",
    "Decoder",
    "Delivery",
    "Exchange",
    "Handler",
    "NoRoute",
    "Queue",
    "Revival",
    "broker_death",
    "dead_lettered_event",
    "dead_lettered_events",
    "dead_messages",
    "dead_reply",
    "deliver_queue",
    "ip_queue",
    "redact",
    "retry_ms",
    "retry_name",
    "route",
    "scrubbed",
    "settle",
    "undecoded",
]

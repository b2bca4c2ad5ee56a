"""A platform team's place on the broker: the names its own queues must have, the RabbitMQ user
it connects as, and the permissions that user gets — enough to submit mail and to read its own
tenant's events, nothing of another tenant's or of Hato's own queues.

Names (``<prefix>`` is ``HATO_AMQP_PREFIX``, ``<tenant>`` the tenant's name):

- the team's queues: ``<prefix>.team.<tenant>.<anything>`` — it declares, binds, consumes and
  deletes only these, and ingest answers a submission only into one of them or into RabbitMQ's
  direct reply-to (``amq.rabbitmq.reply-to``);
- its RabbitMQ user: ``<prefix>.team.<tenant>``;
- it may publish to ``<prefix>.submit`` and bind to ``<prefix>.events`` with binding keys
  ``<tenant>.<event type>`` or ``<tenant>.*`` (RabbitMQ topic authorisation), never ``#``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Tenants with a team user: no dot (an event's routing key is "<tenant>.<type>", so a dot in
# a name would let one tenant's binding key reach another's events), nothing a regex reads.
TEAM_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"  # RabbitMQ's pseudo-queue; "…reply-to.<id>" on publish


def check_tenant(tenant: str) -> str:
    """``tenant`` if it can have a team user; ValueError otherwise."""
    if not TEAM_TENANT.fullmatch(tenant):
        raise ValueError(
            f"tenant {tenant!r} cannot have an AMQP team user: "
            "lowercase letters, digits, '-' and '_' only, no dot"
        )
    return tenant


def team_user(prefix: str, tenant: str) -> str:
    """The RabbitMQ user name of ``tenant``'s platform team."""
    return f"{prefix}.team.{tenant}"


def team_queue_prefix(prefix: str, tenant: str) -> str:
    """What the name of every queue of ``tenant``'s team starts with."""
    return f"{team_user(prefix, tenant)}."


def may_reply_to(reply_to: str, *, prefix: str, tenant: str | None) -> bool:
    """Whether ingest answers a submission of ``tenant`` (None: not authenticated) into the
    queue ``reply_to``: RabbitMQ's direct reply-to always (it reaches only the publisher's
    own channel), else only a queue of that tenant's team."""
    if reply_to == DIRECT_REPLY_TO or reply_to.startswith(DIRECT_REPLY_TO + "."):
        return True
    if tenant is None or not TEAM_TENANT.fullmatch(tenant):
        return False
    own = team_queue_prefix(prefix, tenant)
    return reply_to.startswith(own) and len(reply_to) > len(own)


@dataclass(frozen=True, slots=True)
class TeamPermissions:
    """RabbitMQ permissions (regexes over resource names in the vhost) and topic permissions
    (regexes over routing and binding keys on the events exchange) of a team user."""

    configure: str
    write: str
    read: str
    topic_exchange: str
    topic_read: str
    topic_write: str


def team_permissions(prefix: str, tenant: str) -> TeamPermissions:
    """What ``tenant``'s team user may do.

    configure: declare and delete its own queues. write: its own queues (binding needs write
    on the queue) and the submit exchange. read: its own queues (consume, get) and the events
    exchange (binding needs read on the exchange). Topic read on the events exchange: binding
    keys of its own tenant, one word after it (``acme.*``, ``acme.bounced``) — not ``#``, not
    ``acme.#``, whose words could reach a tenant named with a dot. Topic write: nothing.
    """
    check_tenant(tenant)
    own = re.escape(team_queue_prefix(prefix, tenant)) + ".+"
    submit, events = re.escape(f"{prefix}.submit"), re.escape(f"{prefix}.events")
    return TeamPermissions(
        configure=f"^{own}$",
        write=f"^({own}|{submit})$",
        read=f"^({own}|{events})$",
        topic_exchange=f"{prefix}.events",
        topic_read=rf"^{re.escape(tenant)}\.[^.#]+$",
        topic_write="^$",
    )

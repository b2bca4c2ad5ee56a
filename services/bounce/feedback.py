"""Acting on what came back: a classified bounce or complaint updates the recipient's state,
is recorded and published as an event, and feeds the tenant's suppression list.

- reasons marked ``suppress = "at once"`` in reasons.toml (``userunknown``, ``hostunknown``,
  ``feedback`` ...) suppress at once and for good;
- reasons marked ``suppress = "repeated"`` (``mailboxfull``, ``suspend``, ``filtered`` ..., and
  an "at once" reason with a 4xx code or an ambiguous verdict) suppress after ``soft_limit``
  of them within the window, for ``soft_days``;
- blocks, spam and policy refusals, rate limits never suppress (they are about the sender or
  the message, not the mailbox); they stay visible per destination in the events;
- ``vacation`` and ``delivered`` are no bounces: they change nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from prometheus_client import Counter

from shared import logging as hlog
from shared import metrics
from shared.bounces.classify import FEEDBACK as COMPLAINT
from shared.bounces.classify import NOT_BOUNCES, Verdict
from shared.broker import Broker
from shared.domains import domain_of
from shared.schemas import Event, EventType, RecipientStatus, Reply, utcnow
from shared.timeline import EventLog, Timeline

log = hlog.get_logger(__name__)

FEEDBACK = Counter(
    "hato_bounce_feedback_total", "Bounces and complaints applied, by reason.", ["reason"]
)


@dataclass(frozen=True, slots=True)
class Addressee:
    """The recipient a bounce or complaint is about."""

    tenant: str
    message_id: str
    recipient_id: str
    address: str
    tags: tuple[str, ...] = ()  # the message's, for the events
    metadata: dict[str, str] = field(default_factory=dict)


class FeedbackMessages(Protocol):
    """A recipient's state when something came back (``shared.messages.Messages``)."""

    async def mark_feedback(
        self, recipient_id: str, status: RecipientStatus, reply: Reply
    ) -> None: ...


class FeedbackSuppressions(Protocol):
    """The suppression list, fed (``shared.suppressions.Suppressions``)."""

    async def suppress(
        self,
        tenant: str,
        address: str,
        *,
        reason: str,
        source: str,
        expires_at: datetime | None = None,
    ) -> None: ...

    async def soft_bounce(
        self, tenant: str, address: str, *, window: timedelta, key: str = ""
    ) -> int: ...


class FeedbackRecords(Protocol):
    """What acting on a bounce or complaint writes: the service passes its ``Store``; unit
    tests pass a small fake."""

    @property
    def events(self) -> EventLog: ...

    @property
    def messages(self) -> FeedbackMessages: ...

    @property
    def suppressions(self) -> FeedbackSuppressions: ...


class Feedback:
    def __init__(
        self,
        store: FeedbackRecords,
        broker: Broker,
        *,
        soft_limit: int,
        soft_window: timedelta,
        soft_days: float,
    ) -> None:
        self.store = store
        self.timeline = Timeline(store.events, broker)
        self.soft_limit = soft_limit
        self.soft_window = soft_window
        self.soft_days = soft_days

    async def apply(self, target: Addressee, verdict: Verdict, *, source: str) -> None:
        complaint = verdict.reason == COMPLAINT
        status = RecipientStatus.COMPLAINED if complaint else RecipientStatus.BOUNCED
        reply = Reply(
            code=550 if verdict.status.startswith("5") or complaint else 450,
            enhanced=verdict.status,
            text=verdict.diagnostic[:500],
        )
        if verdict.reason not in NOT_BOUNCES:
            await self.store.messages.mark_feedback(target.recipient_id, status, reply)
        suppressed = await self.suppress(target, verdict, source)
        FEEDBACK.labels(verdict.reason).inc()
        metrics.bounce(target.tenant, target.address, verdict.reason, source)
        if complaint or verdict.reason not in NOT_BOUNCES:
            provider = metrics.provider_of_address(target.address)
            status = "complained" if complaint else "bounced"
            metrics.OUTCOMES.labels(target.tenant, provider, status).inc()
        log.info(
            "feedback",
            reason=verdict.reason,
            recipient_id=target.recipient_id,  # not the address: none at info level
            suppressed=suppressed,
            source=source,
        )
        event_type = (
            EventType.COMPLAINED
            if complaint
            else EventType.BOUNCED
            if verdict.reason not in NOT_BOUNCES
            else None
        )
        events = []
        if event_type is not None:
            events.append(self._event(target, event_type, reply, verdict, source))
        if suppressed:
            events.append(self._event(target, EventType.SUPPRESSED, reply, verdict, source))
        await self.timeline.record(events)

    async def suppress(self, target: Addressee, verdict: Verdict, source: str) -> bool:
        if verdict.suppress is True:
            await self.store.suppressions.suppress(
                target.tenant, target.address, reason=verdict.reason, source=source
            )
            return True
        if verdict.suppress == "repeated":
            n = await self.store.suppressions.soft_bounce(
                target.tenant,
                target.address,
                window=self.soft_window,
                key=_key(target, verdict, source),
            )
            if n >= self.soft_limit:
                await self.store.suppressions.suppress(
                    target.tenant,
                    target.address,
                    reason=f"{verdict.reason} x{n}",
                    source=source,
                    expires_at=utcnow() + timedelta(days=self.soft_days),
                )
                return True
        return False

    @staticmethod
    def _event(
        target: Addressee, type_: EventType, reply: Reply, verdict: Verdict, source: str
    ) -> Event:
        return Event.of(
            type_,
            tenant=target.tenant,
            message_id=target.message_id,
            recipient_id=target.recipient_id,
            address=target.address,
            # The same report applied twice (a redelivered result, a resent DSN) is one event.
            step=(_key(target, verdict, source),),
            reply=reply,
            detail={
                "reason": verdict.reason,
                "hard": verdict.hard,
                "ambiguous": verdict.ambiguous,
                "source": source,
                "domain": domain_of(target.address),
            },
            tags=target.tags,
            metadata=target.metadata,
        )


def _key(target: Addressee, verdict: Verdict, source: str) -> str:
    """What makes one bounce of a recipient this bounce: a report applied again has the same."""
    said = f"{source}|{verdict.status}|{verdict.reason}|{verdict.diagnostic}".encode()
    return f"{target.recipient_id}:{hashlib.sha256(said).hexdigest()[:16]}"

"""The signer service: sign each message once, then one delivery job per destination domain."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from itertools import islice

from prometheus_client import Counter

from services.signer.settings import SignerSettings
from services.signer.signing import KeyRing, sign
from shared import logging as hlog
from shared.broker import Broker, Delivery, Queue
from shared.errors import Permanent, Unavailable
from shared.ids import new_id
from shared.runtime import Runtime
from shared.schemas import DeliveryJob, Event, EventType, Recipient, Reply, SignJob
from shared.secrets import SecretBox
from shared.store import Store

log = hlog.get_logger(__name__)

SIGNED = Counter(
    "hato_signer_messages_total", "Messages handled by the signer, by outcome.", ["outcome"]
)


def fan_out(job: SignJob, *, per_job: int) -> list[DeliveryJob]:
    """One delivery job per destination domain, at most ``per_job`` recipients each."""
    by_domain: dict[str, list[Recipient]] = defaultdict(list)
    for r in job.recipients:
        by_domain[r.domain].append(r)
    jobs = []
    for domain, recipients in by_domain.items():
        it = iter(recipients)
        while chunk := tuple(islice(it, per_job)):
            jobs.append(
                DeliveryJob(
                    message_id=job.message_id,
                    tenant=job.tenant,
                    mail_from=job.mail_from,
                    domain=domain,
                    recipients=chunk,
                    pool=job.pool,
                    created_at=job.created_at,
                )
            )
    return jobs


class Signer:
    def __init__(
        self, store: Store, broker: Broker, keys: KeyRing, *, settings: SignerSettings
    ) -> None:
        self.store = store
        self.broker = broker
        self.keys = keys
        self.settings = settings

    async def handle(self, delivery: Delivery) -> None:
        job = delivery.message
        if not isinstance(job, SignJob):
            raise Permanent(f"expected a sign job, got {type(job).__name__}")
        key = await self.keys.for_domain(job.from_domain)
        if key is None:
            if self.settings.unsigned_policy == "fail":
                await self._fail(job, f"no DKIM key for {job.from_domain}")
                return
            signed, dkim_info, event = delivery.payload, None, EventType.UNSIGNED
        else:
            signed = await asyncio.to_thread(sign, delivery.payload, key)
            dkim_info = {"domain": key.domain, "selector": key.selector, "algorithm": key.algorithm}
            event = EventType.SIGNED

        if not await self.store.mark_signed(job.message_id, dkim_info):
            # Ingest removes the state of a message whose acceptance failed.
            raise Permanent("no message state: its acceptance did not complete")

        jobs = fan_out(job, per_job=self.settings.max_recipients_per_job)
        await asyncio.gather(*(self.broker.publish(j, signed) for j in jobs))
        SIGNED.labels(event.value).inc()
        log.info("signed", dkim=dkim_info, jobs=len(jobs))
        await self._emit(job, event, dkim_info or {"reason": f"no key for {job.from_domain}"})

    async def _fail(self, job: SignJob, reason: str) -> None:
        await self.store.fail_message(
            job.message_id, Reply(code=554, enhanced="5.7.0", text=reason)
        )
        SIGNED.labels("failed").inc()
        await self._emit(job, EventType.FAILED, {"reason": reason}, per_recipient=True)

    async def _emit(
        self, job: SignJob, type_: EventType, detail: dict, *, per_recipient: bool = False
    ) -> None:
        targets = job.recipients if per_recipient else (None,)
        try:
            await self.broker.emit(
                Event(
                    id=new_id(),
                    type=type_,
                    message_id=job.message_id,
                    tenant=job.tenant,
                    recipient_id=r.id if r else None,
                    address=r.address if r else None,
                    detail=detail,
                )
                for r in targets
            )
        except Unavailable:
            log.warning("event not published", type=type_.value)


async def run(settings: SignerSettings) -> None:
    box = SecretBox.from_settings(settings.secrets)
    async with Runtime("signer", settings, pools=settings.pools) as rt:
        keys = KeyRing(rt.store, box, ttl=settings.key_cache_seconds)
        await rt.broker.consume(
            Queue.SIGN, Signer(rt.store, rt.broker, keys, settings=settings).handle
        )
        rt.serving()
        log.info("ready", ops_port=rt.ops.port)
        await rt.until_stopped()

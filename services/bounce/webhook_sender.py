"""Webhook delivery: events go into each matching endpoint's outbox (MongoDB), and a worker
POSTs them in signed batches with retries and back-off. The mail pipeline only ever writes to
the outbox, so a slow or dead endpoint delays nothing but its own deliveries. With several
bounce replicas, each endpoint is sent to by one of them at a time (a lease per endpoint)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import httpx
from prometheus_client import Counter

from shared import logging as hlog
from shared.broker import Broker, Delivery, Queue
from shared.errors import Permanent
from shared.leases import Leases
from shared.schemas import Event
from shared.secrets import SecretBox
from shared.webhooks import SIGNATURE_HEADER, Webhooks, sign

log = hlog.get_logger(__name__)

POSTS = Counter("hato_webhook_posts_total", "Webhook POSTs, by outcome.", ["outcome"])
BACKOFF = (1, 5, 30, 120, 600, 1800, 3600, 7200)  # seconds before each retry


def binding_keys(hooks: list[dict[str, Any]]) -> set[str]:
    """The events-exchange routing keys (``<tenant>.<type>``) that tenants' webhooks want."""
    keys: set[str] = set()
    for hook in hooks:
        types = hook.get("events") or ["*"]  # none named: every event of the tenant
        keys |= {f"{hook['tenant']}.{t}" for t in types}
    return keys


class WebhookBindings:
    """The webhook queue is bound to just the events some tenant's webhook subscribed to, so
    mail of tenants without webhooks never reaches the router. ``sync`` follows webhooks
    added and removed; the keys bound are kept in the database, so a restart unbinds what is
    no longer wanted."""

    def __init__(self, broker: Broker, webhooks: Webhooks) -> None:
        self.broker = broker
        self.webhooks = webhooks

    async def sync(self) -> None:
        wanted = binding_keys(await self.webhooks.of())
        stale = await self.webhooks.bound_keys() - wanted
        await self.broker.bind_events(Queue.WEBHOOKS, sorted(wanted))  # idempotent
        await self.broker.bind_events(Queue.WEBHOOKS, sorted(stale), bound=False)
        await self.webhooks.set_bound_keys(wanted)


class WebhookRouter:
    """Consumes the events the webhook queue is bound to; puts each into the outbox of every
    endpoint of its tenant that wants it (a binding may take more: this is the filter)."""

    def __init__(self, webhooks: Webhooks, *, refresh: float = 5.0) -> None:
        self.webhooks = webhooks
        self.refresh = refresh
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    def forget(self) -> None:
        self._cache.clear()

    async def hooks(self, tenant: str) -> list[dict[str, Any]]:
        hit = self._cache.get(tenant)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        hooks = await self.webhooks.of(tenant)
        self._cache[tenant] = (time.monotonic() + self.refresh, hooks)
        return hooks

    async def handle(self, delivery: Delivery) -> None:
        event = delivery.message
        if not isinstance(event, Event):
            raise Permanent(f"expected an event, got {type(event).__name__}")
        for hook in await self.hooks(event.tenant):
            if not hook.get("events") or event.type.value in hook["events"]:
                await self.webhooks.enqueue(hook["_id"], [event.model_dump(mode="json")])


class WebhookSender:
    """Sends the outbox: each pass reads the due deliveries and POSTs them, endpoint by
    endpoint, in batches.

    An endpoint's deliveries are sent only by the bounce replica holding its lease
    (``webhook:<id>``): every replica's pass reads the same due deliveries, and without a
    claim two replicas would POST every event twice. A lease per endpoint, rather than one
    for the whole outbox, lets replicas share the endpoints while one endpoint still gets
    its events in order, one POST at a time. The holder keeps the lease while the endpoint
    has work. A replica reads the deliveries again once it holds the lease, so that what
    the previous holder sent just before is not sent again."""

    def __init__(
        self,
        webhooks: Webhooks,
        box: SecretBox,
        leases: Leases,
        *,
        timeout: float = 5.0,
        batch: int = 50,
        backoff: Sequence[float] = BACKOFF,
        parallel: int = 10,
    ) -> None:
        self.webhooks = webhooks
        self.box = box
        self.leases = leases
        self.timeout = timeout
        self.batch = batch
        self.backoff = tuple(backoff)
        self._limit = asyncio.Semaphore(parallel)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def close(self) -> None:
        await self._client.aclose()

    async def run_once(self) -> None:
        due = await self.webhooks.due()
        by_hook: dict[str, list[str]] = defaultdict(list)
        for item in due:
            by_hook[item["webhook"]].append(item["_id"])
        await asyncio.gather(*(self._claim(h, ids) for h, ids in by_hook.items()))

    async def _claim(self, hook_id: str, ids: list[str]) -> None:
        async with self._limit:
            lease = self.leases.lease(f"webhook:{hook_id}")
            await lease.run(lambda: self._deliver(hook_id, ids))

    async def _deliver(self, hook_id: str, ids: list[str]) -> None:
        items = await self.webhooks.still_due(ids)
        if not items:
            return
        hook = await self.webhooks.get(hook_id)
        if hook is None:  # the endpoint was removed
            await self.webhooks.settle(
                [i["_id"] for i in items],
                ok=False,
                status=None,
                error="webhook removed",
                attempts=0,
                backoff=None,
            )
            return
        secret = self.box.open(hook["secret_sealed"]).decode()
        for start in range(0, len(items), self.batch):
            await self._post(hook, secret, items[start : start + self.batch])

    async def _post(self, hook: dict[str, Any], secret: str, chunk: list[dict[str, Any]]) -> None:
        body = json.dumps({"events": [i["event"] for i in chunk]}, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, body),
            "Hato-Webhook-Id": hook["_id"],
            "User-Agent": "Hato-Webhooks/1",
        }
        status, error = None, ""
        try:
            response = await self._client.post(hook["url"], content=body, headers=headers)
            status = response.status_code
            ok = 200 <= status < 300
            if not ok:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"[:300]
        attempts = max(i.get("attempts", 0) for i in chunk) + 1
        backoff = None if ok or attempts > len(self.backoff) else self.backoff[attempts - 1]
        POSTS.labels("ok" if ok else ("retry" if backoff is not None else "failed")).inc()
        if not ok:
            log.info(
                "webhook delivery failed",
                webhook=hook["_id"],
                error=error,
                attempts=attempts,
                retry_in=backoff,
            )
        await self.webhooks.settle(
            [i["_id"] for i in chunk],
            ok=ok,
            status=status,
            error=error,
            attempts=attempts,
            backoff=backoff,
        )

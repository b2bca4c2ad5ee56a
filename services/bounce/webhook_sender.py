"""Webhook delivery: events go into each matching endpoint's outbox (MongoDB), and a worker
POSTs them in signed batches with retries and back-off. The mail pipeline only ever writes to
the outbox, so a slow or dead endpoint delays nothing but its own deliveries. With several
bounce replicas, each endpoint is sent to by one of them at a time (a lease per endpoint)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

import httpx
from cachetools import TTLCache
from opentelemetry.trace import Span, SpanKind, StatusCode
from prometheus_client import Counter

from shared import logging as hlog
from shared import webhook_formats
from shared.broker import Broker, Delivery, Queue
from shared.egress import Egress, Forbidden
from shared.errors import Permanent
from shared.leases import Leases
from shared.schemas import Event
from shared.secrets import SecretBox
from shared.telemetry import context_of, inject_headers, links_to, traceparent, tracer
from shared.webhook_formats import WebhookFormat
from shared.webhooks import SIGNATURE_HEADER, Webhooks, sign

log = hlog.get_logger(__name__)

POSTS = Counter("hato_webhook_posts_total", "Webhook POSTs, by outcome.", ["outcome"])
BACKOFF = (1, 5, 30, 120, 600, 1800, 3600, 7200)  # seconds before each retry
# Where an outbox entry keeps the trace context of the event it holds (the router's span),
# so that the POST, seconds or hours later, continues the mail's trace. Never POSTed.
TRACE_KEY = "_traceparent"
CACHED_TENANTS = 10_000  # tenants whose endpoints the router keeps at most
# What the delivery log says when no status came back: the same words whatever the cause.
REFUSED = "the endpoint's address is not allowed"
NO_ANSWER = "no answer from the endpoint"
NO_ANSWER_IN_TIME = "no answer from the endpoint in time"


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
        self._cache: TTLCache[str, list[dict[str, Any]]] = TTLCache(CACHED_TENANTS, refresh)

    def forget(self) -> None:
        self._cache.clear()

    async def hooks(self, tenant: str) -> list[dict[str, Any]]:
        hooks = self._cache.get(tenant)
        if hooks is None:
            hooks = self._cache[tenant] = await self.webhooks.of(tenant)
        return hooks

    async def handle(self, delivery: Delivery) -> None:
        event = delivery.message
        if not isinstance(event, Event):
            raise Permanent(f"expected an event, got {type(event).__name__}")
        parent = traceparent()
        for hook in await self.hooks(event.tenant):
            if not hook.get("events") or event.type.value in hook["events"]:
                entry = event.model_dump(mode="json")
                if parent:
                    entry[TRACE_KEY] = parent
                await self.webhooks.enqueue(hook["_id"], [entry])


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
        per_tenant: int = 2,
        egress: Egress | None = None,
    ) -> None:
        self.webhooks = webhooks
        self.box = box
        self.leases = leases
        self.timeout = timeout  # for the whole POST, from connecting to the status line
        self.batch = batch
        self.backoff = tuple(backoff)
        self.egress = egress or Egress()
        self._limit = asyncio.Semaphore(parallel)
        # One tenant's many or slow endpoints cannot take every sending slot.
        self._per_tenant = per_tenant
        self._tenants: dict[str, asyncio.Semaphore] = {}
        # No redirects: a 3xx is a failure, never a second request somewhere else.
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
        fmt = WebhookFormat(hook.get("format", WebhookFormat.HATO))
        batch = 1 if fmt.one_per_post else self.batch
        tenant = self._tenants.setdefault(hook["tenant"], asyncio.Semaphore(self._per_tenant))
        with hlog.bound(tenant=hook["tenant"], webhook=hook["_id"]):
            async with tenant:
                for start in range(0, len(items), batch):
                    await self._post(hook, secret, items[start : start + batch])

    def _bodies(
        self, hook: dict[str, Any], secret: str, events: list[dict[str, Any]]
    ) -> list[tuple[bytes, dict[str, str]]]:
        """The POSTs of ``events`` in the endpoint's format, with their signature headers."""
        fmt = WebhookFormat(hook.get("format", WebhookFormat.HATO))
        if fmt is WebhookFormat.HATO:
            body = json.dumps({"events": events}, separators=(",", ":")).encode()
            return [(body, {SIGNATURE_HEADER: sign(secret, body)})]
        key = self.box.open(hook["key_sealed"]) if "key_sealed" in hook else None
        return webhook_formats.posts(fmt, events, secret=secret, key_pem=key)

    async def _post(self, hook: dict[str, Any], secret: str, chunk: list[dict[str, Any]]) -> None:
        events = [{k: v for k, v in i["event"].items() if k != TRACE_KEY} for i in chunk]
        common = {
            "Content-Type": "application/json",
            "Hato-Webhook-Id": hook["_id"],
            "User-Agent": "Hato-Webhooks/1",
        }
        if "basic_sealed" in hook:
            credentials = base64.b64encode(self.box.open(hook["basic_sealed"])).decode()
            common["Authorization"] = f"Basic {credentials}"
        message_ids = sorted(
            {i["event"]["message_id"] for i in chunk if i["event"].get("message_id")}
        )
        with _post_span(hook, chunk, message_ids) as span:
            ok, status, error = True, None, ""
            # A format with no word for these events sends nothing: they are settled as
            # delivered (there is nothing to retry).
            for body, signature in self._bodies(hook, secret, events):
                ok, status, error = await self._request(hook["url"], body, common | signature)
                if not ok:
                    break
            attempts = max(i.get("attempts", 0) for i in chunk) + 1
            backoff = None if ok or attempts > len(self.backoff) else self.backoff[attempts - 1]
            POSTS.labels("ok" if ok else ("retry" if backoff is not None else "failed")).inc()
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if not ok:
                span.set_status(StatusCode.ERROR, error)
                log.info(
                    "webhook delivery failed",
                    webhook=hook["_id"],
                    message_ids=message_ids,
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

    async def _request(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[bool, int | None, str]:
        """POST ``body`` with the current span's ``traceparent`` (the receiver's work joins
        the mail's trace): (2xx, the status, an error).

        The URL's host is resolved and checked again now (it may point elsewhere than when
        the webhook was added) and the request goes to the checked address. The whole POST
        has ``timeout`` seconds, and the reply's body is never read: only its status counts.
        The errors are the same few words whatever failed underneath, for they are the
        tenant's to read, and a tenant must not learn how Hato's network answers."""
        try:
            target, host, extensions = await self.egress.pinned(url)
        except Forbidden:
            return False, None, REFUSED
        try:
            async with asyncio.timeout(self.timeout):
                request = self._client.build_request(
                    "POST",
                    target,
                    content=body,
                    headers=inject_headers({**headers, **host}),
                    extensions=extensions,
                )
                response = await self._client.send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return False, None, NO_ANSWER_IN_TIME
        except httpx.HTTPError:
            return False, None, NO_ANSWER
        ok = 200 <= response.status_code < 300
        return ok, response.status_code, "" if ok else f"HTTP {response.status_code}"


def _post_span(
    hook: dict[str, Any], chunk: list[dict[str, Any]], message_ids: list[str]
) -> AbstractContextManager[Span]:
    """The span of one webhook POST: it continues the trace of the first event's mail; the
    events of other mails in the batch are linked."""
    parents = [p for i in chunk if (p := i["event"].get(TRACE_KEY))]
    first = parents[0] if parents else None
    others = {_trace_of(p): p for p in reversed(parents)}
    others.pop(_trace_of(first), None)
    url = httpx.URL(hook["url"])
    return tracer.start_as_current_span(
        "webhook POST",
        context=context_of(first),
        kind=SpanKind.CLIENT,
        links=links_to(*others.values()),
        attributes={
            "http.request.method": "POST",
            # Not the full URL: a tenant's endpoint may carry a token in it.
            "server.address": url.host,
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            "url.path": url.path,
            "hato.webhook.id": hook["_id"],
            "hato.tenant": hook["tenant"],
            "hato.events": len(chunk),
            "hato.message_ids": message_ids,
        },
    )


def _trace_of(parent: str | None) -> str:
    """The trace id of a ``traceparent`` ("" for none)."""
    return parent.split("-")[1] if parent and parent.count("-") >= 2 else ""

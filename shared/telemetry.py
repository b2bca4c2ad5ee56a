"""Tracing (OpenTelemetry, W3C trace context carried in AMQP headers) and Prometheus metrics
shared by all services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from prometheus_client import Counter, Histogram

tracer = trace.get_tracer("hato")

CONSUMED = Counter(
    "hato_consumed_messages_total",
    "Broker messages handled by consume(), by queue and outcome.",
    ["queue", "outcome"],
)
HANDLE_SECONDS = Histogram(
    "hato_handle_seconds", "Time a consumer's handler took, by queue.", ["queue"]
)
PUBLISHED = Counter(
    "hato_published_messages_total",
    "Broker messages published and confirmed, by exchange.",
    ["exchange"],
)
PUBLISH_FAILURES = Counter(
    "hato_publish_failures_total", "Publishes that were not confirmed, by exchange.", ["exchange"]
)


def configure_tracing(service: str, *, otlp_endpoint: str = "") -> TracerProvider:
    """Install the SDK tracer provider; spans go out over OTLP/HTTP when an endpoint is set.
    Without one nothing is recorded (recording spans nobody exports cost every message
    tens of microseconds), but trace context still travels: a caller's trace id reaches
    every service and its logs."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"hato-{service}"}),
        sampler=ParentBased(ALWAYS_ON) if otlp_endpoint else ALWAYS_OFF,
    )
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces"))
        )
    trace.set_tracer_provider(provider)
    return provider


def inject_headers(headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """Headers with the current trace context (``traceparent``/``tracestate``) added."""
    carrier: dict[str, Any] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, Any] | None) -> otel_context.Context:
    """The trace context a producer put in AMQP headers (bytes values are decoded)."""
    carrier = {
        k: (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in (headers or {}).items()
        if k in ("traceparent", "tracestate", "baggage")
    }
    return propagate.extract(carrier)

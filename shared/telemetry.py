"""Tracing (OpenTelemetry, W3C trace context carried in AMQP headers) and Prometheus metrics
shared by all services."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from prometheus_client import Counter, Histogram

tracer = trace.get_tracer("hato")
_recording: bool | None = None  # configure_tracing's: does this process export spans?

CONSUMED = Counter(
    "hato_consumed_messages_total",
    "Broker messages handled by consume(), by queue and outcome (outcome dead also counts the "
    "jobs RabbitMQ dead-lettered itself, counted by the bounce service).",
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
    global _recording
    _recording = bool(otlp_endpoint)
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


def inner_span(name: str, **kwargs: Any) -> AbstractContextManager[trace.Span]:
    """A span inside a handler's own (``tracer.start_as_current_span``'s arguments); in a
    process that exports no spans, the current span stands for it. The trace id is the same
    either way, and making the ids of a span nobody records costs each mail ~15 µs a span."""
    if _recording is False:
        return nullcontext(trace.get_current_span())
    return tracer.start_as_current_span(name, **kwargs)


def consumer_span(
    name: str, headers: Mapping[str, Any], first_attempt: str | None, attributes: dict[str, Any]
) -> AbstractContextManager[trace.Span]:
    """The span of handling a broker message, a child of the producer's context in
    ``headers`` and linked to the first attempt's span. In a process that exports no spans,
    the producer's span stands for it when the headers name one (the trace id is the same,
    and the handler's publishes carry it on); a new one is made only when they don't."""
    parent = extract_context(headers)
    if _recording is False:
        span = trace.get_current_span(parent)
        if span.get_span_context().is_valid:
            return _attached(parent, span)
    return tracer.start_as_current_span(
        name,
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
        links=links_to(first_attempt, **{"hato.link": "first attempt"}) if first_attempt else None,
    )


@contextmanager
def _attached(ctx: otel_context.Context, span: trace.Span) -> Iterator[trace.Span]:
    token = otel_context.attach(ctx)
    try:
        yield span
    finally:
        otel_context.detach(token)


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


def traceparent(span: trace.Span | None = None) -> str | None:
    """The W3C ``traceparent`` of ``span`` (default: the current one), or None when there is
    no valid span (no SDK configured). Also without an OTLP endpoint: ids are made anyway,
    so logs and stored records can name the trace."""
    ctx = (span or trace.get_current_span()).get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def trace_id(span: trace.Span | None = None) -> str | None:
    """The current (or ``span``'s) trace id as 32 hex digits, or None."""
    ctx = (span or trace.get_current_span()).get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None


def context_of(parent: str | None) -> otel_context.Context | None:
    """A context whose parent is the span a stored ``traceparent`` names (None: none), to
    continue a mail's trace from its record (a bounce arriving days later)."""
    if not parent:
        return None
    ctx = propagate.extract({"traceparent": parent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def links_to(*parents: str | None, **attributes: Any) -> list[trace.Link]:
    """Span links to the spans these ``traceparent`` values name (the invalid ones skipped)."""
    links = []
    for parent in parents:
        ctx = context_of(parent)
        if ctx is not None:
            links.append(trace.Link(trace.get_current_span(ctx).get_span_context(), attributes))
    return links

"""Trace context as Hato keeps and passes it: a message record's ``traceparent`` continues the
mail's trace later, links name earlier spans, and every log line names the current trace."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from shared import logging as hlog
from shared.telemetry import context_of, links_to, trace_id, traceparent
from shared.views import _message

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_traceparent_names_the_current_span() -> None:
    """``traceparent()``/``trace_id()`` of the current span: W3C format, None outside any."""
    assert traceparent() is None and trace_id() is None
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("accept") as span:
        ctx = span.get_span_context()
        assert traceparent() == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"
        assert trace_id() == f"{ctx.trace_id:032x}"


def test_ids_exist_without_an_exporter() -> None:
    """With nothing exported (the sampler drops every span) a span still has ids: the message
    record and the log lines name a trace, and a caller's trace id goes on."""
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with tracer.start_as_current_span("accept", context=context_of(PARENT)) as span:
        assert not span.is_recording()
        assert trace_id() == PARENT.split("-")[1]
        assert traceparent() != PARENT  # a span of its own under the caller's


def test_a_stored_traceparent_continues_the_trace() -> None:
    """``context_of`` makes the stored span the parent of a later one (a bounce days later);
    nothing or garbage gives no context (a new trace)."""
    tracer = TracerProvider(sampler=ALWAYS_ON).get_tracer("test")
    with tracer.start_as_current_span("bounce matched", context=context_of(PARENT)) as span:
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == PARENT.split("-")[2]
        assert f"{span.get_span_context().trace_id:032x}" == PARENT.split("-")[1]
    assert context_of(None) is None
    assert context_of("") is None
    assert context_of("not-a-traceparent") is None


def test_links_name_the_spans_and_skip_what_is_no_traceparent() -> None:
    """``links_to`` makes one link per valid ``traceparent``, with the attributes given."""
    links = links_to(PARENT, None, "garbage", **{"hato.link": "first attempt"})
    assert [(f"{x.context.span_id:016x}", dict(x.attributes)) for x in links] == [
        (PARENT.split("-")[2], {"hato.link": "first attempt"})
    ]
    assert links[0].context.is_remote


def test_log_lines_carry_the_trace_and_span() -> None:
    """The logging processor adds ``trace_id`` and ``span_id`` of the current span, keeps
    what a line already says, and adds nothing outside a span."""
    assert hlog.add_trace(None, "info", {"event": "x"}) == {"event": "x"}
    tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with tracer.start_as_current_span("s", context=context_of(PARENT)) as span:
        line = hlog.add_trace(None, "info", {"event": "x"})
        assert line["trace_id"] == PARENT.split("-")[1]
        assert line["span_id"] == f"{span.get_span_context().span_id:016x}"
        assert hlog.add_trace(None, "info", {"trace_id": "given"})["trace_id"] == "given"
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_message_shows_its_trace_id_not_its_traceparent() -> None:
    """The API's and CLI's view of a message names its trace (null before traces were kept);
    the stored span id is Hato's own."""
    doc = {"_id": "m1", "tenant": "acme", "trace_id": "abc", "traceparent": PARENT}
    assert _message(doc) == {"id": "m1", "tenant": "acme", "trace_id": "abc"}
    assert _message({"_id": "m2"})["trace_id"] is None


def test_inner_spans_are_made_only_where_spans_are_exported(monkeypatch) -> None:
    """Without an exporter a handler's inner span is its own span (same ids, nothing made);
    with one, or before tracing is configured, it is a new child in the same trace."""
    from shared import telemetry

    outer_tracer = TracerProvider(sampler=ALWAYS_OFF).get_tracer("test")
    with outer_tracer.start_as_current_span("process") as outer:
        monkeypatch.setattr(telemetry, "_recording", False)
        with telemetry.inner_span("dkim sign") as inner:
            assert inner is outer
        monkeypatch.setattr(telemetry, "_recording", True)
        monkeypatch.setattr(telemetry, "tracer", outer_tracer)
        with telemetry.inner_span("dkim sign") as inner:
            assert inner is not outer
            assert inner.get_span_context().trace_id == outer.get_span_context().trace_id


def test_a_consumer_span_is_made_only_where_spans_are_exported(monkeypatch) -> None:
    """Without an exporter, handling a message whose headers name a span runs in that span's
    context (same ids, nothing made), and one without context still gets a trace of its own;
    with an exporter, the consumer span is a new child of the producer's, linked to the
    first attempt."""
    from shared import telemetry

    first = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01"
    monkeypatch.setattr(telemetry, "tracer", TracerProvider(sampler=ALWAYS_OFF).get_tracer("t"))
    monkeypatch.setattr(telemetry, "_recording", False)
    with telemetry.consumer_span("q process", {"traceparent": PARENT.encode()}, first, {}) as s:
        assert not s.is_recording()
        assert traceparent() == PARENT
    assert trace.get_current_span() is trace.INVALID_SPAN
    with telemetry.consumer_span("q process", {}, None, {}):
        assert trace_id() is not None and traceparent() != PARENT
    monkeypatch.setattr(telemetry, "tracer", TracerProvider(sampler=ALWAYS_ON).get_tracer("t"))
    monkeypatch.setattr(telemetry, "_recording", True)
    with telemetry.consumer_span("q process", {"traceparent": PARENT}, first, {"a": 1}) as s:
        assert s.is_recording() and trace_id() == PARENT.split("-")[1]
        assert traceparent() != PARENT
        assert [f"{x.context.span_id:016x}" for x in s.links] == [first.split("-")[2]]
    assert trace.get_current_span() is trace.INVALID_SPAN

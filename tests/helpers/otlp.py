"""A real OTLP/HTTP trace receiver on loopback: it takes what the services' exporter POSTs to
``/v1/traces`` (protobuf ``ExportTraceServiceRequest``, decoded with opentelemetry-proto) and
keeps the spans, as a collector would before passing them on."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.ops import HttpServer

KIND = {
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}


def value(v: AnyValue) -> Any:
    """An OTLP attribute value as Python (arrays as lists)."""
    which = v.WhichOneof("value")
    if which == "array_value":
        return [value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    return getattr(v, which) if which else None


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class Link:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver got it; ids as hex, times in ns since the epoch."""

    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start: int
    end: int
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[Link, ...] = ()
    error: bool = False

    @classmethod
    def of(cls, service: str, span: Span) -> ReceivedSpan:
        return cls(
            service=service,
            name=span.name,
            kind=KIND.get(span.kind, "unspecified"),
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            start=span.start_time_unix_nano,
            end=span.end_time_unix_nano,
            attributes=attributes(span.attributes),
            links=tuple(
                Link(x.trace_id.hex(), x.span_id.hex(), attributes(x.attributes))
                for x in span.links
            ),
            error=span.status.code == Status.STATUS_CODE_ERROR,
        )


class OtlpReceiver:
    """``endpoint`` is what ``HATO_OTLP_ENDPOINT`` takes (the exporter adds ``/v1/traces``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        app = Starlette(routes=[Route("/v1/traces", self.traces, methods=["POST"])])
        self.server = HttpServer(app, host=host, port=port)

    @property
    def endpoint(self) -> str:
        return f"http://{self.server.host}:{self.server.port}"

    async def start(self) -> OtlpReceiver:
        await self.server.start()
        return self

    async def stop(self) -> None:
        await self.server.stop()

    async def traces(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.requests += 1
        for resource_spans in export.resource_spans:
            service = attributes(resource_spans.resource.attributes).get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(ReceivedSpan.of(service, s) for s in scope_spans.spans)
        return Response(
            ExportTraceServiceResponse().SerializeToString(),
            media_type="application/x-protobuf",
        )

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        """The spans of one trace, in the order they started."""
        return sorted((s for s in self.spans if s.trace_id == trace_id), key=lambda s: s.start)


def tree(spans: list[ReceivedSpan]) -> str:
    """The spans as an indented tree (children under their parent, in start order), one line
    each: service, name, and the links; for failure messages and for reading a trace."""
    ids = {s.span_id for s in spans}
    children: dict[str, list[ReceivedSpan]] = {}
    for s in sorted(spans, key=lambda s: s.start):
        children.setdefault(s.parent_span_id if s.parent_span_id in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in children.get(parent, []):
            links = "".join(f"  → link {x.span_id}" for x in s.links)
            lines.append(f"{'  ' * depth}{s.name}  [{s.service}, {s.kind}, {s.span_id}]{links}")
            walk(s.span_id, depth + 1)

    walk("", 0)
    return "\n".join(lines)

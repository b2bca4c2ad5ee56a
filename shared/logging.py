"""JSON logging for every service, with per-task context (structlog contextvars).

``configure()`` is called once from a service's ``__main__``; afterwards
``get_logger(__name__)`` gives a logger whose lines carry whatever was bound
with ``bind()`` in the current task (message id, tenant, queue, peer ...) and the
``trace_id``/``span_id`` of the current span.
"""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

__all__ = ["bind", "bound", "clear", "configure", "get_logger"]

bind = bind_contextvars
bound = bound_contextvars
clear = clear_contextvars


def configure(service: str, *, level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and the standard library's logging to one JSON (or console) stream."""
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared_processors,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Methods below the level are no-ops: a line not written costs 0.3 µs, not the 13 µs
        # of the processor chain (several lines a mail are at INFO).
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _add_service(service),
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries are chatty at INFO about every connection; their warnings still show.
    for noisy in ("aio_pika", "aiormq", "pymongo", "mail.log", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def add_trace(_logger: object, _name: str, event_dict: dict) -> dict:
    """Name the current span's trace and span (``trace_id``, ``span_id``): a log line leads
    to the mail's trace, and a trace's id finds every line about it. Ids exist without an
    OTLP endpoint too (the sampler drops the spans, not their context)."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", f"{ctx.trace_id:032x}")
        event_dict.setdefault("span_id", f"{ctx.span_id:016x}")
    return event_dict


def _add_service(service: str) -> structlog.typing.Processor:
    def processor(_logger, _name, event_dict):
        event_dict.setdefault("service", service)
        return event_dict

    return processor


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)

"""The inbound listener of the tenants' bounce domains (aiosmtpd): it accepts mail only for
genuine VERP return paths (the dispatcher's signed tokens) and the feedback-loop address;
anything else gets ``550 5.1.1``. Each accepted report is stored raw, parsed in a worker
process with a deadline (``reports``), classified and applied.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.bounce.classify import Rules
from services.bounce.feedback import Feedback, Target
from services.bounce.parse import Kind, NotMail, Report
from services.bounce.reports import ReportParser, ReportState, ReportStore, Unparsed
from shared import logging as hlog
from shared.errors import TRANSIENT_ERRORS
from shared.store import Store
from shared.telemetry import context_of, tracer
from shared.verp import Verp

log = hlog.get_logger(__name__)

NO_SUCH_RECIPIENT = "550 5.1.1 No such recipient here"
RECIPIENT_OK = "250 2.1.5 Ok"
SENDER_OK = "250 2.1.0 Ok"
STORED = "250 2.0.0 Ok: report received"
TRY_LATER = "451 4.3.0 Temporary failure; try again later"


class BounceSMTP(SMTP):
    """aiosmtpd's SMTP accepting the null reverse-path ``MAIL FROM:<>`` that bounces use
    (RFC 5321 4.5.5), which aiosmtpd itself refuses as a syntax error."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        stripped = arg.lstrip()
        if stripped.startswith("<>"):
            return "<>", stripped[2:]
        return super()._getaddr(arg)


class BounceHandler:
    def __init__(
        self,
        store: Store,
        verp: Verp | None,
        rules: Rules,
        feedback: Feedback,
        *,
        fbl_address: str,
        parser: ReportParser | None = None,
    ) -> None:
        self.store = store
        self.reports = ReportStore(store.db)
        self.parser = parser or ReportParser()
        self.verp = verp
        self.rules = rules
        self.feedback = feedback
        self.fbl_address = fbl_address.lower()

    async def handle_MAIL(
        self, server, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        envelope.mail_from = address  # "<>" for a bounce: aiosmtpd needs it non-empty
        envelope.mail_options.extend(options)
        return SENDER_OK

    async def handle_RCPT(
        self, server, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.lower() == self.fbl_address and self.fbl_address:
            envelope.rcpt_tos.append(address)
            return RECIPIENT_OK
        if self.verp is None or self.verp.parse(address) is None:
            # The domain only: whoever it was meant for, no address is logged at info level.
            log.info("refused: not a return path of ours", rcpt_domain=address.rpartition("@")[2])
            return NO_SUCH_RECIPIENT
        envelope.rcpt_tos.append(address)
        return RECIPIENT_OK

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        raw: bytes = envelope.original_content or b""
        # A trace of its own (a remote server sent it); what it is matched to gets a span in
        # the mail's trace, linked to this one.
        with tracer.start_as_current_span("smtp report", kind=SpanKind.SERVER) as span:
            try:
                # Kept before it is read: a report the parser cannot read is still there.
                report_id = await self.reports.keep(
                    raw,
                    peer=str(session.peer[0]) if session.peer else "",
                    rcpt_tos=list(envelope.rcpt_tos),
                )
                try:
                    report = await self.parser.parse(raw)
                except NotMail:
                    await self.reports.mark(report_id, ReportState.NOT_MAIL)
                    return STORED
                except Unparsed as exc:
                    log.warning("inbound report kept unparsed", report_id=report_id, error=str(exc))
                    await self.reports.mark(report_id, ReportState.UNPARSED, error=str(exc))
                    return STORED
                await self.reports.mark(report_id, ReportState.PARSED, kind=report.kind.value)
                if span.is_recording():
                    span.set_attributes(
                        {
                            "client.address": str(session.peer[0]) if session.peer else "",
                            "hato.report.kind": report.kind.value,
                            "hato.size": len(raw),
                        }
                    )
                for rcpt in envelope.rcpt_tos:
                    await self.apply(rcpt, report)
            except TRANSIENT_ERRORS:
                return TRY_LATER
            except Exception:
                log.exception("could not process an inbound report")
                return STORED  # kept from looping: a report we cannot read is not retried
            return STORED

    async def apply(self, rcpt: str, report: Report) -> None:
        if report.kind is Kind.NOT_A_BOUNCE:
            log.info("not a bounce; ignored", rcpt=rcpt)
            return
        verdicts = self.rules.classify(report)
        ids = self.verp.parse(rcpt) if self.verp else None
        if ids is None:  # the feedback-loop address: find the return path in the original
            ids = self._ids_from_original(report)
        if ids is None:
            log.info("report about a message that is not ours", rcpt=rcpt)
            return
        message_id, recipient_id = ids
        message = await self.store.message(message_id)
        if message is None:
            return
        source = "complaint" if report.kind is Kind.COMPLAINT else "dsn"
        report_span = trace.get_current_span().get_span_context()
        with (
            # Matched back: the mail's own trace goes on (its record keeps where it began),
            # with a link to the trace of the report's SMTP session.
            tracer.start_as_current_span(
                "complaint matched" if source == "complaint" else "bounce matched",
                context=context_of(message.get("traceparent")),
                links=[trace.Link(report_span)] if report_span.is_valid else None,
            ) as span,
            hlog.bound(message_id=message_id, tenant=message["tenant"]),
        ):
            matched = []
            for verdict in verdicts:
                doc = await (
                    self.store.recipient(recipient_id)
                    if recipient_id and len(verdicts) == 1
                    else self.store.recipient_by_address(message_id, verdict.recipient)
                )
                if doc is None or doc["message_id"] != message_id:
                    continue
                await self.feedback.apply(
                    Target(message["tenant"], message_id, doc["_id"], doc["address"]),
                    verdict,
                    source=source,
                )
                matched.append((doc["_id"], verdict.reason))
            if span.is_recording():
                span.set_attributes(
                    {
                        "hato.message_id": message_id,
                        "hato.tenant": message["tenant"],
                        "hato.report.kind": report.kind.value,
                        "hato.recipient_ids": [rid for rid, _ in matched],
                        "hato.bounce.reasons": [reason for _, reason in matched],
                    }
                )

    def _ids_from_original(self, report: Report) -> tuple[str, str | None] | None:
        if self.verp is None:
            return None
        for header in ("return-path", "x-hato-return-path"):
            value = report.original_headers.get(header, "")
            address = email.utils.parseaddr(value)[1] or value.strip("<> ")
            if address:
                ids = self.verp.parse(address)
                if ids is not None:
                    return ids
        for value in report.original_headers.values():
            for candidate in re.findall(r"b[a-z2-7]{52}\.[a-z2-7]{8}@[\w.-]+", value, re.I):
                ids = self.verp.parse(candidate)
                if ids is not None:
                    return ids
        return None


class BounceListener:
    def __init__(self, handler: BounceHandler, *, host: str, port: int, max_size: int) -> None:
        self.handler = handler
        self.host, self.port, self.max_size = host, port, max_size
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        await self.handler.reports.ensure_indexes()
        loop = asyncio.get_running_loop()

        def protocol() -> Any:
            return BounceSMTP(
                self.handler,
                hostname="bounces.hato",
                ident="Hato bounces",
                data_size_limit=self.max_size,
                enable_SMTPUTF8=True,
                loop=loop,
            )

        self._server = await loop.create_server(protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("bounce listener", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.handler.parser.close()

"""The inbound reports' consumer: a report the listener kept raw (``reports``) and queued is
parsed in a worker process with a deadline (``reports.ReportParser``), classified, matched
and applied — to what its return path names, nothing more: a per-recipient token to its own
recipient whatever other addresses the report names, a per-message token to the recipients
of that message the report names. A mail to a recipient's unsubscribe mailto address is no
report: its address is the request, and it is applied whatever the mail says (unread).

A report that cannot be read (the parser failed or ran out of time twice) is marked
``unparsed`` and dead-lettered with the reason (the ``dead_lettered`` event names the
report): ``hato dead retry`` reads it again once the parser can. What is not mail, and
reports about mail that is not ours, are acked and kept with their state.
"""

from __future__ import annotations

import email.utils
from typing import Any, Protocol

from opentelemetry import trace

from services.bounce.feedback import Addressee, Feedback
from services.bounce.reports import ReportParser, ReportState, ReportStore, Unparsed
from shared import logging as hlog
from shared.bounces.classify import Rules, Verdict
from shared.bounces.parse import Kind, NotMail, Report
from shared.broker import Delivery
from shared.errors import Permanent, RetryLater
from shared.schemas import ReportJob, utcnow
from shared.suppressions import Suppressions
from shared.telemetry import context_of, tracer
from shared.unsubscribe import Ticket, Unsubscribe, unsubscribe
from shared.verp import TOKEN_PATTERN, Token, TokenKind, Verp

log = hlog.get_logger(__name__)

# A parse that fails may be the victim of another report's (a worker killed past its deadline
# takes the reports parsed beside it along): one more try, ``retry_delay`` seconds later,
# before the report is called unreadable.
PARSE_TRIES = 2


class ReportMessages(Protocol):
    """The recipients and messages a report is matched with (``shared.messages.Messages``)."""

    async def recipient(self, recipient_id: str) -> dict[str, Any] | None: ...

    async def message(self, message_id: str) -> dict[str, Any] | None: ...

    async def recipient_by_address(
        self, message_id: str, address: str
    ) -> dict[str, Any] | None: ...


class ReportRecords(Protocol):
    """What matching a report reads, and the suppression list an unsubscribe mail feeds: the
    service passes its ``Store``; unit tests pass a small fake."""

    @property
    def messages(self) -> ReportMessages: ...

    @property
    def suppressions(self) -> Suppressions: ...


class ReportConsumer:
    """``reports`` queue → each report read, classified and applied."""

    def __init__(
        self,
        store: ReportRecords,
        reports: ReportStore,
        verp: Verp | None,
        rules: Rules,
        feedback: Feedback,
        *,
        parser: ReportParser | None = None,
        retry_delay: float = 60.0,
        unsubscribe: Unsubscribe | None = None,
    ) -> None:
        self.store = store
        self.reports = reports
        self.parser = parser or ReportParser()
        self.retry_delay = retry_delay
        self.unsubscribe = unsubscribe
        self.verp = verp
        self.rules = rules
        self.feedback = feedback

    async def handle(self, delivery: Delivery) -> None:
        job = delivery.message
        if not isinstance(job, ReportJob):
            raise Permanent(f"expected a report job, got {type(job).__name__}")
        doc = await self.reports.get(job.report_id)
        if doc is None:  # past the retention before it was read (a job long dead, retried)
            log.warning("report no longer kept; nothing to read", report_id=job.report_id)
            return
        reports_to = []
        for rcpt in job.rcpt_tos:
            leaving = self.unsubscribe.parse_mailto(rcpt) if self.unsubscribe else None
            if leaving is not None:
                await self.unsubscribed(leaving)
            else:
                reports_to.append(rcpt)
        if not reports_to:
            await self.reports.mark(job.report_id, ReportState.PARSED, kind="unsubscribe")
            return
        raw = bytes(doc["raw"])
        try:
            report = await self.parser.parse(raw)
        except NotMail:
            await self.reports.mark(job.report_id, ReportState.NOT_MAIL)
            return
        except Unparsed as exc:
            await self.reports.mark(job.report_id, ReportState.UNPARSED, error=str(exc))
            if delivery.attempt < PARSE_TRIES:
                raise RetryLater(self.retry_delay, f"report unread: {exc}") from None
            raise Permanent(f"report {job.report_id} unreadable: {exc}") from None
        await self.reports.mark(job.report_id, ReportState.PARSED, kind=report.kind.value)
        span = trace.get_current_span()  # the job's consumer span, a child of the SMTP session
        if span.is_recording():
            span.set_attributes({"hato.report.kind": report.kind.value, "hato.size": len(raw)})
        for rcpt in reports_to:
            await self.apply(rcpt, report)

    def close(self) -> None:
        self.parser.close()

    async def unsubscribed(self, recipient_id: str) -> None:
        """A mail to a recipient's unsubscribe address (RFC 2369 mailto): the same as its
        one-click link, read from the recipient's record (its tenant, address and list)."""
        doc = await self.store.messages.recipient(recipient_id)
        message = await self.store.messages.message(doc["message_id"]) if doc else None
        list_ = (message or {}).get("unsubscribe_list")
        if doc is None or message is None or not list_:
            log.info("unsubscribe mail for a message no longer kept (or without a list)")
            return
        ticket = Ticket(message["tenant"], list_, doc["address"], utcnow().date())
        await unsubscribe(
            self.store.suppressions,
            self.feedback.timeline,
            ticket,
            source="mailto",
            message=message,
            recipient_id=recipient_id,
        )
        log.info("unsubscribed", tenant=ticket.tenant, list=list_, source="mailto")

    async def apply(self, rcpt: str, report: Report) -> None:
        if report.kind is Kind.NOT_A_BOUNCE:
            log.info("not a bounce; ignored", rcpt=rcpt)
            return
        verdicts = self.rules.classify(report)
        token = self.verp.parse(rcpt) if self.verp else None
        if token is None:  # the feedback-loop address: find the return path in the original
            token = self._token_from_original(report)
        if token is None:
            log.info("report about a message that is not ours", rcpt=rcpt)
            return
        found = await self._targets(token, verdicts)
        if found is None:
            return
        message, targets = found
        message_id = message["_id"]
        source = "complaint" if report.kind is Kind.COMPLAINT else "dsn"
        report_span = trace.get_current_span().get_span_context()
        with (
            # Matched back: the mail's own trace goes on (its record keeps where it began),
            # with a link to the report's trace (its SMTP session, then this consumer).
            tracer.start_as_current_span(
                "complaint matched" if source == "complaint" else "bounce matched",
                context=context_of(message.get("traceparent")),
                links=[trace.Link(report_span)] if report_span.is_valid else None,
            ) as span,
            hlog.bound(message_id=message_id, tenant=message["tenant"]),
        ):
            for doc, verdict in targets:
                await self.feedback.apply(
                    Addressee(
                        message["tenant"],
                        message_id,
                        doc["_id"],
                        doc["address"],
                        tuple(message.get("tags") or ()),
                        dict(message.get("metadata") or {}),
                    ),
                    verdict,
                    source=source,
                )
            if span.is_recording():
                span.set_attributes(
                    {
                        "hato.message_id": message_id,
                        "hato.tenant": message["tenant"],
                        "hato.report.kind": report.kind.value,
                        "hato.recipient_ids": [doc["_id"] for doc, _ in targets],
                        "hato.bounce.reasons": [verdict.reason for _, verdict in targets],
                    }
                )

    async def _targets(
        self, token: Token, verdicts: list[Verdict]
    ) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Verdict]]] | None:
        """The message and the (recipient, verdict) pairs a report to ``token`` may act on."""
        if token.kind is TokenKind.RECIPIENT:
            doc = await self.store.messages.recipient(token.id)
            message = await self.store.messages.message(doc["message_id"]) if doc else None
            if doc is None or message is None:
                return None
            verdict = own_verdict(doc["address"], verdicts)
            if verdict is None:
                # The report names other addresses only: they are not this token's to act on.
                log.info("report names no address of its return path; ignored")
                return message, []
            return message, [(doc, verdict)]
        message = await self.store.messages.message(token.id)
        if message is None:
            return None
        targets = []
        for verdict in verdicts:
            doc = await self.store.messages.recipient_by_address(token.id, verdict.recipient)
            if doc is not None and doc["message_id"] == token.id:
                targets.append((doc, verdict))
        return message, targets

    def _token_from_original(self, report: Report) -> Token | None:
        if self.verp is None:
            return None
        for header in ("return-path", "x-hato-return-path"):
            value = report.original_headers.get(header, "")
            address = email.utils.parseaddr(value)[1] or value.strip("<> ")
            if address:
                token = self.verp.parse(address)
                if token is not None:
                    return token
        for value in report.original_headers.values():
            for candidate in TOKEN_PATTERN.findall(value):
                token = self.verp.parse(candidate)
                if token is not None:
                    return token
        return None


def own_verdict(address: str, verdicts: list[Verdict]) -> Verdict | None:
    """The verdict a per-recipient return path acts on: the report's verdict for its own
    recipient's address, else the report's only verdict (a report that names the address the
    mail was forwarded to, or none); never one about another address among several."""
    address = address.lower()
    for verdict in verdicts:
        if verdict.recipient.lower() == address:
            return verdict
    return verdicts[0] if len(verdicts) == 1 else None

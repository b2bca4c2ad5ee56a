"""The inbound listener of the tenants' bounce domains (aiosmtpd): it accepts mail only for
genuine VERP return paths (the dispatcher's signed, dated tokens), genuine unsubscribe mailto
addresses (the signer's, ``shared/unsubscribe.py``: a mail to one unsubscribes its recipient
from its list, whatever it says) and the feedback-loop address; anything else gets
``550 5.1.1``, and more than ``MAX_RECIPIENTS`` in one transaction ``452 4.5.3``. Each
accepted report is stored raw, parsed in a worker process with a deadline (``reports``),
classified and applied — to what its return path names, nothing more: a per-recipient token
to its own recipient whatever other addresses the report names, a per-message token to the
recipients of that message the report names.
"""

from __future__ import annotations

import asyncio
import email.utils
from typing import Any

from aiosmtpd.smtp import Envelope, Session
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from services.bounce.feedback import Addressee, Feedback
from services.bounce.reports import ReportParser, ReportState, ReportStore, Unparsed
from shared import logging as hlog
from shared.bounces.classify import Rules, Verdict
from shared.bounces.parse import Kind, NotMail, Report
from shared.errors import TRANSIENT_ERRORS, Unavailable
from shared.schemas import Reply, utcnow
from shared.smtp_server import Listener, Protocol
from shared.store import Store
from shared.telemetry import context_of, tracer
from shared.unsubscribe import Ticket, Unsubscribe, unsubscribe
from shared.verp import TOKEN_PATTERN, Token, TokenKind, Verp

log = hlog.get_logger(__name__)

NO_SUCH_RECIPIENT = Reply.of(550, "5.1.1", "No such recipient here")
RECIPIENT_OK = Reply.of(250, "2.1.5", "Ok")
SENDER_OK = Reply.of(250, "2.1.0", "Ok")
STORED = Reply.of(250, "2.0.0", "Ok: report received")
UNSUBSCRIBED = Reply.of(250, "2.0.0", "Ok: unsubscribed")
TRY_LATER = Reply.of(451, "4.3.0", "Temporary failure; try again later")
# RFC 5321 4.5.3.1.10: the client sends the rest later.
TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Too many recipients")

# A bounce is addressed to one return path; a few more for the odd relay that groups them. More
# recipients only multiply what one report could act on.
MAX_RECIPIENTS = 10


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
        unsubscribe: Unsubscribe | None = None,
    ) -> None:
        self.unsubscribe = unsubscribe
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
        return str(SENDER_OK)

    async def handle_RCPT(
        self, server, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return str(TOO_MANY_RECIPIENTS)
        if address.lower() == self.fbl_address and self.fbl_address:
            envelope.rcpt_tos.append(address)
            return str(RECIPIENT_OK)
        if self._unsubscribing(address) is not None:
            envelope.rcpt_tos.append(address)
            return str(RECIPIENT_OK)
        if self.verp is None or self.verp.parse(address) is None:
            # The domain only: whoever it was meant for, no address is logged at info level.
            log.info("refused: not a return path of ours", rcpt_domain=address.rpartition("@")[2])
            return str(NO_SUCH_RECIPIENT)
        envelope.rcpt_tos.append(address)
        return str(RECIPIENT_OK)

    def _unsubscribing(self, address: str) -> str | None:
        """The recipient id an unsubscribe mailto address names, None for any other."""
        return self.unsubscribe.parse_mailto(address) if self.unsubscribe else None

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        leaving = [r for r in envelope.rcpt_tos if self._unsubscribing(r) is not None]
        if leaving:  # what the mail says does not matter: its address is the request
            try:
                for rcpt in leaving:
                    await self.unsubscribed(self._unsubscribing(rcpt) or "")
            except (Unavailable, *TRANSIENT_ERRORS):
                return str(TRY_LATER)
            envelope.rcpt_tos = [r for r in envelope.rcpt_tos if r not in leaving]
            if not envelope.rcpt_tos:
                return str(UNSUBSCRIBED)
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
                    return str(STORED)
                except Unparsed as exc:
                    log.warning("inbound report kept unparsed", report_id=report_id, error=str(exc))
                    await self.reports.mark(report_id, ReportState.UNPARSED, error=str(exc))
                    return str(STORED)
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
                return str(TRY_LATER)
            except Exception:
                log.exception("could not process an inbound report")
                return str(STORED)  # kept from looping: a report we cannot read is not retried
            return str(STORED)

    async def unsubscribed(self, recipient_id: str) -> None:
        """A mail to a recipient's unsubscribe address (RFC 2369 mailto): the same as its
        one-click link, read from the recipient's record (its tenant, address and list)."""
        doc = await self.store.recipient(recipient_id)
        message = await self.store.message(doc["message_id"]) if doc else None
        list_ = (message or {}).get("unsubscribe_list")
        if doc is None or message is None or not list_:
            log.info("unsubscribe mail for a message no longer kept (or without a list)")
            return
        ticket = Ticket(message["tenant"], list_, doc["address"], utcnow().date())
        await unsubscribe(
            self.store.directory,
            self.feedback.timeline,
            ticket,
            source="mailto",
            message_id=message["_id"],
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
            # with a link to the trace of the report's SMTP session.
            tracer.start_as_current_span(
                "complaint matched" if source == "complaint" else "bounce matched",
                context=context_of(message.get("traceparent")),
                links=[trace.Link(report_span)] if report_span.is_valid else None,
            ) as span,
            hlog.bound(message_id=message_id, tenant=message["tenant"]),
        ):
            for doc, verdict in targets:
                await self.feedback.apply(
                    Addressee(message["tenant"], message_id, doc["_id"], doc["address"]),
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
            doc = await self.store.recipient(token.id)
            message = await self.store.message(doc["message_id"]) if doc else None
            if doc is None or message is None:
                return None
            verdict = own_verdict(doc["address"], verdicts)
            if verdict is None:
                # The report names other addresses only: they are not this token's to act on.
                log.info("report names no address of its return path; ignored")
                return message, []
            return message, [(doc, verdict)]
        message = await self.store.message(token.id)
        if message is None:
            return None
        targets = []
        for verdict in verdicts:
            doc = await self.store.recipient_by_address(token.id, verdict.recipient)
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


class BounceListener:
    def __init__(self, handler: BounceHandler, *, host: str, port: int, max_size: int) -> None:
        self.handler = handler
        self.max_size = max_size
        self._socket = Listener(self._protocol, host=host, port=port)

    @property
    def host(self) -> str:
        return self._socket.host

    @property
    def port(self) -> int:
        return self._socket.port

    def _protocol(self) -> Protocol:
        return Protocol(
            self.handler,
            hostname="bounces.hato",
            ident="Hato bounces",
            data_size_limit=self.max_size,
            enable_SMTPUTF8=True,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        await self.handler.reports.ensure_indexes()
        await self._socket.start()
        log.info("bounce listener", host=self.host, port=self.port)

    async def stop(self) -> None:
        self._socket.close()
        self.handler.parser.close()

"""The inbound listener of the tenants' bounce domains (aiosmtpd): it accepts mail only for
genuine VERP return paths (the dispatcher's signed, dated tokens), genuine unsubscribe mailto
addresses (the signer's, ``shared/unsubscribe.py``: a mail to one unsubscribes its recipient
from its list, whatever it says) and the feedback-loop address; anything else gets
``550 5.1.1``, and more than ``MAX_RECIPIENTS`` in one transaction ``452 4.5.3``. An accepted
report is stored raw (``reports``) and queued, and only then answered ``250``: reading,
classifying and applying it is the report consumer's (``matching``), so a report nobody can
read is dead-lettered with the reason instead of vanishing behind a ``250``, and a slow parse
never holds an SMTP session.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiosmtpd.smtp import Envelope, Session
from opentelemetry.trace import SpanKind

from services.bounce.reports import ReportStore
from shared import logging as hlog
from shared.broker import Broker
from shared.errors import TRANSIENT_ERRORS
from shared.schemas import Reply, ReportJob
from shared.smtp_server import Listener, Protocol
from shared.telemetry import tracer
from shared.unsubscribe import Unsubscribe
from shared.verp import Verp

log = hlog.get_logger(__name__)

NO_SUCH_RECIPIENT = Reply.of(550, "5.1.1", "No such recipient here")
RECIPIENT_OK = Reply.of(250, "2.1.5", "Ok")
SENDER_OK = Reply.of(250, "2.1.0", "Ok")
STORED = Reply.of(250, "2.0.0", "Ok: report received")
UNSUBSCRIBING = Reply.of(250, "2.0.0", "Ok: unsubscribe request received")
TRY_LATER = Reply.of(451, "4.3.0", "Temporary failure; try again later")
# RFC 5321 4.5.3.1.10: the client sends the rest later.
TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Too many recipients")

# A bounce is addressed to one return path; a few more for the odd relay that groups them. More
# recipients only multiply what one report could act on.
MAX_RECIPIENTS = 10


class BounceHandler:
    """The listener's SMTP hooks: who may be written to, and DATA → kept and queued."""

    def __init__(
        self,
        reports: ReportStore,
        broker: Broker,
        verp: Verp | None,
        *,
        fbl_address: str,
        unsubscribe: Unsubscribe | None = None,
    ) -> None:
        self.reports = reports
        self.broker = broker
        self.verp = verp
        self.fbl_address = fbl_address.lower()
        self.unsubscribe = unsubscribe

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
        if self.unsubscribe is not None and self.unsubscribe.parse_mailto(address) is not None:
            envelope.rcpt_tos.append(address)
            return str(RECIPIENT_OK)
        if self.verp is None or self.verp.parse(address) is None:
            # The domain only: whoever it was meant for, no address is logged at info level.
            log.info("refused: not a return path of ours", rcpt_domain=address.rpartition("@")[2])
            return str(NO_SUCH_RECIPIENT)
        envelope.rcpt_tos.append(address)
        return str(RECIPIENT_OK)

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        raw: bytes = envelope.original_content or b""
        peer = str(session.peer[0]) if session.peer else ""
        # A trace of its own (a remote server sent it); the consumer's span is its child, and
        # what the report is matched to gets a span in the mail's trace, linked to that one.
        with tracer.start_as_current_span("smtp report", kind=SpanKind.SERVER) as span:
            if span.is_recording():
                span.set_attributes({"client.address": peer, "hato.size": len(raw)})
            try:
                report_id = await self.reports.keep(
                    raw, peer=peer, rcpt_tos=list(envelope.rcpt_tos)
                )
            except TRANSIENT_ERRORS:
                return str(TRY_LATER)
            try:
                await self.broker.publish(
                    ReportJob(report_id=report_id, rcpt_tos=tuple(envelope.rcpt_tos))
                )
            except Exception as exc:
                if not isinstance(exc, TRANSIENT_ERRORS):
                    log.exception("could not queue an inbound report")
                # Not queued: the sender tries again, and this copy would never be read.
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await self.reports.forget(report_id)
                return str(TRY_LATER)
            leaving = self.unsubscribe is not None and all(
                self.unsubscribe.parse_mailto(r) is not None for r in envelope.rcpt_tos
            )
            return str(UNSUBSCRIBING if leaving else STORED)


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
        await self._socket.start()
        log.info("bounce listener", host=self.host, port=self.port)

    async def stop(self) -> None:
        self._socket.close()

"""The SMTP door's hooks (aiosmtpd's handler): EHLO, AUTH, MAIL, RCPT and DATA under the
relay rules, ending in a Submission handed to the Acceptor."""

from __future__ import annotations

from enum import StrEnum

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from opentelemetry.trace import SpanKind

from services.ingest import addresses, content, replies
from services.ingest.accept import Acceptor, FrontDoor, RateLimited, Submission, summarize_headers
from services.ingest.labels import LabelError
from services.ingest.labels import extract as extract_labels
from services.ingest.policy import RelayPolicy
from services.ingest.smtp.auth import Authenticator, AuthThrottle
from services.ingest.smtp.protocol import peer_ip
from shared import logging as hlog
from shared import metrics
from shared.directory import Identity
from shared.errors import Unavailable
from shared.telemetry import tracer

log = hlog.get_logger(__name__)


class Mode(StrEnum):
    RELAY = "relay"  # port 25: networks, or AUTH after STARTTLS
    SUBMISSION = "submission"  # 587/465: AUTH (or an authorised network) before MAIL


complete_header = content.complete_header  # where it lived before every door used it


class RelayHandler:
    """aiosmtpd hooks: EHLO, AUTH, MAIL, RCPT and DATA under the relay rules."""

    def __init__(
        self,
        policy: RelayPolicy,
        acceptor: Acceptor,
        authenticator: Authenticator,
        throttle: AuthThrottle,
        *,
        mode: Mode,
        max_recipients: int,
        max_size: int,
        max_line: int = content.DEFAULT_MAX_LINE,
    ) -> None:
        self.policy = policy
        self.acceptor = acceptor
        self.authenticator = authenticator
        self.throttle = throttle
        self.mode = mode
        self.max_recipients = max_recipients
        self.max_size = max_size
        self.max_line = max_line  # octets in one line, CRLF not counted
        self.stopping = False

    def identity(self, session: Session) -> Identity | None:
        """Who the client is: its AUTH identity, else its authorised network's, else None."""
        if session.authenticated and isinstance(session.auth_data, Identity):
            return session.auth_data
        return self.policy.tenant_for_peer(peer_ip(session))

    def size_limit(self, identity: Identity | None) -> int:
        limit = identity.limits.max_message_size if identity else None
        return min(limit, self.max_size) if limit else self.max_size

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        size = self.size_limit(self.identity(session))
        out = [f"250-SIZE {size}" if r.startswith("250-SIZE") else r for r in responses[:-1]]
        return [*out, "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope, args):
        # RFC 4954 4: not within a transaction. A MAIL FROM given before AUTH would otherwise
        # have been checked against another identity (or none) than the one sending.
        if envelope.mail_from is not None:
            return str(replies.AUTH_IN_TRANSACTION)
        if self.throttle.locked(peer_ip(session)):
            metrics.SMTP_AUTH.labels("locked").inc()
            return str(replies.AUTH_LOCKED)
        return MISSING  # aiosmtpd goes on with the mechanism

    async def authenticate(self, session: Session, login: LoginPassword) -> AuthResult:
        ip = peer_ip(session)
        identity = None
        if self.throttle.user_locked(login.login.decode("utf-8", "replace")):
            metrics.SMTP_AUTH.labels("locked").inc()  # not even checked: no oracle
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_LOCKED))
        try:
            identity = await self.authenticator.verify(
                login.login.decode("utf-8", "replace"), login.password.decode("utf-8", "replace")
            )
        except Exception:
            log.exception("auth check failed")
            metrics.SMTP_AUTH.labels("error").inc()
            return AuthResult(success=False, handled=False, message=str(replies.NOT_DURABLE))
        if identity is None:
            self.throttle.failed(ip, login.login.decode("utf-8", "replace"))
            metrics.SMTP_AUTH.labels("failed").inc()
            log.info("auth failed", peer=ip)
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_FAILED))
        self.throttle.succeeded(ip)
        metrics.SMTP_AUTH.labels("ok").inc()
        log.info("auth ok", peer=ip, tenant=identity.tenant, credential=identity.credential)
        return AuthResult(success=True, auth_data=identity, message=str(replies.AUTH_OK))

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.stopping:
            return str(replies.SHUTTING_DOWN)
        identity = self.identity(session)
        if identity is None and self.mode is Mode.SUBMISSION:
            return str(replies.AUTH_REQUIRED)
        if identity is not None:
            if addresses.split(address) is None:
                return str(replies.BAD_SENDER)
            if not self.policy.may_send_from(identity, address):
                return str(replies.SENDER_NOT_ALLOWED)
            declared = _size_option(options)
            if declared is not None and declared > self.size_limit(identity):
                return str(replies.MESSAGE_TOO_BIG)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        identity = self.identity(session)
        if identity is None:
            # The domain only: recipient addresses stay out of logs at info level.
            log.info("relay denied", peer=peer_ip(session), rcpt_domain=address.rpartition("@")[2])
            return str(replies.RELAY_DENIED)
        if addresses.split(address) is None:
            return str(replies.BAD_RECIPIENT)
        if len(envelope.rcpt_tos) >= (identity.limits.max_recipients or self.max_recipients):
            return str(replies.TOO_MANY_RECIPIENTS)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return str(replies.RECIPIENT_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # The SMTP transaction's span: the root of the mail's trace (SMTP carries no context).
        with tracer.start_as_current_span("smtp DATA", kind=SpanKind.SERVER) as span:
            reply = await self._data(session, envelope)
            if span.is_recording():
                span.set_attributes(
                    {
                        "client.address": peer_ip(session),
                        "hato.smtp.mode": self.mode.value,
                        "hato.recipients": len(envelope.rcpt_tos),
                        "smtp.reply.code": int(reply[:3]),
                    }
                )
            return reply

    async def _data(self, session: Session, envelope: Envelope) -> str:
        identity = self.identity(session)
        if identity is None:  # the client lost its authorisation mid-transaction
            return str(replies.RELAY_DENIED)
        raw: bytes = envelope.original_content or b""
        if len(raw) > self.size_limit(identity):
            return str(replies.MESSAGE_TOO_BIG)
        if not self.policy.may_send_from(identity, envelope.mail_from or ""):
            return str(replies.SENDER_NOT_ALLOWED)  # the identity may have changed since MAIL
        try:
            raw = content.accepted(raw, max_line=self.max_line)
        except content.LineTooLong:
            return str(replies.line_too_long(self.max_line))
        except content.ContentError as exc:
            loop = isinstance(exc, content.TooManyHops)
            return str(replies.content_refused(str(exc), loop=loop))
        try:
            raw, labels = extract_labels(raw)
        except LabelError as exc:
            return str(replies.content_refused(str(exc)))
        headers = summarize_headers(raw)
        if headers.from_address is None or headers.from_domain is None:
            return str(replies.NO_FROM_HEADER)
        if not self.policy.may_send_from(identity, headers.from_address):
            return str(replies.FROM_NOT_ALLOWED)
        hlog.bind(tenant=identity.tenant)  # the session's task: later lines of it carry it too
        # RFC 6409 8.2, 8.3: an MSA completes the header; Hato does it on the relay port too,
        # for the receivers that refuse mail without them, unless the tenant refuses instead.
        try:
            completed = content.complete_header(
                raw, headers.from_domain, refuse=identity.limits.missing_headers == "refuse"
            )
        except content.MissingFields as exc:
            return str(replies.content_refused(str(exc)))
        if completed is not raw:
            raw = completed
            headers = summarize_headers(raw)
        submission = Submission(
            identity=identity,
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            raw=raw,
            headers=headers,
            door=FrontDoor.SMTP,
            client=peer_ip(session),
            received_from=f"{session.host_name or 'unknown'} ([{peer_ip(session)}])",
            protocol=_protocol(session),
            tags=labels.tags,
            metadata=labels.metadata,
            send_at=labels.send_at,
        )
        try:
            accepted = await self.acceptor.accept(submission)
        except RateLimited:
            return str(replies.RATE_LIMITED)
        except Unavailable:
            return str(replies.NOT_DURABLE)
        except Exception:  # a bug must not become a permanent 5xx or leak internals
            log.exception("accept failed")
            return str(replies.NOT_DURABLE)
        return str(replies.queued(accepted.message_id))


def _protocol(session: Session) -> str:
    """The Received field's ``with`` (RFC 3848): ESMTP, plus S for TLS and A for AUTH."""
    tls = "S" if session.ssl else ""
    auth = "A" if session.authenticated else ""
    return f"ESMTP{tls}{auth}" if session.extended_smtp else f"SMTP{tls}{auth}"


def _size_option(options: list[str]) -> int | None:
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None

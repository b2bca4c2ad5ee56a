"""The SMTP front door (aiosmtpd): protocol in, a Submission out, a precise reply back.

The handler knows no database: it asks the RelayPolicy who the client is and
hands a Submission to the Acceptor; each outcome has its reply in ``replies``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.ingest import addresses, replies
from services.ingest.accept import Acceptor, Submission, summarize_headers
from services.ingest.policy import RelayPolicy
from shared import logging as hlog
from shared.errors import Unavailable

log = hlog.get_logger(__name__)

_SOURCE_ROUTE = re.compile(r"\s*<\s*@")  # RFC 5321 4.1.2 obs-route: "<@relay:user@host>"


class _SMTP(SMTP):
    """aiosmtpd's SMTP, refusing source routes instead of silently dropping them."""

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        if _SOURCE_ROUTE.match(arg):
            return None, None
        return super()._getaddr(arg)


class RelayHandler:
    """aiosmtpd hooks: MAIL, RCPT and DATA under the relay rules."""

    def __init__(self, policy: RelayPolicy, acceptor: Acceptor, *, max_recipients: int) -> None:
        self.policy = policy
        self.acceptor = acceptor
        self.max_recipients = max_recipients
        self.stopping = False

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.stopping:
            return str(replies.SHUTTING_DOWN)
        tenant = self.policy.tenant_for_peer(_peer_ip(session))
        if tenant is not None:
            parts = addresses.split(address)
            if parts is None:
                return str(replies.BAD_SENDER)
            if not self.policy.may_send_from(tenant, parts[1]):
                return str(replies.SENDER_NOT_ALLOWED)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return str(replies.SENDER_OK)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.policy.tenant_for_peer(_peer_ip(session)) is None:
            log.info("relay denied", peer=_peer_ip(session), rcpt=address)
            return str(replies.RELAY_DENIED)
        if addresses.split(address) is None:
            return str(replies.BAD_RECIPIENT)
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return str(replies.TOO_MANY_RECIPIENTS)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return str(replies.RECIPIENT_OK)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        peer = _peer_ip(session)
        tenant = self.policy.tenant_for_peer(peer)
        if tenant is None:  # the client lost its authorisation mid-transaction
            return str(replies.RELAY_DENIED)
        raw: bytes = envelope.original_content or b""
        headers = summarize_headers(raw)
        if headers.from_domain is None:
            return str(replies.NO_FROM_HEADER)
        if not self.policy.may_send_from(tenant, headers.from_domain):
            return str(replies.FROM_NOT_ALLOWED)
        submission = Submission(
            tenant=tenant.name,
            pool=tenant.pool,
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            raw=raw,
            headers=headers,
            door="smtp",
            client=peer,
        )
        try:
            accepted = await self.acceptor.accept(submission)
        except Unavailable:
            return str(replies.NOT_DURABLE)
        except Exception:  # a bug must not become a permanent 5xx or leak internals
            log.exception("accept failed")
            return str(replies.NOT_DURABLE)
        return str(replies.queued(accepted.message_id))


def _peer_ip(session: Session) -> str:
    peer: Any = session.peer
    return peer[0] if isinstance(peer, tuple) else str(peer)


class SmtpListener:
    """One listening socket speaking SMTP with ``handler``."""

    def __init__(
        self, handler: RelayHandler, *, host: str, port: int, hostname: str, max_size: int
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self._hostname = hostname
        self._max_size = max_size
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        return _SMTP(
            self.handler,
            hostname=self._hostname,
            ident="Hato ESMTP",
            data_size_limit=self._max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=asyncio.get_running_loop(),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("smtp listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop taking connections; sessions still open get 421 on their next MAIL."""
        self.handler.stopping = True
        if self._server is not None:
            self._server.close()

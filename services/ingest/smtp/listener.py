"""The SMTP door's listeners: one socket each (relay, submission, smtps), a HatoSMTP per
connection with the RelayHandler's hooks."""

from __future__ import annotations

import asyncio
import ssl

from services.ingest.smtp.hooks import Mode, RelayHandler
from services.ingest.smtp.protocol import HatoSMTP, SessionGuard
from shared import logging as hlog
from shared.smtp_server import Listener

log = hlog.get_logger(__name__)


class SmtpListener:
    """One listening socket speaking SMTP with ``handler``."""

    def __init__(
        self,
        handler: RelayHandler,
        *,
        host: str,
        port: int,
        hostname: str,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        guard: SessionGuard | None = None,
        timeout: float = 300,
    ) -> None:
        self.guard = guard or SessionGuard()
        self.timeout = timeout
        self.handler = handler
        self._hostname = hostname
        self._tls = tls
        self._implicit = implicit_tls
        self._socket = Listener(
            self._protocol, host=host, port=port, tls=tls if implicit_tls else None
        )

    @property
    def host(self) -> str:
        return self._socket.host

    @property
    def port(self) -> int:
        return self._socket.port

    def _protocol(self) -> HatoSMTP:
        starttls = None if self._implicit else self._tls
        protocol = HatoSMTP(
            self.handler,
            max_line=self.handler.max_line,
            hostname=self._hostname,
            ident="Hato ESMTP",
            data_size_limit=self.handler.max_size,
            # Not offered: addresses are ASCII here (RFC 6531 would need UTF-8 addresses all
            # the way to the recipient's server). Headers may still be UTF-8 (RFC 6532).
            enable_SMTPUTF8=False,
            decode_data=False,
            timeout=self.timeout,  # reset by commands only: DATA must end within it too
            tls_context=starttls,
            require_starttls=starttls is not None and self.handler.mode is Mode.SUBMISSION,
            auth_require_tls=not self._implicit,
            loop=asyncio.get_running_loop(),
        )
        protocol.line_limit = self.handler.max_line
        protocol.listener = "smtps" if self._implicit else self.handler.mode.value
        protocol.guard = self.guard
        return protocol

    async def start(self) -> None:
        await self._socket.start()
        log.info(
            "smtp listening",
            host=self.host,
            port=self.port,
            mode=self.handler.mode.value,
            tls="implicit" if self._implicit else ("starttls" if self._tls else "none"),
        )

    async def stop(self) -> None:
        """Stop taking connections; sessions still open get 421 on their next MAIL."""
        self.handler.stopping = True
        self._socket.close()

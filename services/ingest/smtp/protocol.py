"""The SMTP door's protocol: aiosmtpd's SMTP (through Hato's listener scaffold) with an
enhanced status code on every reply, password checks that do not block the event loop, and
the rules every session keeps (SessionGuard): a pause before the banner, a bounded number of
errors and of sessions per client, and web clients dropped at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import AuthResult, LoginPassword, Session

from services.ingest import replies
from shared import logging as hlog
from shared import metrics
from shared.schemas import Reply
from shared.smtp_server import Protocol

log = hlog.get_logger(__name__)


@dataclass
class SessionGuard:
    """Rules for every SMTP session of a process, whichever listener it came to: the banner
    waits ``greet_pause`` and a client that talks first is dropped; ``max_errors`` error
    replies close a session; one client address holds at most ``per_client`` sessions."""

    greet_pause: float = 0.2
    max_errors: int = 20
    per_client: int = 50
    open: dict[str, int] = field(default_factory=dict)

    def opened(self, ip: str) -> bool:
        """Count a new session; False when the client holds too many already."""
        self.open[ip] = self.open.get(ip, 0) + 1
        return self.open[ip] <= self.per_client

    def closed(self, ip: str) -> None:
        left = self.open.get(ip, 1) - 1
        if left > 0:
            self.open[ip] = left
        else:
            self.open.pop(ip, None)


# Not SMTP: a web client (or a cross-protocol attack through one) talking to an SMTP port.
_AIOSMTPD_BOGUS_LIMIT = "502 5.5.1 Too many unrecognized commands"  # then it closes
_AIOSMTPD_LINE_TOO_LONG = "500 Line too long"  # after DATA, a line over line_length_limit
_NOT_SMTP = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "HOST:"})


def peer_ip(session: Session) -> str:
    peer: Any = session.peer
    return peer[0] if isinstance(peer, tuple) else str(peer)


class HatoSMTP(Protocol):
    """aiosmtpd's SMTP with enhanced status codes on every reply, source routes refused,
    password checks that do not block the event loop, and the SessionGuard's rules."""

    _stashed: tuple[str, LoginPassword] | None = None
    listener = "relay"  # the metrics' name of the listener (SmtpListener sets it)
    guard = SessionGuard()  # SmtpListener sets the process's own
    _tls_counted = False
    _greeted = False
    _errors = 0
    _client: str | None = None  # the address counted in guard.open
    _over_limit = False

    def __init__(self, *args: Any, max_line: int = 2048, **kwargs: Any) -> None:
        # aiosmtpd reads with a StreamReader whose limit is this, set in its __init__: a line
        # of max_line octets, its CRLF and a transparency dot (RFC 5321 4.5.2). The hook
        # checks the exact limit; aiosmtpd's own refusal of longer ones is reworded in push.
        self.line_length_limit = max_line + 3
        self.line_limit = max_line
        super().__init__(*args, **kwargs)
        for command in _NOT_SMTP:
            self._smtp_methods[command] = self._not_smtp

    def connection_made(self, transport: Any) -> None:
        new = self._original_transport is None  # not the TLS layer after STARTTLS
        if new:
            metrics.SMTP_SESSIONS.labels(self.listener).inc()
            metrics.SMTP_OPEN.labels(self.listener).inc()
        super().connection_made(transport)
        if new and self.session is not None:
            self._client = peer_ip(self.session)
            self._over_limit = not self.guard.opened(self._client)

    def connection_lost(self, exc: Exception | None) -> None:
        metrics.SMTP_OPEN.labels(self.listener).dec()
        if self._client is not None:
            self.guard.closed(self._client)
            self._client = None
        super().connection_lost(exc)

    async def push(self, status: str | bytes) -> None:
        if not self._greeted and isinstance(status, str) and status.startswith("220 "):
            self._greeted = True
            refusal = await self._refusal_before_greeting()
            if refusal is not None:
                await self._drop(refusal)
                return
        if isinstance(status, str) and status.startswith(_AIOSMTPD_BOGUS_LIMIT):
            status = str(replies.TOO_MANY_UNKNOWN)
        elif isinstance(status, str) and status.startswith(_AIOSMTPD_LINE_TOO_LONG):
            status = str(replies.line_too_long(self.line_limit))
        if isinstance(status, str) and not self._in_ehlo:
            status = replies.with_enhanced_code(status)
            metrics.smtp_reply(status)
        await super().push(status)
        if isinstance(status, str) and status[:1] in ("4", "5") and status[:3] != "421":
            self._errors += 1
            if self._errors >= self.guard.max_errors:
                await self._drop(str(replies.TOO_MANY_ERRORS))

    async def _refusal_before_greeting(self) -> Reply | None:
        if self._over_limit:
            return replies.TOO_MANY_CONNECTIONS
        # A tenant's own network (its printers, its shop servers) is known: no pause for it,
        # as Postfix's postscreen spares the clients it knows. The others wait and are watched.
        if self._client is not None and self._known(self._client):
            return None
        if self.guard.greet_pause > 0:
            await asyncio.sleep(self.guard.greet_pause)
        if self._reader._buffer:  # type: ignore[attr-defined]  # it talked first
            log.info("client talked before the greeting", peer=self._client)
            return replies.PREGREET
        return None

    def _known(self, ip: str) -> bool:
        policy = getattr(self.event_handler, "policy", None)
        return policy is not None and policy.tenant_for_peer(ip) is not None

    async def _drop(self, reply: Reply | str) -> None:
        """Say ``reply`` and close; what the client sent meanwhile is not read."""
        self._reader._buffer.clear()  # type: ignore[attr-defined]
        await super().push(str(reply))
        if self.transport is not None:
            self.transport.close()

    async def _not_smtp(self, arg: str | None) -> None:
        log.info("not an SMTP client; dropped", peer=self._client)
        await self._drop(replies.NOT_SMTP)

    async def smtp_HELP(self, arg: str) -> None:
        methods = self._smtp_methods
        self._smtp_methods = {k: v for k, v in methods.items() if k not in _NOT_SMTP}
        try:
            await super().smtp_HELP(arg)
        finally:
            self._smtp_methods = methods

    async def smtp_EHLO(self, hostname: str) -> None:
        await super().smtp_EHLO(hostname)
        # The first EHLO over TLS (after STARTTLS, or at once on implicit TLS): one count
        # per session that encrypted.
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is not None and not self._tls_counted:
            self._tls_counted = True
            metrics.SMTP_TLS.labels(self.listener, ssl_object.version() or "unknown").inc()

    # aiosmtpd parses AUTH PLAIN/LOGIN and then calls a synchronous _authenticate; we keep its
    # parsing, stash the credentials there and check them asynchronously afterwards.
    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        self._stashed = (mechanism, auth_data)
        return AuthResult(success=False, handled=True)

    async def _check_stashed(self, parsed: AuthResult) -> AuthResult:
        stashed, self._stashed = self._stashed, None
        if stashed is None:
            return parsed
        assert self.session is not None
        return await self.event_handler.authenticate(self.session, stashed[1])

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._check_stashed(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._check_stashed(await super().auth_LOGIN(_, args))

"""The SMTP front door (aiosmtpd): protocol in, a Submission out, a precise reply back.

Three kinds of listener share one handler:

- relay (port 25): clients from a tenant's authorised networks, or after AUTH (AUTH only
  after STARTTLS);
- submission (587, STARTTLS required) and smtps (465, implicit TLS): AUTH, or an authorised
  network.

The handler knows no database: it asks the RelayPolicy who a client is, the Authenticator
whether a password is right, and hands a Submission to the Acceptor.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import re
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from enum import StrEnum
from typing import Any

import aiosmtpd.smtp
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session
from opentelemetry.trace import SpanKind

from services.ingest import addresses, content, replies
from services.ingest.accept import Acceptor, RateLimited, Submission, summarize_headers
from services.ingest.policy import RelayPolicy
from shared import credentials, metrics
from shared import logging as hlog
from shared.directory import Directory, Identity
from shared.errors import SMTPReply, Unavailable
from shared.telemetry import tracer

log = hlog.get_logger(__name__)

_SOURCE_ROUTE = re.compile(r"\s*<\s*@")  # RFC 5321 4.1.2 obs-route: "<@relay:user@host>"
# The common path, <dot-atom@host.name> and maybe parameters, read without the RFC 5322
# parser; anything else (quoted local parts, comments, literals, UTF-8) goes to the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]+(?![\s(])|\Z)(.*)",
    re.S,
)


class Mode(StrEnum):
    RELAY = "relay"  # port 25: networks, or AUTH after STARTTLS
    SUBMISSION = "submission"  # 587/465: AUTH (or an authorised network) before MAIL


class AuthThrottle:
    """Locks an address out after too many failed AUTH attempts within a window, and a user
    name after more of them from anywhere (guessing spread over many addresses). What it
    remembers is bounded: entries older than the window go, and past ``max_entries`` keys
    the oldest are forgotten first."""

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        lockout: float,
        max_failures_per_user: int | None = None,
        max_entries: int = 50_000,
    ) -> None:
        self.max_failures = max_failures
        self.max_failures_per_user = max_failures_per_user or max_failures * 4
        self.window = window
        self.lockout = lockout
        self.max_entries = max_entries
        self._failures: dict[str, deque[float]] = {}  # "ip:<addr>" / "user:<name>", oldest first
        self._locked_until: dict[str, float] = {}

    def locked(self, ip: str) -> bool:
        return self._locked(f"ip:{ip}")

    def user_locked(self, user: str) -> bool:
        return self._locked(f"user:{user.lower()}")

    def _locked(self, key: str) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._locked_until[key]
        return False

    def failed(self, ip: str, user: str = "") -> None:
        self._count(f"ip:{ip}", self.max_failures, peer=ip)
        if user:
            self._count(f"user:{user.lower()}", self.max_failures_per_user, peer=ip)

    def _count(self, key: str, limit: int, *, peer: str) -> None:
        now = time.monotonic()
        failures = self._failures.pop(key, None) or deque()
        self._failures[key] = failures  # most recently failed last
        failures.append(now)
        while failures and failures[0] < now - self.window:
            failures.popleft()
        if len(failures) >= limit:
            self._locked_until[key] = now + self.lockout
            failures.clear()
            metrics.SMTP_LOCKOUTS.inc()
            log.warning("auth lock-out", key=key.split(":", 1)[0], peer=peer, seconds=self.lockout)
        self._forget(now)

    def _forget(self, now: float) -> None:
        while len(self._failures) > self.max_entries:
            del self._failures[next(iter(self._failures))]
        while len(self._locked_until) > self.max_entries:
            del self._locked_until[next(iter(self._locked_until))]
        stale = [
            k for k, f in list(self._failures.items())[:100] if not f or f[-1] < now - self.window
        ]
        for key in stale:
            del self._failures[key]

    def succeeded(self, ip: str) -> None:
        self._failures.pop(f"ip:{ip}", None)

    def __len__(self) -> int:
        return len(self._failures) + len(self._locked_until)


class Authenticator:
    """Checks SMTP usernames and passwords (Argon2id, in a worker thread)."""

    def __init__(self, directory: Directory, policy: RelayPolicy) -> None:
        self.directory = directory
        self.policy = policy

    async def verify(self, username: str, password: str) -> Identity | None:
        doc = await self.directory.credential(username)
        ok = await asyncio.to_thread(
            credentials.verify_password, doc["password_hash"] if doc else None, password
        )
        if not ok or doc is None:
            return None
        return self.policy.identity(
            doc["tenant"],
            allowed_from=tuple(doc.get("allowed_from", ())),
            credential=f"smtp:{username}",
        )


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
class _Introspection:
    """What aiosmtpd's ``SMTP.__init__`` asks of ``inspect``, remembered per class.

    aiosmtpd (pinned) builds each new connection's table of AUTH methods with
    ``inspect.getmembers`` over the protocol object and the handler, which reads every
    attribute of both (properties included), and reads the EHLO hook's signature: about half
    of the ~0.3 ms a connection cost before its greeting. The AUTH method names and the
    signatures depend on the classes only, so they are looked up once; the methods are still
    taken from each new object."""

    def __init__(self) -> None:
        self._auth_names: dict[type, tuple[str, ...]] = {}
        self._signatures: dict[Any, inspect.Signature] = {}

    def getmembers(self, obj: object) -> list[tuple[str, Any]]:
        # aiosmtpd keeps only the members named auth_*; these are all it gets.
        names = self._auth_names.get(type(obj))
        if names is None:
            names = tuple(n for n in dir(type(obj)) if n.startswith("auth_"))
            self._auth_names[type(obj)] = names
        own = [n for n in getattr(obj, "__dict__", {}) if n.startswith("auth_") and n not in names]
        return [(n, getattr(obj, n)) for n in (*names, *own)]

    def signature(self, function: Any) -> inspect.Signature:
        key = (getattr(function, "__func__", function), hasattr(function, "__self__"))
        found = self._signatures.get(key)
        if found is None:
            found = self._signatures[key] = inspect.signature(function)
        return found


aiosmtpd.smtp.inspect = _Introspection()  # type: ignore[assignment]

_HOOK_PREFIXES = ("smtp_", "handle_")
_hook_names: dict[type, tuple[str, ...]] = {}


def _hook_dir(obj: object) -> list[str]:
    """``dir()`` as aiosmtpd's ``SMTP.__init__`` uses it: the names of the protocol's
    ``smtp_*`` commands and the handler's ``handle_*`` hooks, which it filters out of every
    attribute name of both on each new connection (~70 µs). The class's names are looked up
    once; the object's own still count."""
    names = _hook_names.get(type(obj))
    if names is None:
        names = _hook_names[type(obj)] = tuple(
            n for n in dir(type(obj)) if n.startswith(_HOOK_PREFIXES)
        )
    own = [n for n in getattr(obj, "__dict__", ()) if n.startswith(_HOOK_PREFIXES)]
    return [*names, *own] if own else list(names)


aiosmtpd.smtp.dir = _hook_dir  # type: ignore[attr-defined]  # its only uses: those two

_AIOSMTPD_BOGUS_LIMIT = "502 5.5.1 Too many unrecognized commands"  # then it closes
_NOT_SMTP = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "HOST:"})


def _parse_path(arg: str) -> tuple[str, str]:
    """The address of an SMTP path and what follows it, read as aiosmtpd reads them
    (HeaderParseError if it is none)."""
    if arg.lstrip().startswith("<"):
        address, rest = get_angle_addr(arg)
    else:
        address, rest = get_addr_spec(arg)
    return str(address.addr_spec), str(rest)


class HatoSMTP(SMTP):
    """aiosmtpd's SMTP with enhanced status codes on every reply, source routes refused,
    password checks that do not block the event loop, and the SessionGuard's rules."""

    _in_ehlo = False
    _stashed: tuple[str, LoginPassword] | None = None
    listener = "relay"  # the metrics' name of the listener (SmtpListener sets it)
    guard = SessionGuard()  # SmtpListener sets the process's own
    _tls_counted = False
    _greeted = False
    _errors = 0
    _client: str | None = None  # the address counted in guard.open
    _over_limit = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ehlo_lines: list[str] = []  # the EHLO reply's lines, until its last
        for command in _NOT_SMTP:
            self._smtp_methods[command] = self._not_smtp

    def connection_made(self, transport: Any) -> None:
        new = self._original_transport is None  # not the TLS layer after STARTTLS
        if new:
            metrics.SMTP_SESSIONS.labels(self.listener).inc()
            metrics.SMTP_OPEN.labels(self.listener).inc()
        super().connection_made(transport)
        if new and self.session is not None:
            self._client = _peer_ip(self.session)
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
        if self._in_ehlo and isinstance(status, str):
            # aiosmtpd pushes each line of the EHLO reply on its own: one write (a system
            # call) each. They go out together with the last line.
            if status[3:4] == "-":
                self._ehlo_lines.append(status)
                return
            status, self._ehlo_lines = "\r\n".join([*self._ehlo_lines, status]), []
        if isinstance(status, str) and not self._in_ehlo:
            status = replies.with_enhanced_code(status)
            metrics.smtp_reply(status)
        await super().push(status)
        if isinstance(status, str) and status[:1] in ("4", "5") and status[:3] != "421":
            self._errors += 1
            if self._errors >= self.guard.max_errors:
                await self._drop(str(replies.TOO_MANY_ERRORS))

    async def _refusal_before_greeting(self) -> SMTPReply | None:
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

    async def _drop(self, reply: SMTPReply | str) -> None:
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
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False
        # The first EHLO over TLS (after STARTTLS, or at once on implicit TLS): one count
        # per session that encrypted.
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        if ssl_object is not None and not self._tls_counted:
            self._tls_counted = True
            metrics.SMTP_TLS.labels(self.listener, ssl_object.version() or "unknown").inc()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's own version, less the typing.Protocol class it defines on every call
        # (a class creation per MAIL and RCPT: a tenth of the command's cost); and no
        # source routes.
        if _SOURCE_ROUTE.match(arg):
            return None, None
        if not arg:
            return "", ""
        plain = _PLAIN_PATH.match(arg)
        if plain is not None:  # what the parser below would answer: 1.6 us instead of 95
            addr, rest = plain.group(1), plain.group(2)
        else:
            try:
                addr, rest = _parse_path(arg)
            except HeaderParseError:
                return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

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
    ) -> None:
        self.policy = policy
        self.acceptor = acceptor
        self.authenticator = authenticator
        self.throttle = throttle
        self.mode = mode
        self.max_recipients = max_recipients
        self.max_size = max_size
        self.stopping = False

    def identity(self, session: Session) -> Identity | None:
        """Who the client is: its AUTH identity, else its authorised network's, else None."""
        if session.authenticated and isinstance(session.auth_data, Identity):
            return session.auth_data
        return self.policy.tenant_for_peer(_peer_ip(session))

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
        if self.throttle.locked(_peer_ip(session)):
            metrics.SMTP_AUTH.labels("locked").inc()
            return str(replies.AUTH_LOCKED)
        return MISSING  # aiosmtpd goes on with the mechanism

    async def authenticate(self, session: Session, login: LoginPassword) -> AuthResult:
        ip = _peer_ip(session)
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
            log.info("relay denied", peer=_peer_ip(session), rcpt_domain=address.rpartition("@")[2])
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
                        "client.address": _peer_ip(session),
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
            content.check(raw)
        except content.ContentError as exc:
            loop = isinstance(exc, content.TooManyHops)
            return str(replies.content_refused(str(exc), loop=loop))
        headers = summarize_headers(raw)
        if headers.from_address is None or headers.from_domain is None:
            return str(replies.NO_FROM_HEADER)
        if not self.policy.may_send_from(identity, headers.from_address):
            return str(replies.FROM_NOT_ALLOWED)
        hlog.bind(tenant=identity.tenant)  # the session's task: later lines of it carry it too
        if self.mode is Mode.SUBMISSION:  # RFC 6409 8.2, 8.3: an MSA completes the header
            raw = complete_header(raw, headers.from_domain)
            headers = summarize_headers(raw)
        submission = Submission(
            identity=identity,
            mail_from=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            raw=raw,
            headers=headers,
            door="smtp",
            client=_peer_ip(session),
            received_from=f"{session.host_name or 'unknown'} ([{_peer_ip(session)}])",
            protocol=_protocol(session),
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


def complete_header(raw: bytes, domain: str) -> bytes:
    """``raw`` with a Date and a Message-ID added when it has none (at the top of the header)."""
    end = raw.find(b"\r\n\r\n")
    head = (raw if end < 0 else raw[: end + 2]).lower()
    added = b""
    if not head.startswith(b"date:") and b"\r\ndate:" not in head:
        added += b"Date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
    if not head.startswith(b"message-id:") and b"\r\nmessage-id:" not in head:
        added += b"Message-ID: " + email.utils.make_msgid(domain=domain).encode() + b"\r\n"
    return added + raw if added else raw


def _protocol(session: Session) -> str:
    """The Received field's ``with`` (RFC 3848): ESMTP, plus S for TLS and A for AUTH."""
    tls = "S" if session.ssl else ""
    auth = "A" if session.authenticated else ""
    return f"ESMTP{tls}{auth}" if session.extended_smtp else f"SMTP{tls}{auth}"


def _peer_ip(session: Session) -> str:
    peer: Any = session.peer
    return peer[0] if isinstance(peer, tuple) else str(peer)


def _size_option(options: list[str]) -> int | None:
    for option in options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


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
        self.host = host
        self.port = port
        self._hostname = hostname
        self._tls = tls
        self._implicit = implicit_tls
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        starttls = None if self._implicit else self._tls
        protocol = HatoSMTP(
            self.handler,
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
        protocol.listener = "smtps" if self._implicit else self.handler.mode.value
        protocol.guard = self.guard
        return protocol

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, ssl=self._tls if self._implicit else None
        )
        self.port = self._server.sockets[0].getsockname()[1]
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
        if self._server is not None:
            self._server.close()

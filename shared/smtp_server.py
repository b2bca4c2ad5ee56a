"""What Hato's SMTP listeners share — ingest's doors, the bounce listener and the dev sink:
aiosmtpd's per-connection set-up done once per class, one reading of SMTP paths (no source
routes), the EHLO reply in one write, and
the listening socket.

aiosmtpd (pinned in pyproject.toml) is patched here, for every listener of the process: the
module-level ``inspect`` and ``dir`` it uses when it builds a connection's tables.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import ssl
from collections.abc import Callable
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

import aiosmtpd.smtp
from aiosmtpd.smtp import MISSING, SMTP, syntax

__all__ = ["Listener", "Protocol", "parse_path", "read_data"]


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


SOURCE_ROUTE = re.compile(r"\s*<\s*@")  # RFC 5321 4.1.2 obs-route: "<@relay:user@host>"
# The common path, <dot-atom@host.name> and maybe parameters, read without the RFC 5322
# parser; anything else (quoted local parts, comments, literals, UTF-8) goes to the parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
PLAIN_PATH = re.compile(
    rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]+(?![\s(])|\Z)(.*)",
    re.S,
)


def parse_path(arg: str) -> tuple[str, str]:
    """The address of an SMTP path and what follows it, read as aiosmtpd reads them
    (HeaderParseError if it is none)."""
    if arg.lstrip().startswith("<"):
        address, rest = get_angle_addr(arg)
    else:
        address, rest = get_addr_spec(arg)
    return str(address.addr_spec), str(rest)


class Protocol(SMTP):
    """aiosmtpd's SMTP as every Hato listener speaks it: paths read once and fast (the null
    reverse-path ``<>`` of bounces, RFC 5321 4.5.5, reads as ``<>``), source routes
    refused, and the EHLO reply's lines in one write (aiosmtpd writes each on its own, a
    system call each)."""

    _in_ehlo = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ehlo_lines: list[str] = []  # the EHLO reply's lines, until its last

    async def push(self, status: str | bytes) -> None:
        if self._in_ehlo and isinstance(status, str):
            if status[3:4] == "-":
                self._ehlo_lines.append(status)
                return
            status, self._ehlo_lines = "\r\n".join([*self._ehlo_lines, status]), []
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd's own, with the content read by read_data: the same answers, for a
        # fraction of the CPU (its loop costs a few µs per line: ~1 ms for 20 KB).
        if self._decode_data:
            await super().smtp_DATA(arg)
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            fault, content = await read_data(
                self._reader, size_limit=self.data_size_limit, line_limit=self.line_length_limit
            )
        except asyncio.CancelledError:
            self._writer.close()  # the connection went during DATA
            raise
        if fault is not None:
            await self.push(fault)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA") if "DATA" in self._handle_hooks else MISSING
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd's own version, less the typing.Protocol class it defines on every call
        # (a class creation per MAIL and RCPT: a tenth of the command's cost); and no
        # source routes.
        if SOURCE_ROUTE.match(arg):
            return None, None
        if not arg:
            return "", ""
        plain = PLAIN_PATH.match(arg)
        if plain is not None:  # what the parser below would answer: 1.6 us instead of 95
            addr, rest = plain.group(1), plain.group(2)
        else:
            try:
                addr, rest = parse_path(arg)
            except HeaderParseError:
                return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest


_END = b"\r\n.\r\n"  # RFC 5321 4.1.1.4: the end of the mail data
_READ = 1 << 16
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"  # aiosmtpd's words, for the
TOO_MUCH_DATA = "552 Error: Too much mail data"  # listeners that translate them


async def read_data(
    reader: asyncio.StreamReader, *, size_limit: int | None, line_limit: int
) -> tuple[str | None, bytes]:
    """The mail data after ``354``, up to the line holding a lone dot, with the dots of
    transparency removed (RFC 5321 4.5.2): ``(None, content)``; or, once all of it has been
    read, the reply for data that broke a limit and no content. A line is too long when,
    with its CRLF, it is longer than ``line_limit``; data is too much beyond ``size_limit``
    octets (CRLFs and transparency dots counted; None or 0: no limit). These are aiosmtpd's
    rules; it applies them line by line in Python, this reads in blocks and lets ``bytes``
    methods find the lines. What the client sent after the end (pipelined commands) stays in
    ``reader``."""
    buf = bytearray(b"\r\n")  # the CRLF that ended "DATA": the data may end at once
    fault: str | None = None
    while True:
        scan = max(len(buf) - 4, 0)
        chunk = await reader.read(_READ)
        if not chunk:  # the connection ended; aiosmtpd's eof_received cancels the session
            raise asyncio.CancelledError
        buf += chunk
        end = buf.find(_END, scan)
        if end >= 0:
            break
        if fault is None and size_limit and len(buf) - 2 > size_limit + 5:
            fault = _line_fault(buf, line_limit) or TOO_MUCH_DATA
        if fault is not None:  # let it go, but for what may begin the end mark
            del buf[:-4]
    rest = bytes(buf[end + len(_END) :])
    if rest:  # put back what follows the data (bytes the client pipelined)
        reader._buffer[:0] = rest  # type: ignore[attr-defined]
    if fault is not None:
        return fault, b""
    del buf[end + 2 :]  # the data: its lines, each with its CRLF, after the leading CRLF
    fault = _line_fault(buf, line_limit)
    if fault is None and size_limit and len(buf) - 2 > size_limit:
        fault = TOO_MUCH_DATA
    if fault is not None:
        return fault, b""
    return None, bytes(buf).replace(b"\r\n.", b"\r\n")[2:]


def _line_fault(data: bytes | bytearray, line_limit: int) -> str | None:
    longest = max(map(len, data.split(b"\r\n")))
    return LINE_TOO_LONG if longest + 2 > line_limit else None


class Listener:
    """One listening socket; each connection gets a new object from ``protocol``."""

    def __init__(
        self,
        protocol: Callable[[], SMTP],
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.protocol = protocol
        self.host = host
        self.port = port  # 0: any; the port taken once started
        self.tls = tls  # implicit TLS (port 465); STARTTLS is the protocol's
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.protocol, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    def close(self) -> None:
        """Take no more connections (open sessions go on)."""
        if self._server is not None:
            self._server.close()

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
from aiosmtpd.smtp import SMTP

__all__ = ["Listener", "Protocol", "parse_path"]


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

"""PIPELINING (RFC 2920), CHUNKING (RFC 3030), and DATA with RFC 5321's two timeouts, on top
of aiosmtplib.

aiosmtplib keeps one reply waiter per connection and drops reply bytes that arrive before the
previous reply was picked up, so replies to commands sent together would be lost. Its
connection's protocol is switched to ``PipeliningProtocol``, which keeps such bytes buffered and
hands out one complete reply per ``read_response``; ``envelope()`` then writes MAIL FROM, every
RCPT TO and, to end the group, DATA or the whole message as one last BDAT chunk in one go and
reads their replies in order. ``data()`` waits for the 354 and for the final reply each with
its own timeout (RFC 5321 4.5.3.2: two minutes and ten), where aiosmtplib's ``data()`` gives
both one; ``chunk()`` sends the message as one BDAT chunk after the envelope's replies. This
leans on internals of aiosmtplib 5.1 (the reply buffer, the command lock and the
reply-pending flag), pinned in pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    MAX_RESPONSE_LENGTH,
    SMTPProtocol,
    normalize_message_line_endings,
)
from aiosmtplib.response import SMTPResponse
from aiosmtplib.typing import SMTPStatus

DATA = b"DATA\r\n"


class PipeliningProtocol(SMTPProtocol):
    """An SMTPProtocol that never drops a reply that came early."""

    def data_received(self, data: bytes) -> None:
        if self._response_waiter is None:
            return
        self._buffer.extend(data)
        if len(self._buffer) > MAX_RESPONSE_LENGTH * 64:
            del self._buffer[:]
            self._set_response_exception(
                self._response_waiter,
                aiosmtplib.SMTPResponseException(500, "Response too long"),
            )
            return
        self._hand_out()

    def _hand_out(self) -> None:
        waiter = self._response_waiter
        if waiter is None or waiter.done():
            return  # the reply stays buffered for the next read_response
        try:
            response = self._read_response_from_buffer()
        except Exception as exc:
            self._set_response_exception(waiter, exc)
            return
        if response is not None:
            waiter.set_result(response)

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        self._hand_out()  # a reply may already be complete in the buffer
        return await super().read_response(timeout)


def enable(client: aiosmtplib.SMTP) -> bool:
    """Switch a connected client to pipelining if the server offers it."""
    if not client.supports_extension("pipelining") or client.protocol is None:
        return False
    client.protocol.__class__ = PipeliningProtocol
    return True


async def envelope(
    client: aiosmtplib.SMTP,
    mail_from: str,
    recipients: Sequence[str],
    timeout: float,
    options: Sequence[str] = (),
    *,
    last: bytes = b"",
    last_timeout: float | None = None,
) -> tuple[SMTPResponse, list[SMTPResponse], SMTPResponse | None]:
    """MAIL FROM (with ``options``, e.g. BODY=8BITMIME), all RCPT TO and ``last`` in one
    write; (MAIL reply, RCPT replies, the reply to ``last`` within ``last_timeout`` or None
    without it). ``last`` may end the group with ``DATA`` (RFC 2920 3.1; after a 354 the
    message must follow, ``body()``) or with the message as one last chunk (``bdat()``; RFC
    3030 4.2 lets BDAT be pipelined, and a server that refused every recipient still reads
    the chunk and refuses it)."""
    mail = " ".join([f"MAIL FROM:{quote_address(mail_from)}", *options])
    commands = [mail.encode("ascii")]
    commands += [b"RCPT TO:" + quote_address(r).encode("ascii") for r in recipients]
    if any(b"\r" in c or b"\n" in c for c in commands):
        raise ValueError("a line break in an address")
    protocol = client.protocol
    assert protocol is not None and protocol._command_lock is not None
    async with protocol._command_lock:
        protocol.write(b"".join(c + b"\r\n" for c in commands) + last)
        replies = [await protocol.read_response(timeout=timeout) for _ in commands]
        ended = None
        if last:
            ended = await protocol.read_response(timeout=last_timeout)
    return replies[0], replies[1:], ended


def bdat(message: bytes) -> bytes:
    """The message as one last BDAT chunk (RFC 3030 2): the command with the chunk's size,
    then the message as it is, CRLF line ends and no dot-stuffing or end marker."""
    message = _crlf(message)
    return b"BDAT %d LAST\r\n" % len(message) + message


async def chunk(client: aiosmtplib.SMTP, message: bytes, *, timeout: float) -> SMTPResponse:
    """The message as one last BDAT chunk after the envelope's replies, and the reply to it
    (``timeout`` for it); raises as ``body()`` does."""
    return await _final(client, bdat(message), timeout)


async def body(client: aiosmtplib.SMTP, message: bytes, *, timeout: float) -> SMTPResponse:
    """The message after a 354, and the final reply (``timeout`` for it); raises as
    ``data()`` does."""
    return await _final(client, _dot_stuffed(message), timeout)


async def _final(client: aiosmtplib.SMTP, payload: bytes, timeout: float) -> SMTPResponse:
    """``payload`` (a message as DATA or BDAT sends it) and the reply to it; a refusal
    raises SMTPDataError, and a timeout or a lost connection closes the client."""
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:
            protocol._response_pending = True
            protocol.write(payload)
            response = await protocol.read_response(timeout=timeout)
            if response.code != SMTPStatus.completed:
                raise aiosmtplib.SMTPDataError(response.code, response.message)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    return response


def _crlf(message: bytes) -> bytes:
    """The message as it goes on the wire: CRLF line ends, ending in one. A message that
    has them already (all of them do: ingest stores them so) is taken as it is, in a tenth
    of the time aiosmtplib's regular expressions take."""
    crlf = message.count(b"\r\n")
    if message.count(b"\n") != crlf or message.count(b"\r") != crlf:
        return normalize_message_line_endings(message)
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def _dot_stuffed(message: bytes) -> bytes:
    """The message as DATA sends it: CRLF line ends, leading dots doubled, the final dot."""
    stuffed = _crlf(message).replace(b"\r\n.", b"\r\n..")
    return (b"." + stuffed if stuffed.startswith(b".") else stuffed) + b".\r\n"


async def data(
    client: aiosmtplib.SMTP, message: bytes, *, start_timeout: float, end_timeout: float
) -> SMTPResponse:
    """DATA, the message and its final reply: ``start_timeout`` for the 354, ``end_timeout``
    for the reply to the final dot. Raises as aiosmtplib's ``data()`` does (SMTPDataError on
    a refusal; on a timeout or a lost connection the client is closed)."""
    protocol = client.protocol
    if protocol is None or protocol._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:
            protocol._response_pending = True
            protocol.write(DATA)
            start = await protocol.read_response(timeout=start_timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise
    if start.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    return await body(client, message, timeout=end_timeout)

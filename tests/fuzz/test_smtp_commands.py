"""The SMTP door's command handling under fuzzing: a real HatoSMTP listener on loopback (with
the relay rules, and a stand-in acceptor) answers any sequence of command lines with a
well-formed reply, each with an enhanced status code, and keeps serving afterwards."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.ingest import replies
from services.ingest.policy import RelayPolicy
from services.ingest.smtp import AuthThrottle, Mode, RelayHandler, SessionGuard, SmtpListener
from shared.errors import Unavailable

REPLY = re.compile(rb"^(\d{3})([ -])(.*)$")
ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")


class _Unavailable:
    """The acceptor when the database or broker is down: every DATA ends in 451 4.3.0."""

    async def accept(self, submission):
        raise Unavailable("fuzzing")


@pytest.fixture(scope="module")
def door() -> Iterator[tuple[str, int]]:
    policy = RelayPolicy()
    policy.load(
        [{"_id": "acme", "networks": ["127.0.0.1/32"]}],
        [{"_id": "shop.test", "tenant": "acme", "verified": True}],
    )
    handler = RelayHandler(
        policy,
        _Unavailable(),  # type: ignore[arg-type]
        SimpleNamespace(verify=None),  # type: ignore[arg-type]  # no AUTH over plain text
        AuthThrottle(max_failures=1000, window=60, lockout=1),
        mode=Mode.RELAY,
        max_recipients=5,
        max_size=10_000,
    )
    guard = SessionGuard(greet_pause=0, max_errors=1000, per_client=1000)
    loop = asyncio.new_event_loop()
    listener = SmtpListener(
        handler, host="127.0.0.1", port=0, hostname="mx.hato.test", guard=guard, timeout=5
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(listener.start(), loop).result(5)
    yield "127.0.0.1", listener.port
    asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _replies(sock: socket.socket, buffer: bytearray) -> list[bytes]:
    """One whole (possibly multi-line) reply."""
    lines = []
    while True:
        while b"\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buffer += chunk
        line, _, rest = bytes(buffer).partition(b"\r\n")
        buffer[:] = rest
        lines.append(line)
        match = REPLY.match(line)
        assert match, line
        if match.group(2) == b" ":
            return lines


COMMANDS = st.sampled_from(
    [
        "EHLO client.test", "HELO client.test", "MAIL FROM:<a@shop.test>", "MAIL FROM:<>",
        "MAIL FROM:<a@shop.test> SIZE=99999999", "MAIL FROM:<@relay:a@shop.test>",
        "RCPT TO:<b@ok.test>", "RCPT TO:<b%c@ok.test>", "RCPT TO:<\"b@c\"@ok.test>",
        "RCPT TO:<b@[127.0.0.1]>", "DATA", "RSET", "NOOP", "VRFY b@ok.test", "EXPN list",
        "HELP", "AUTH PLAIN AGIAGI=", "AUTH LOGIN", "STARTTLS", "BDAT 10", "MAIL", "RCPT",
        "MAIL FROM:", "RCPT TO:", "EHLO", "MAIL FROM:<a@shop.test> BODY=8BITMIME",
        "MAIL FROM:<a@shop.test> SMTPUTF8",
    ]
)  # fmt: skip
_junk = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=80)
LINES = st.one_of(COMMANDS, _junk, st.builds(lambda c, j: c + j, COMMANDS, _junk))


@given(st.lists(LINES, min_size=1, max_size=12))
def test_any_command_sequence_gets_well_formed_replies(
    door: tuple[str, int], lines: list[str]
) -> None:
    """Every reply after the greeting is ``ddd<SP or ->``, with an enhanced code but to HELO
    and EHLO (RFC 2034); no reply says the server failed; QUIT still gets 221."""
    with socket.create_connection(door, timeout=5) as sock:
        buffer = bytearray()
        greeting = _replies(sock, buffer)[-1]
        if greeting.startswith(b"421 4.7.0 "):  # this client's session limit
            return
        assert greeting.startswith(b"220 ")
        for line in lines:
            sock.sendall(line.encode("utf-8") + b"\r\n")
            reply = _replies(sock, buffer)
            last = reply[-1].decode("utf-8", "replace")
            if last[:3] == "354":  # in DATA: send a message (refused) and its end
                sock.sendall(b"From: a@shop.test\r\n\r\nx\r\n.\r\n")
                last = _replies(sock, buffer)[-1].decode("utf-8", "replace")
            elif last[:3] == "334":  # in AUTH: give up
                sock.sendall(b"*\r\n")
                last = _replies(sock, buffer)[-1].decode("utf-8", "replace")
            if not line.upper().startswith(("EHLO", "HELO")):  # RFC 2034: those have none
                assert ENHANCED.match(last), last
            assert not last.startswith(("5.", "421 4.3.0")), last
            if last.startswith(("421 4.7.0 ", "554 5.5.0 ")):  # error limit, not SMTP (a
                assert sock.recv(1) == b""  # line starting GET, HOST: ...): closed after it
                return
        sock.sendall(b"QUIT\r\n")
        assert _replies(sock, buffer)[-1].startswith(b"221 ")


@given(st.text(max_size=120))
def test_with_enhanced_code_never_raises_and_adds_a_valid_code(line: str) -> None:
    """Any reply line: unchanged, or the same line with a valid enhanced code after the code."""
    out = replies.with_enhanced_code(line)
    if out != line:
        assert ENHANCED.match(out) and out[:4] == line[:4] and out.endswith(line[4:])
        assert out[4] == line[0]  # 4xx gets 4.x.x, 5xx 5.x.x (RFC 3463 2)


def test_five_unknown_commands_end_the_session_with_421(door: tuple[str, int]) -> None:
    """aiosmtpd's own limit said 502 and closed; a client must be told the session ends."""
    with socket.create_connection(door, timeout=5) as sock:
        buffer = bytearray()
        assert _replies(sock, buffer)[-1].startswith(b"220 ")
        for _ in range(5):
            sock.sendall(b"XYZZY\r\n")
            last = _replies(sock, buffer)[-1]
        assert last.startswith(b"421 4.7.0 Too many unrecognized commands")
        assert sock.recv(1) == b""

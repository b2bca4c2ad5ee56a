"""Hato's listeners read DATA in blocks (``read_data``) instead of aiosmtpd's line-by-line loop:
for any data a client sends, the answer, the content the handler gets and what the session
does next must be aiosmtpd's own. Each case is sent to two real servers on loopback, one
speaking aiosmtpd's ``SMTP`` and one Hato's ``Protocol``, and the two are compared."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.smtp_server import Protocol

SIZE_LIMIT = 600
LINE_LIMIT = 80


class Keep:
    def __init__(self) -> None:
        self.contents: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.contents.append(envelope.original_content)
        assert envelope.content == envelope.original_content
        return "250 2.0.0 kept"


class Servers:
    """One loop in a thread-free fixture: servers started on demand, per protocol class."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers: dict[type, tuple[asyncio.Server, Keep]] = {}

    def start(self, cls: type[SMTP]) -> tuple[int, Keep]:
        keep = Keep()

        def factory() -> SMTP:
            server = cls(
                keep,
                hostname="mx.test",
                data_size_limit=SIZE_LIMIT,
                decode_data=False,
                loop=self.loop,
            )
            server.line_length_limit = LINE_LIMIT
            return server

        server = self.loop.run_until_complete(self.loop.create_server(factory, "127.0.0.1", 0))
        self.servers[cls] = (server, keep)
        return server.sockets[0].getsockname()[1], keep

    def close(self) -> None:
        for server, _ in self.servers.values():
            server.close()
            self.loop.run_until_complete(server.wait_closed())
        self.loop.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[type, tuple[int, Keep]]]:
    s = Servers()
    started = {cls: s.start(cls) for cls in (SMTP, Protocol)}
    yield {**started, "loop": s.loop}  # type: ignore[dict-item]
    s.close()


async def _session(port: int, data: bytes, chunk: int) -> bytes:
    """EHLO, MAIL, RCPT, DATA, then ``data`` in pieces of ``chunk`` octets, then NOOP and
    QUIT pipelined after it; everything the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()  # greeting
        writer.write(b"EHLO client.test\r\nMAIL FROM:<a@client.test>\r\n")
        writer.write(b"RCPT TO:<b@mx.test>\r\nDATA\r\n")
        await writer.drain()
        for i in range(0, len(data), chunk):
            writer.write(data[i : i + chunk])
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(b"NOOP\r\nQUIT\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def _both(servers: dict[Any, Any], data: bytes, chunk: int) -> tuple[Any, Any]:
    loop = servers["loop"]
    out = []
    for cls in (SMTP, Protocol):
        port, keep = servers[cls]
        keep.contents.clear()
        replies = loop.run_until_complete(_session(port, data, chunk))
        out.append((replies.replace(b"mx.test", b"X"), list(keep.contents)))
    return out[0], out[1]


@pytest.mark.parametrize(
    ("data", "expect"),
    [
        (b".\r\n", b""),  # nothing at all
        (b"Subject: x\r\n\r\nbody\r\n.\r\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"a\r\n..b\r\n...\r\n.c\r\n.\r\n", b"a\r\n.b\r\n..\r\nc\r\n"),  # transparency
        (b"a\r\n.\r\nb\r\n.\r\n", b"a\r\n"),  # after the end: "b" is a command
    ],
)
def test_data_is_read_as_aiosmtpd_reads_it(
    servers: dict[Any, Any], data: bytes, expect: bytes
) -> None:
    """Empty data, transparency dots and commands pipelined after the end."""
    ours, theirs = _both(servers, data, chunk=7)
    assert ours == theirs
    assert theirs[1] == [expect]


@pytest.mark.parametrize("length", [LINE_LIMIT - 3, LINE_LIMIT - 2, LINE_LIMIT - 1, LINE_LIMIT])
def test_the_longest_line_taken_is_aiosmtpds(servers: dict[Any, Any], length: int) -> None:
    """A line is too long when, with its CRLF, it is longer than the limit."""
    data = b"a\r\n" + b"x" * length + b"\r\nb\r\n.\r\n"
    ours, theirs = _both(servers, data, chunk=13)
    assert ours == theirs
    assert (theirs[1] == []) is (length + 2 > LINE_LIMIT)


def test_limits_answer_as_aiosmtpd_answers(servers: dict[Any, Any]) -> None:
    """A line over the limit (500) and data over the size (552): the data is read to its end
    and let go, and the session goes on with the commands that follow."""
    long_line = b"x" * LINE_LIMIT + b"\r\n.\r\n"
    too_much = b"y" * 70 + b"\r\n"
    for data in (long_line, too_much * 20 + b".\r\n", b"x" * 5000 + b"\r\n.\r\n"):
        ours, theirs = _both(servers, data, chunk=64)
        assert ours == theirs
        assert theirs[1] == []
        assert b"\r\n500 " in theirs[0] or b"\r\n552 " in theirs[0]
        assert theirs[0].endswith(b"221 Bye\r\n")


_lines = st.lists(
    st.one_of(
        st.sampled_from([b"", b".", b"..", b".x", b"\r", b"a\rb", b"\n", b"q\nr", b"Subject: hi"]),
        st.binary(max_size=LINE_LIMIT + 4).map(lambda b: b.replace(b"\r\n", b"~")),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(lines=_lines, chunk=st.integers(min_value=1, max_value=97))
def test_any_data_reads_the_same(servers: dict[Any, Any], lines: list[bytes], chunk: int) -> None:
    """Any lines (bare CR and LF, dots, binary) in any pieces: the same answers and content."""
    # A client stuffs a lone dot (the end was tried above); the rest goes as it comes.
    data = b"".join((b".." if line == b"." else line) + b"\r\n" for line in lines) + b".\r\n"
    ours, theirs = _both(servers, data, chunk)
    assert ours == theirs

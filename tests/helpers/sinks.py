"""Real SMTP servers on loopback that answer as a test tells them (aiosmtpd)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.testing import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str = ""
    helo: str = ""
    at: float = 0.0
    mail_options: list[str] = field(default_factory=list)


@dataclass
class Sink:
    """An SMTP server whose DATA reply comes from ``reply`` (called with the attempt number);
    ``rcpt_reply`` can refuse single recipients, ``data_reply`` a message after DATA by its
    recipients, ``peer_reply`` by the client's address (a receiver that blocks one IP)."""

    host: str = "127.0.0.1"
    reply: Callable[[int], str] = lambda _n: "250 2.0.0 Ok: stored"
    rcpt_reply: Callable[[str], str | None] = lambda _addr: None
    data_reply: Callable[[list[str]], str | None] = lambda _rcpts: None
    peer_reply: Callable[[str], str | None] = lambda _peer: None
    port: int = 0
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    delay: float = 0.0
    active: int = 0
    max_active: int = 0
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_RCPT(self, server, session: Session, envelope: Envelope, address, options):
        refusal = self.rcpt_reply(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session: Session, envelope: Envelope) -> str:
        self.attempts += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        answer = (
            self.peer_reply(session.peer[0])
            or self.data_reply(list(envelope.rcpt_tos))
            or self.reply(self.attempts)
        )
        if answer.startswith("2"):
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    peer=session.peer[0],
                    helo=session.host_name or "",
                    at=asyncio.get_running_loop().time(),
                    mail_options=list(envelope.mail_options),
                )
            )
            self._arrived.set()
        return answer

    async def start(self) -> Sink:
        loop = asyncio.get_running_loop()
        self.port = self.port or free_port(self.host)
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", enable_SMTPUTF8=True, loop=loop),
            self.host,
            self.port,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def wait_for(self, count: int = 1, timeout: float = 30) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

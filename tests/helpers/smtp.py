"""Talking to Hato's SMTP door as a client does, keeping every reply."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib


@dataclass(frozen=True)
class Outcome:
    """The reply that ended the transaction (or the DATA reply when it went through)."""

    code: int
    message: str
    stage: str  # "mail", "rcpt", "data"

    @property
    def queued_id(self) -> str:
        assert self.code == 250 and "queued as" in self.message, self
        return self.message.rsplit(" ", 1)[1]


def make_message(
    *, from_: str = "Shop <orders@shop.test>", to: str = "bob@ok.test", subject: str = "Order 1"
) -> bytes:
    m = EmailMessage()
    m["From"] = from_
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = "<order-1@shop.test>"
    m.set_content("Thank you for your order.\n")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


async def send(
    port: int,
    *,
    mail_from: str = "orders@shop.test",
    rcpts: tuple[str, ...] = ("bob@ok.test",),
    data: bytes | None = None,
    source: str | None = None,
    host: str = "127.0.0.1",
) -> Outcome:
    client = aiosmtplib.SMTP(
        hostname=host,
        port=port,
        timeout=30,
        start_tls=False,
        source_address=(source, 0) if source else None,
    )
    await client.connect()
    try:
        try:
            await client.mail(mail_from)
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(exc.code, exc.message, "mail")
        for r in rcpts:
            try:
                await client.rcpt(r)
            except aiosmtplib.SMTPResponseException as exc:
                return Outcome(exc.code, exc.message, "rcpt")
        try:
            response = await client.data(data if data is not None else make_message(to=rcpts[0]))
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(exc.code, exc.message, "data")
        return Outcome(response.code, response.message, "data")
    finally:
        client.close()


class RawSession:
    """A byte-exact SMTP client: what is written is what the server gets (for smuggling
    tests and for reading every line of a reply)."""

    def __init__(self, reader, writer) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, host: str = "127.0.0.1", source: str | None = None):
        import asyncio

        reader, writer = await asyncio.open_connection(
            host, port, local_addr=(source, 0) if source else None
        )
        session = cls(reader, writer)
        await session.reply()  # greeting
        return session

    async def reply(self) -> list[str]:
        """The lines of one reply (a multi-line reply ends at 'NNN ')."""
        lines = []
        while True:
            line = (await self.reader.readline()).decode().rstrip("\r\n")
            if not line:
                raise ConnectionError("connection closed")
            lines.append(line)
            if len(line) < 4 or line[3] == " ":
                return lines

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str) -> list[str]:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.writer.close()

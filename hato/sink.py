"""The dev-mode sink: an SMTP server that accepts everything and writes each message, byte for
byte as received, to one ``.eml`` file in the outbox folder, named
``<time>-<message id>-<n>.eml`` after the Hato message id its VERP return path carries (a
message for several recipients arrives once per recipient), or a random id without VERP."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.ids import new_id
from shared.verp import unverified_message_id


class OutboxHandler:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        message_id = unverified_message_id(envelope.mail_from or "") or new_id()
        self.count += 1
        path = self.outbox / f"{stamp}-{message_id}-{self.count}.eml"
        tmp = path.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_bytes, envelope.original_content or b"")
        tmp.rename(path)
        return f"250 2.0.0 Ok: stored as {path.name}"


async def serve(outbox: Path, host: str, port: int) -> None:
    await asyncio.to_thread(outbox.mkdir, parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    handler = OutboxHandler(outbox)
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="sink.hato.localhost",
            enable_SMTPUTF8=True,
            data_size_limit=None,
            loop=loop,
        ),
        host,
        port,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink: writing messages received on {host}:{port} to {outbox}/", flush=True)
    await stop.wait()
    server.close()

"""The dev-mode sink: an SMTP server that accepts everything and writes each message, byte for
byte as received, to one ``.eml`` file in the outbox folder, named
``<time>-<message id>-<n>.eml`` after the Hato message id — the one a per-message VERP return
path carries, else the one in the Received field Hato's ingest added (a per-recipient return
path names only the recipient; a message for several recipients arrives once per recipient) —
or a random id for mail that came through neither."""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from shared.ids import new_id
from shared.smtp_server import Listener, Protocol
from shared.verp import unverified_message_id

# The Received field ingest adds (services/ingest/accept.py): "(Hato) with <proto> id <id>;"
_HATO_RECEIVED = re.compile(rb"\(Hato\) with [A-Za-z]+ id ([0-9a-f]{8}-[0-9a-f-]{27});")


def message_id_of(mail_from: str, raw: bytes) -> str | None:
    """The Hato message id of a delivered copy, for labelling only (nothing here is verified)."""
    found = unverified_message_id(mail_from)
    if found:
        return found
    header, _, _ = raw.partition(b"\r\n\r\n")
    match = _HATO_RECEIVED.search(header)
    return match.group(1).decode() if match else None


class OutboxHandler:
    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%f")
        raw = envelope.original_content or b""
        message_id = message_id_of(envelope.mail_from or "", raw) or new_id()
        self.count += 1
        path = self.outbox / f"{stamp}-{message_id}-{self.count}.eml"
        tmp = path.with_suffix(".tmp")
        await asyncio.to_thread(tmp.write_bytes, raw)
        tmp.rename(path)
        return f"250 2.0.0 Ok: stored as {path.name}"


async def serve(outbox: Path, host: str, port: int) -> None:
    await asyncio.to_thread(outbox.mkdir, parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    handler = OutboxHandler(outbox)
    listener = Listener(
        lambda: Protocol(
            handler,
            hostname="sink.hato.localhost",
            enable_SMTPUTF8=True,
            data_size_limit=None,
            loop=loop,
        ),
        host=host,
        port=port,
    )
    await listener.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink: writing messages received on {host}:{port} to {outbox}/", flush=True)
    await stop.wait()
    listener.close()

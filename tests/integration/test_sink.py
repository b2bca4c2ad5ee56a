"""The dev-mode sink writes each message byte for byte as received, to a file named after the
message."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import aiosmtplib

from hato.sink import serve
from shared.testing import free_port
from shared.verp import Verp
from tests.helpers.waiting import eventually


async def sink_files(outbox: Path, raw: bytes, sender: str) -> list[Path]:
    """Send ``raw`` from ``sender`` to a sink writing to ``outbox``; the files it wrote."""
    port = free_port()
    task = asyncio.create_task(serve(outbox, "127.0.0.1", port))
    try:
        for _ in range(30):  # until the sink listens
            with contextlib.suppress(OSError):
                await aiosmtplib.send(
                    raw,
                    sender=sender,
                    recipients=["b@example.com"],
                    hostname="127.0.0.1",
                    port=port,
                )
                break
            await asyncio.sleep(0.05)
        return await eventually(lambda: asyncio.sleep(0, list(outbox.glob("*.eml"))))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_each_message_becomes_one_eml_file_byte_for_byte(tmp_path) -> None:
    """Each message becomes one .eml file of exactly the bytes sent: 8-bit header text kept, SMTP's
    dot-stuffing undone."""
    raw = (
        b"From: a@hato.test\r\nTo: b@example.com\r\nSubject: \xe3\x81\x82\r\n\r\n"
        b".leading dot\r\nlast line\r\n"
    )
    files = await sink_files(tmp_path, raw, "a@hato.test")
    assert len(files) == 1
    assert files[0].read_bytes() == raw


async def test_files_are_named_after_the_message_id_of_the_return_path(tmp_path) -> None:
    """A per-message VERP return path names the Hato message: the file says which it holds."""
    message_id = str(uuid.uuid4())
    sender = Verp(b"any key").for_message(message_id, "shop.test")
    files = await sink_files(tmp_path, b"Subject: x\r\n\r\nbody\r\n", sender)
    assert files[0].name.endswith(f"-{message_id}-1.eml")


async def test_files_of_per_recipient_mail_are_named_after_hatos_received_field(tmp_path) -> None:
    """A per-recipient return path names only the recipient: the message id comes from the
    Received field Hato's ingest added."""
    message_id, recipient_id = str(uuid.uuid4()), str(uuid.uuid4())
    sender = Verp(b"any key").for_recipient(recipient_id, "shop.test")
    raw = (
        b"Received: from client.test (client.test [192.0.2.1])\r\n\tby hato.test (Hato) with"
        b" ESMTPSA id " + message_id.encode() + b";\r\n\tMon, 1 Jan 2026 00:00:00 +0000\r\n"
        b"Subject: x\r\n\r\nbody\r\n"
    )
    files = await sink_files(tmp_path, raw, sender)
    assert files[0].name.endswith(f"-{message_id}-1.eml")
    assert recipient_id not in files[0].name

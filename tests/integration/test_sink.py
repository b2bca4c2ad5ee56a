"""The dev-mode sink writes each message byte for byte as received, to a file named after the
message."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import aiosmtplib

from hato.sink import serve
from shared.verp import Verp
from tests.helpers.net import free_port
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
    raw = (
        b"From: a@hato.test\r\nTo: b@example.com\r\nSubject: \xe3\x81\x82\r\n\r\n"
        b".leading dot\r\nlast line\r\n"
    )
    files = await sink_files(tmp_path, raw, "a@hato.test")
    assert len(files) == 1
    assert files[0].read_bytes() == raw


async def test_files_are_named_after_the_message_id_of_the_return_path(tmp_path) -> None:
    """A VERP return path names the Hato message: the file says which message it holds."""
    message_id, recipient_id = str(uuid.uuid4()), str(uuid.uuid4())
    sender = Verp(b"any key").address(message_id, recipient_id, "shop.test")
    files = await sink_files(tmp_path, b"Subject: x\r\n\r\nbody\r\n", sender)
    assert files[0].name.endswith(f"-{message_id}-1.eml")

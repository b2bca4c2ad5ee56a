"""The dev-mode sink writes each message byte for byte as received."""

from __future__ import annotations

import asyncio
import contextlib

import aiosmtplib

from hato.sink import serve
from tests.helpers.net import free_port
from tests.helpers.waiting import eventually


async def test_each_message_becomes_one_eml_file_byte_for_byte(tmp_path) -> None:
    port = free_port()
    task = asyncio.create_task(serve(tmp_path, "127.0.0.1", port))
    try:
        raw = (
            b"From: a@hato.test\r\nTo: b@example.com\r\nSubject: \xe3\x81\x82\r\n\r\n"
            b".leading dot\r\nlast line\r\n"
        )
        for _ in range(30):
            with contextlib.suppress(OSError):
                await aiosmtplib.send(
                    raw,
                    sender="a@hato.test",
                    recipients=["b@example.com"],
                    hostname="127.0.0.1",
                    port=port,
                )
                break
            await asyncio.sleep(0.05)
        files = await eventually(lambda: asyncio.sleep(0, list(tmp_path.glob("*.eml"))))
        assert len(files) == 1
        assert files[0].read_bytes() == raw
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

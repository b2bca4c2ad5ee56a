"""How the SMTP door writes its replies: the lines of a multi-line EHLO reply leave in one
write (aiosmtpd writes each line on its own, a system call each)."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP

from services.ingest.smtp import HatoSMTP


class _Handler:
    pass


async def test_the_ehlo_reply_leaves_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Continuation lines wait for the last line; a reply after EHLO leaves at once."""
    writes: list[str | bytes] = []

    async def recorded(self: SMTP, status: str | bytes) -> None:
        writes.append(status)

    monkeypatch.setattr(SMTP, "push", recorded)
    door = HatoSMTP(_Handler())
    door._greeted = True
    door._in_ehlo = True
    for line in ("250-hato.example", "250-SIZE 26214400", "250-8BITMIME", "250 HELP"):
        await door.push(line)
    door._in_ehlo = False
    await door.push("250 OK")
    assert writes == [
        "250-hato.example\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n250 HELP",
        "250 2.0.0 OK",
    ]

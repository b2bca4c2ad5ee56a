"""The SMTP door's protocol object: what a new connection gets (aiosmtpd's commands and the
handler's hooks, looked up per class), and how replies are written (the lines of the EHLO
reply in one write, where aiosmtpd writes each line on its own, a system call each)."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP

from services.ingest.smtp import HatoSMTP


class _Handler:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 OK"


def test_a_connection_gets_every_command_and_hook_of_its_classes() -> None:
    """The per-class lookup gives what filtering every attribute name would: each smtp_*
    method, the door's own non-SMTP words, and the handler's hooks, bound to these objects."""
    handler = _Handler()
    door = HatoSMTP(handler, hostname="hato.test")
    commands = {n.removeprefix("smtp_") for n in dir(HatoSMTP) if n.startswith("smtp_")}
    assert commands <= set(door._smtp_methods)
    assert {"GET", "POST", "HOST:"} <= set(door._smtp_methods)
    assert door._smtp_methods["MAIL"].__self__ is door
    assert door._handle_hooks == {"DATA": handler.handle_DATA}


async def test_the_ehlo_reply_leaves_in_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """Continuation lines wait for the last line; a reply after EHLO leaves at once."""
    writes: list[str | bytes] = []

    async def recorded(self: SMTP, status: str | bytes) -> None:
        writes.append(status)

    monkeypatch.setattr(SMTP, "push", recorded)
    door = HatoSMTP(_Handler(), hostname="hato.test")
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

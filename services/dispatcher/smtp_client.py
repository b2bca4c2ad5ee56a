"""One SMTP transaction to one destination (aiosmtplib), with a result for every recipient."""

from __future__ import annotations

import re
from collections.abc import Sequence

import aiosmtplib

from services.dispatcher.routes import Destination
from shared.schemas import Recipient, RecipientResult, RecipientStatus, Reply

_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s+", re.ASCII)


def to_reply(code: int, message: str) -> Reply:
    """A server's reply with its enhanced status code split off (RFC 3463)."""
    text = " ".join(message.split())
    m = _ENHANCED.match(text)
    if m:
        return Reply(code=code, enhanced=m.group(1), text=text[m.end() :])
    return Reply(code=code, text=text)


def status_for(code: int) -> RecipientStatus:
    if 200 <= code < 300:
        return RecipientStatus.DELIVERED
    if 500 <= code < 600:
        return RecipientStatus.BOUNCED
    return RecipientStatus.DEFERRED


class SmtpClient:
    def __init__(self, *, helo_name: str, timeout: float, connect_timeout: float) -> None:
        self.helo_name = helo_name
        self.timeout = timeout
        self.connect_timeout = connect_timeout

    async def send(
        self,
        dest: Destination,
        mail_from: str,
        recipients: Sequence[Recipient],
        message: bytes,
    ) -> list[RecipientResult]:
        results: dict[str, RecipientResult] = {}

        def settle(rs: Sequence[Recipient], reply: Reply) -> None:
            for r in rs:
                results.setdefault(
                    r.id,
                    RecipientResult(
                        recipient_id=r.id,
                        address=r.address,
                        status=status_for(reply.code),
                        reply=reply,
                    ),
                )

        client = aiosmtplib.SMTP(
            hostname=dest.host,
            port=dest.port,
            local_hostname=self.helo_name,
            timeout=self.timeout,
            start_tls=None,  # opportunistic: STARTTLS when offered
            validate_certs=False,
        )
        try:
            try:
                await client.connect(timeout=self.connect_timeout)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                settle(
                    recipients,
                    Reply(code=451, enhanced="4.4.1", text=f"connection to {dest} failed: {exc}"),
                )
                return [results[r.id] for r in recipients]
            await client.mail(mail_from)
            accepted = []
            for r in recipients:
                try:
                    await client.rcpt(r.address)
                    accepted.append(r)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    settle([r], to_reply(exc.code, exc.message))
            if accepted:
                response = await client.data(message)
                settle(accepted, to_reply(response.code, response.message))
            try:
                await client.quit()
            except aiosmtplib.SMTPException:
                pass
        except aiosmtplib.SMTPResponseException as exc:
            settle(recipients, to_reply(exc.code, exc.message))
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            settle(
                recipients,
                Reply(code=451, enhanced="4.4.2", text=f"connection to {dest} lost: {exc}"),
            )
        finally:
            client.close()
        return [results[r.id] for r in recipients]

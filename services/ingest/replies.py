"""Every SMTP reply ingest gives of its own (RFC 5321 codes, RFC 3463 enhanced codes)."""

from __future__ import annotations

from shared.errors import SMTPReply

SENDER_OK = SMTPReply(250, "2.1.0", "Sender ok")
RECIPIENT_OK = SMTPReply(250, "2.1.5", "Recipient ok")
RELAY_DENIED = SMTPReply(554, "5.7.1", "Relay access denied")
SENDER_NOT_ALLOWED = SMTPReply(550, "5.7.1", "Sender domain is not authorised for this client")
FROM_NOT_ALLOWED = SMTPReply(550, "5.7.1", "From header domain is not authorised for this client")
NO_FROM_HEADER = SMTPReply(550, "5.6.0", "Message has no usable From header")
BAD_SENDER = SMTPReply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = SMTPReply(501, "5.1.3", "Bad recipient address syntax")
TOO_MANY_RECIPIENTS = SMTPReply(452, "4.5.3", "Too many recipients")
NOT_DURABLE = SMTPReply(451, "4.3.0", "Temporary failure, message not accepted; try again later")
SHUTTING_DOWN = SMTPReply(421, "4.3.2", "Service shutting down, try again later")


def queued(message_id: str) -> SMTPReply:
    return SMTPReply(250, "2.0.0", f"Ok: queued as {message_id}")

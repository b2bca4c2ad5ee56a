"""Every SMTP reply ingest gives of its own (RFC 5321 codes, RFC 3463 enhanced codes), and the
enhanced codes added to aiosmtpd's own replies."""

from __future__ import annotations

import re

from shared.schemas import Reply

SENDER_OK = Reply.of(250, "2.1.0", "Sender ok")
RECIPIENT_OK = Reply.of(250, "2.1.5", "Recipient ok")
RELAY_DENIED = Reply.of(554, "5.7.1", "Relay access denied")
AUTH_REQUIRED = Reply.of(530, "5.7.0", "Authentication required")
AUTH_OK = Reply.of(235, "2.7.0", "Authentication successful")
AUTH_FAILED = Reply.of(535, "5.7.8", "Authentication credentials invalid")
AUTH_LOCKED = Reply.of(
    454, "4.7.0", "Too many failed authentication attempts from your address; try again later"
)
SENDER_NOT_ALLOWED = Reply.of(550, "5.7.1", "Sender address is not authorised for this client")
FROM_NOT_ALLOWED = Reply.of(550, "5.7.1", "From header address is not authorised for this client")
NO_FROM_HEADER = Reply.of(550, "5.6.0", "Message has no usable From header")
BAD_SENDER = Reply.of(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT = Reply.of(501, "5.1.3", "Bad recipient address syntax")
TOO_MANY_RECIPIENTS = Reply.of(452, "4.5.3", "Too many recipients")
MESSAGE_TOO_BIG = Reply.of(552, "5.3.4", "Message size exceeds the limit for this client")
RATE_LIMITED = Reply.of(451, "4.7.1", "Hourly message limit reached; try again later")
NOT_DURABLE = Reply.of(451, "4.3.0", "Temporary failure, message not accepted; try again later")
SHUTTING_DOWN = Reply.of(421, "4.3.2", "Service shutting down, try again later")
AUTH_IN_TRANSACTION = Reply.of(503, "5.5.1", "AUTH not permitted during a mail transaction")
PREGREET = Reply.of(554, "5.5.0", "Protocol error: talking before the greeting")
NOT_SMTP = Reply.of(554, "5.5.0", "Not an SMTP client; goodbye")
TOO_MANY_ERRORS = Reply.of(421, "4.7.0", "Too many errors; closing the connection")
# aiosmtpd closes after five unknown commands with "502 5.5.1 ... goodbye": a reply that does
# not tell the client the connection ends (RFC 5321 3.8: 421 does).
TOO_MANY_UNKNOWN = Reply.of(421, "4.7.0", "Too many unrecognized commands; closing the connection")
TOO_MANY_CONNECTIONS = Reply.of(
    421, "4.7.0", "Too many connections from your address; try again later"
)


def content_refused(why: str, *, loop: bool = False) -> Reply:
    """The message itself is refused (services/ingest/content.py says why); a mail loop with
    RFC 3463's code for one."""
    return Reply.of(554, "5.4.6" if loop else "5.6.0", f"Message refused: {why}")


def line_too_long(limit: int) -> Reply:
    """A line over the door's limit (RFC 5321 4.5.3.1.6 names the reply ``500 Line too
    long``); aiosmtpd's own, given before the hooks see the message, is replaced by it."""
    return Reply.of(500, "5.5.2", f"Line too long: lines of up to {limit} octets are taken")


def queued(message_id: str) -> Reply:
    return Reply.of(250, "2.0.0", f"Ok: queued as {message_id}")


# RFC 2034: once ENHANCEDSTATUSCODES is advertised, replies carry one (except the greeting,
# EHLO lines and the 334/354 continuations). aiosmtpd's own replies get one by their code.
_HAS_ENHANCED = re.compile(r"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}\b")
_ENHANCED_FOR = {
    "211": "2.0.0",
    "214": "2.0.0",  # HELP
    "221": "2.0.0",
    "250": "2.0.0",
    "251": "2.1.5",
    "252": "2.0.0",  # VRFY: cannot verify, will try (as Postfix answers)
    "220": "2.0.0",
    "235": "2.7.0",
    "421": "4.3.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "454": "4.7.0",
    "455": "4.5.4",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.7.1",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.5.0",
    "555": "5.5.4",
}


def with_enhanced_code(line: str) -> str:
    """``line`` with an enhanced status code after the reply code, unless it has one."""
    if len(line) < 4 or line[3] not in " -" or _HAS_ENHANCED.match(line):
        return line
    enhanced = _ENHANCED_FOR.get(line[:3])
    if enhanced is None:
        return line
    return f"{line[:4]}{enhanced} {line[4:]}"

"""The SMTP front door (aiosmtpd): protocol in, a Submission out, a precise reply back.

Three kinds of listener share one handler:

- relay (port 25): clients from a tenant's authorised networks, or after AUTH (AUTH only
  after STARTTLS);
- submission (587, STARTTLS required) and smtps (465, implicit TLS): AUTH, or an authorised
  network.

The handler knows no database: it asks the RelayPolicy who a client is, the Authenticator
whether a password is right, and hands a Submission to the Acceptor.
"""

from services.ingest.smtp.auth import Authenticator, AuthThrottle
from services.ingest.smtp.hooks import Mode, RelayHandler, complete_header
from services.ingest.smtp.listener import SmtpListener
from services.ingest.smtp.protocol import HatoSMTP, SessionGuard

__all__ = [
    "AuthThrottle",
    "Authenticator",
    "HatoSMTP",
    "Mode",
    "RelayHandler",
    "SessionGuard",
    "SmtpListener",
    "complete_header",
]

"""The HTTP door (FastAPI): send JSON or raw messages, read their state and the tenant's
suppressions and webhooks; the admin API for the operator.

One module per concern, so that each reads on its own: ``app`` builds the app (middleware,
handlers, routers), ``deps`` holds what routes depend on (the door's parts, the caller),
``problems`` the RFC 9457 problem documents, ``gate`` the check of key and body size before a
body is read, and one router per resource — ``messages``, ``sending``, ``suppressions``,
``webhooks``, ``admin`` (its models in ``admin_models``). The door is a package rather than
``routes_*.py`` modules beside the rest of ingest because nothing but ``service.py`` uses its
inside: ingest's own modules stay the service's layers (the SMTP and AMQP doors, the sending
rules, the acceptor).
"""

from services.ingest.http.app import create_app

__all__ = ["create_app"]

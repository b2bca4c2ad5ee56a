"""Ingest: the front doors (SMTP now; HTTP and the AMQP submit queue grow here)."""

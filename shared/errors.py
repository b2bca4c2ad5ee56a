"""Typed outcomes that carry their answer.

Handlers raise these; the broker's ``consume()`` and the front doors turn them
into an ack, a retry, a dead-letter or a protocol reply. Nothing else decides.
"""

from __future__ import annotations


class HatoError(Exception):
    """Base of Hato's own exceptions."""


class Unavailable(HatoError):
    """Raised when the store or the broker could not make work durable (down, timed out,
    refused). Front doors answer a temporary failure; consumers retry later."""


class RetryLater(HatoError):
    """Raised by a consumer's handler to have its message retried after ``delay`` seconds."""

    counts = True  # the retry is an attempt (attempt + 1, and max_attempts applies)

    def __init__(self, delay: float, reason: str = "") -> None:
        super().__init__(reason or f"retry in {delay:g}s")
        self.delay = delay
        self.reason = reason


class Held(RetryLater):
    """Raised by a consumer's handler when its message must wait (an operator or a rule
    suspended its delivery): it comes back after ``delay`` seconds as the same attempt."""

    counts = False


class Permanent(HatoError):
    """Raised by a consumer's handler when its message can never be processed; the
    message goes to the dead-letter queue with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConfigError(HatoError):
    """Raised at start-up when a setting cannot be used (a bad route, no master key ...)."""


class CodecError(HatoError):
    """Raised when bytes from the broker are not a message Hato understands."""


def _transient() -> tuple[type[BaseException], ...]:
    import aio_pika.exceptions
    import pymongo.errors

    return (
        Unavailable,
        TimeoutError,
        ConnectionError,
        pymongo.errors.ConnectionFailure,  # includes AutoReconnect, NetworkTimeout, ...
        pymongo.errors.ExecutionTimeout,
        pymongo.errors.WTimeoutError,
        *aio_pika.exceptions.CONNECTION_EXCEPTIONS,
    )


#: What counts as "a dependency is down, try again later" — the one tuple.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = _transient()

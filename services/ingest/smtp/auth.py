"""AUTH at the SMTP door: passwords checked off the event loop, and lock-outs of addresses
and user names that guess."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from services.ingest.policy import RelayPolicy
from shared import credentials, metrics
from shared import logging as hlog
from shared.directory import Directory, Identity

log = hlog.get_logger(__name__)


class AuthThrottle:
    """Locks an address out after too many failed AUTH attempts within a window, and a user
    name after more of them from anywhere (guessing spread over many addresses). What it
    remembers is bounded: entries older than the window go, and past ``max_entries`` keys
    the oldest are forgotten first."""

    def __init__(
        self,
        *,
        max_failures: int,
        window: float,
        lockout: float,
        max_failures_per_user: int | None = None,
        max_entries: int = 50_000,
    ) -> None:
        self.max_failures = max_failures
        self.max_failures_per_user = max_failures_per_user or max_failures * 4
        self.window = window
        self.lockout = lockout
        self.max_entries = max_entries
        self._failures: dict[str, deque[float]] = {}  # "ip:<addr>" / "user:<name>", oldest first
        self._locked_until: dict[str, float] = {}

    def locked(self, ip: str) -> bool:
        return self._locked(f"ip:{ip}")

    def user_locked(self, user: str) -> bool:
        return self._locked(f"user:{user.lower()}")

    def _locked(self, key: str) -> bool:
        until = self._locked_until.get(key)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._locked_until[key]
        return False

    def failed(self, ip: str, user: str = "") -> None:
        self._count(f"ip:{ip}", self.max_failures, peer=ip)
        if user:
            self._count(f"user:{user.lower()}", self.max_failures_per_user, peer=ip)

    def _count(self, key: str, limit: int, *, peer: str) -> None:
        now = time.monotonic()
        failures = self._failures.pop(key, None) or deque()
        self._failures[key] = failures  # most recently failed last
        failures.append(now)
        while failures and failures[0] < now - self.window:
            failures.popleft()
        if len(failures) >= limit:
            self._locked_until[key] = now + self.lockout
            failures.clear()
            metrics.SMTP_LOCKOUTS.inc()
            log.warning("auth lock-out", key=key.split(":", 1)[0], peer=peer, seconds=self.lockout)
        self._forget(now)

    def _forget(self, now: float) -> None:
        while len(self._failures) > self.max_entries:
            del self._failures[next(iter(self._failures))]
        while len(self._locked_until) > self.max_entries:
            del self._locked_until[next(iter(self._locked_until))]
        stale = [
            k for k, f in list(self._failures.items())[:100] if not f or f[-1] < now - self.window
        ]
        for key in stale:
            del self._failures[key]

    def succeeded(self, ip: str) -> None:
        self._failures.pop(f"ip:{ip}", None)

    def __len__(self) -> int:
        return len(self._failures) + len(self._locked_until)


class Authenticator:
    """Checks SMTP usernames and passwords (Argon2id, in a worker thread)."""

    def __init__(self, directory: Directory, policy: RelayPolicy) -> None:
        self.directory = directory
        self.policy = policy

    async def verify(self, username: str, password: str) -> Identity | None:
        doc = await self.directory.credential(username)
        ok = await asyncio.to_thread(
            credentials.verify_password, doc["password_hash"] if doc else None, password
        )
        if not ok or doc is None:
            return None
        return self.policy.identity(
            doc["tenant"],
            allowed_from=tuple(doc.get("allowed_from", ())),
            credential=f"smtp:{username}",
        )

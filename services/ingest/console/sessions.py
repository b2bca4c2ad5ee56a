"""Console sign-in: who a browser is, and that its forms came from the console.

A session is a random token in a cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` when
the console is served over TLS or ``HATO_INGEST_CONSOLE_SECURE_COOKIES`` says TLS ends in
front of it); only its SHA-256 is stored, in ``console_sessions``, with the user, the CSRF
token of its forms and when it ends. Every form carries that CSRF token (the synchronizer
token pattern) and every POST is refused without it; the sign-in form, which comes before a
session, pairs a random cookie with its hidden field (double submit).

Passwords are checked as SMTP passwords are (Argon2id, an unknown user costing the same).
``MAX_FAILURES`` wrong passwords in a row lock the user out for ``LOCK_FOR``; one client
address gets ``MAX_FAILURES_PER_CLIENT`` failures within ``LOCK_FOR`` whatever names it tries.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import TTLCache
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from shared import credentials
from shared.directory import Directory
from shared.schemas import utcnow

SESSION_COOKIE = "hato_console"
LOGIN_CSRF_COOKIE = "hato_console_login"
SESSION_LIFETIME = timedelta(hours=12)
MAX_FAILURES = 5  # wrong passwords in a row before a user is locked out
MAX_FAILURES_PER_CLIENT = 20  # from one address, whatever user names it tries
LOCK_FOR = timedelta(minutes=15)
CLIENTS_TRACKED = 10_000


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in console user: ``tenant`` None is an operator, who sees every tenant and
    looks at ``viewing`` (the tenant picked in the header)."""

    email: str
    tenant: str | None
    csrf: str
    session: str  # the stored id (the cookie's SHA-256)
    viewing: str | None = None

    @property
    def operator(self) -> bool:
        return self.tenant is None

    @property
    def scope(self) -> str | None:
        """The tenant whose mail the pages show."""
        return self.tenant if self.tenant is not None else self.viewing


class SignInRefused(Exception):
    """Raised by ``Sessions.sign_in``; ``locked`` when the user or client is locked out
    (whether or not the password was right)."""

    def __init__(self, *, locked: bool) -> None:
        super().__init__("locked out" if locked else "wrong email or password")
        self.locked = locked


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


class Sessions:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], directory: Directory) -> None:
        self.db = db
        self.directory = directory
        self._client_failures: TTLCache[str, int] = TTLCache(
            CLIENTS_TRACKED, LOCK_FOR.total_seconds()
        )
        self._indexed = False

    async def _index(self) -> None:
        if not self._indexed:
            await self.db.console_sessions.create_index([("user", ASCENDING)])
            self._indexed = True

    async def sign_in(self, email: str, password: str, *, client: str) -> tuple[str, Viewer]:
        """A new session for ``email`` (its cookie token and viewer), or SignInRefused."""
        email = email.strip().lower()
        if self._client_failures.get(client, 0) >= MAX_FAILURES_PER_CLIENT:
            raise SignInRefused(locked=True)
        user = await self.directory.console_user(email) if email else None
        locked = bool(
            user and user.get("locked_until") and _aware(user["locked_until"]) > datetime.now(UTC)
        )
        right = credentials.verify_password(user["password_hash"] if user else None, password)
        if locked:
            raise SignInRefused(locked=True)
        if not right or user is None:
            self._client_failures[client] = self._client_failures.get(client, 0) + 1
            if user is not None:
                await self.directory.console_sign_in_failed(
                    email, max_failures=MAX_FAILURES, lock_for=LOCK_FOR
                )
            raise SignInRefused(locked=False)
        await self.directory.console_signed_in(email)
        await self._index()
        await self.db.console_sessions.delete_many({"expires_at": {"$lt": utcnow()}})
        token = secrets.token_urlsafe(32)
        viewer = Viewer(
            email=email,
            tenant=user.get("tenant"),
            csrf=secrets.token_urlsafe(32),
            session=_digest(token),
        )
        await self.db.console_sessions.insert_one(
            {
                "_id": viewer.session,
                "user": email,
                "tenant": viewer.tenant,
                "csrf": viewer.csrf,
                "viewing": None,
                "created_at": utcnow(),
                "expires_at": utcnow() + SESSION_LIFETIME,
            }
        )
        return token, viewer

    async def viewer(self, token: str) -> Viewer | None:
        """The signed-in user of a session cookie, or None (unknown, ended or expired)."""
        if not token:
            return None
        doc = await self.db.console_sessions.find_one({"_id": _digest(token)})
        if doc is None or _aware(doc["expires_at"]) <= datetime.now(UTC):
            return None
        return Viewer(
            email=doc["user"],
            tenant=doc.get("tenant"),
            csrf=doc["csrf"],
            session=doc["_id"],
            viewing=doc.get("viewing"),
        )

    async def view(self, viewer: Viewer, tenant: str) -> None:
        """An operator looks at ``tenant`` from now on."""
        await self.db.console_sessions.update_one(
            {"_id": viewer.session}, {"$set": {"viewing": tenant}}
        )

    async def sign_out(self, viewer: Viewer) -> None:
        await self.db.console_sessions.delete_one({"_id": viewer.session})


def csrf_ok(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())

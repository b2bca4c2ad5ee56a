"""Console sign-in against the real store: a session per sign-in, stored only as a hash;
wrong passwords lock a user out, and failures from one address lock that address out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.ingest.console import sessions as console
from services.ingest.console.sessions import MAX_FAILURES, Sessions, SignInRefused
from shared.schemas import utcnow

pytestmark = pytest.mark.integration


async def test_a_sign_in_makes_a_session_kept_only_as_its_hash(store) -> None:
    """The cookie's token names the viewer; the database holds its SHA-256, not the token;
    sign-out and expiry end it."""
    password = await store.directory.add_console_user("Desk@Shop.test", tenant="acme")
    sessions = Sessions(store.db, store.directory)
    token, viewer = await sessions.sign_in("desk@shop.test", password, client="127.0.0.1")
    assert viewer.tenant == "acme" and not viewer.operator
    assert (await sessions.viewer(token)) == viewer
    stored = await store.db.console_sessions.find_one({"user": "desk@shop.test"})
    assert token not in str(stored) and stored["_id"] == viewer.session
    await sessions.sign_out(viewer)
    assert await sessions.viewer(token) is None
    token, viewer = await sessions.sign_in("desk@shop.test", password, client="127.0.0.1")
    await store.db.console_sessions.update_one(
        {"_id": viewer.session}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    )
    assert await sessions.viewer(token) is None


async def test_wrong_passwords_lock_the_user_out_and_a_right_one_resets_the_count(store) -> None:
    """MAX_FAILURES - 1 failures then the right password signs in and starts counting again;
    MAX_FAILURES in a row lock the user out even with the right password."""
    password = await store.directory.add_console_user("ops@shop.test", tenant=None)
    sessions = Sessions(store.db, store.directory)
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(SignInRefused) as refused:
            await sessions.sign_in("ops@shop.test", "wrong", client="127.0.0.2")
        assert not refused.value.locked
    _, viewer = await sessions.sign_in("ops@shop.test", password, client="127.0.0.2")
    assert viewer.operator
    for _ in range(MAX_FAILURES):
        with pytest.raises(SignInRefused):
            await sessions.sign_in("ops@shop.test", "wrong", client="127.0.0.3")
    with pytest.raises(SignInRefused) as refused:
        await sessions.sign_in("ops@shop.test", password, client="127.0.0.4")
    assert refused.value.locked


async def test_one_address_guessing_many_names_is_locked_out(store, monkeypatch) -> None:
    """Failures for unknown users count against the client address."""
    monkeypatch.setattr(console, "MAX_FAILURES_PER_CLIENT", 3)
    password = await store.directory.add_console_user("desk2@shop.test", tenant="acme")
    sessions = Sessions(store.db, store.directory)
    for n in range(3):
        with pytest.raises(SignInRefused):
            await sessions.sign_in(f"nobody{n}@shop.test", "guess", client="127.0.0.9")
    with pytest.raises(SignInRefused) as refused:
        await sessions.sign_in("desk2@shop.test", password, client="127.0.0.9")
    assert refused.value.locked
    await sessions.sign_in("desk2@shop.test", password, client="127.0.0.10")

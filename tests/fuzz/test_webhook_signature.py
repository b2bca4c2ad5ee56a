"""Webhook signatures (shared/webhooks.py) as a receiver checks them, under fuzzing: ``verify``
never raises, a fresh signature verifies, and a changed body, secret or signature never does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.webhooks import sign, verify

_secrets = st.text(min_size=1, max_size=64)
_bodies = st.binary(max_size=2048)
_headers = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda t, v: f"t={t},v1={v}",
        st.one_of(st.integers(), st.text(max_size=30)),
        st.one_of(st.text(alphabet="0123456789abcdef", max_size=80), st.text(max_size=80)),
    ),
)


@given(_secrets, _bodies, _headers)
def test_verify_never_raises(secret: str, body: bytes, header: str) -> None:
    """Any header, body and secret: True or False."""
    assert verify(secret, body, header) in (True, False)


@given(_secrets, _bodies, st.data())
def test_only_the_signed_body_under_its_secret_verifies(secret: str, body: bytes, data) -> None:
    """sign() verifies; one byte of the body changed, another secret, or one character of the
    header changed: refused."""
    header = sign(secret, body)
    assert verify(secret, body, header)
    if body:
        at = data.draw(st.integers(0, len(body) - 1))
        flip = data.draw(st.integers(1, 255))
        changed = body[:at] + bytes([body[at] ^ flip]) + body[at + 1 :]
        assert not verify(secret, changed, header)
    assert not verify(secret + "x", body, header)
    at = data.draw(st.integers(header.index("v1=") + 3, len(header) - 1))
    other = "0" if header[at] != "0" else "1"
    assert not verify(secret, body, header[:at] + other + header[at + 1 :])

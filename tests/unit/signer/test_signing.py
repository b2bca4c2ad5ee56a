"""DKIM signatures the signer makes verify with dkimpy against the published record."""

from __future__ import annotations

import dkim
import pytest

from services.signer.signing import sign
from shared.dkim import generate_rsa, txt_record_value


@pytest.fixture(scope="module")
def key():
    return generate_rsa("shop.test", "s1")


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@shop.test\r\nTo: b@ok.test\r\nSubject: hi\r\n\r\nbody\r\n",
        b"From: a@shop.test\nTo: b@ok.test\nSubject: bare LF\n\nbody\n",
        b"From: a@shop.test\r\nSubject: empty body\r\n\r\n",
    ],
)
def test_signatures_verify(key, raw: bytes) -> None:
    signed = sign(raw, key)
    assert signed.endswith(raw)
    record = txt_record_value(key).encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    assert b"d=shop.test" in signed.split(b"\n\n")[0].replace(b"\r", b"")


def test_a_tampered_message_does_not_verify(key) -> None:
    signed = sign(b"From: a@shop.test\r\nSubject: hi\r\n\r\nbody\r\n", key)
    record = txt_record_value(key).encode()
    assert not dkim.verify(signed.replace(b"body", b"b0dy"), dnsfunc=lambda n, timeout=5: record)

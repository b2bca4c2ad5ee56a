"""Verifying DKIM signatures with software Hato did not write: dkimpy (with PyNaCl for
Ed25519) and Mail::DKIM (Perl), both given the public keys directly instead of DNS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dkim

from shared.dkim import DkimKey, txt_record_name, txt_record_value

PERL_VERIFIER = Path(__file__).with_name("verify_dkim.pl")


def records(*keys: DkimKey) -> dict[str, str]:
    return {txt_record_name(k.domain, k.selector): txt_record_value(k) for k in keys}


def dkimpy(message: bytes, published: dict[str, str]) -> list[bool]:
    """One result per DKIM-Signature, top first."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return published.get(name.decode().rstrip(".").lower(), "").encode()

    d = dkim.DKIM(message)
    count = sum(1 for name, _ in dkim.rfc822_parse(message)[0] if name.lower() == b"dkim-signature")
    return [d.verify(idx=i, dnsfunc=dns) for i in range(count)]


def mail_dkim(message: bytes, published: dict[str, str]) -> list[tuple[str, str]]:
    """(algorithm, result) per signature, as Mail::DKIM sees them."""
    out = subprocess.run(
        ["perl", str(PERL_VERIFIER), *(f"{n}={r}" for n, r in published.items())],
        input=message,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout.decode()
    return [tuple(line.split()[0::2][:2]) for line in out.splitlines()]

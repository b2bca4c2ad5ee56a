"""A self-signed certificate made in the test, and client contexts trusting it."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

from hato.devcert import write_self_signed


def make_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """(cert.pem, key.pem) for ``name`` and 127.0.0.1 (the dev-mode certificate maker)."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    write_self_signed(cert_path, key_path, name)
    return cert_path, key_path


def client_context(cafile: Path, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cafile))
    if maximum is not None:
        with warnings.catch_warnings():  # TLS 1.0 is deprecated: that is the point here
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = maximum
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx

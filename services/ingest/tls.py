"""TLS for the SMTP listeners: TLS 1.2+ by default; an optional legacy context for old office
devices that only speak TLS 1.0/1.1."""

from __future__ import annotations

import ssl

from shared.errors import ConfigError

_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
}


def server_context(cert_file: str, key_file: str, *, minimum: str = "TLSv1.2") -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate or key: {exc}") from None
    ctx.minimum_version = _VERSIONS[minimum]
    if ctx.minimum_version < ssl.TLSVersion.TLSv1_2:
        # OpenSSL's default security level refuses TLS < 1.2 and its SHA-1 suites outright.
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx

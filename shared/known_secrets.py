"""Refuses a service start with a secret anyone could know.

A relay that starts with the password of a README example, of an old compose file or of
RabbitMQ's own ``guest`` user is a relay anyone on its network can drive: read every tenant's
mail from the broker, forge jobs, sign with the tenants' keys. So every secret a service holds
is checked before it starts — each ``SecretStr`` setting (or the file its ``*_file`` sibling
names) and the passwords in the broker and database URLs — against the placeholders Hato's
files ever documented. A broker or database URL whose hosts are all loopback may keep a known
password: RabbitMQ lets ``guest`` in from loopback only, and ``make up``, ``scripts/dev.sh``
and the tests run so. ``HATO_ALLOW_DEFAULT_SECRETS=1`` turns the refusal into a warning, for
throwaway setups that know what they do.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from shared.errors import ConfigError
from shared.settings import ServiceSettings

# Placeholders and defaults a reader may have copied: RabbitMQ's guest, the hato:hato and
# change-me of earlier docker-compose files, the PASS and admin:secret of the README's
# examples, and the usual suspects. Compared without case and surrounding blanks.
KNOWN_SECRETS = frozenset(
    {
        "",
        "admin",
        "change-me",
        "change_me",
        "changeit",
        "changeme",
        "default",
        "example",
        "guest",
        "hato",
        "pass",
        "passw0rd",
        "password",
        "rabbitmq",
        "secret",
        "test",
    }
)
# What the AMQP client logs in with when a URL names no user or password (aiormq).
AMQP_DEFAULT_CREDENTIAL = "guest"
ALLOW_SETTING = "HATO_ALLOW_DEFAULT_SECRETS"


class DefaultSecretError(ConfigError):
    """Raised at start-up when a secret setting holds a known default or placeholder and
    HATO_ALLOW_DEFAULT_SECRETS is not set."""


def is_known(value: str) -> bool:
    """Whether ``value`` is a secret anyone could guess from Hato's docs or RabbitMQ's."""
    return value.strip().lower() in KNOWN_SECRETS


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this host."""
    host = host.strip().strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def problems(settings: ServiceSettings) -> list[str]:
    """Each known secret in ``settings``, named by the setting that holds it."""
    found = _secret_fields(settings)
    broker = settings.broker
    for url in broker.urls():
        problem = _url_problem(url, default_credential=AMQP_DEFAULT_CREDENTIAL)
        if problem:
            found.append(f"{broker.url_source()}: {problem}")
    # One URL, even for a replica set (its hosts are comma-separated inside).
    for name, url in (
        ("HATO_MONGODB_URL", settings.store.url),
        ("HATO_AMQP_MANAGEMENT_URL", broker.management_url),
    ):
        problem = _url_problem(url, default_credential=None) if url.strip() else ""
        if problem:
            found.append(f"{name}: {problem}")
    return found


def refuse_default_secrets(settings: ServiceSettings) -> list[str]:
    """Raise DefaultSecretError naming each known secret in ``settings``, unless the operator
    allowed them (HATO_ALLOW_DEFAULT_SECRETS); returns what was tolerated then."""
    found = problems(settings)
    if not found or _allowed(settings):
        return found
    raise DefaultSecretError(
        "refusing to start with secrets anyone could know: "
        + "; ".join(found)
        + f". Set each to a random secret of your own (or {ALLOW_SETTING}=1 for a throwaway "
        "setup)."
    )


def _allowed(settings: ServiceSettings) -> bool:
    secrets = getattr(settings, "secrets", None)
    return bool(getattr(secrets, "allow_default_secrets", False))


def _secret_fields(section: BaseSettings) -> list[str]:
    """Known values of every SecretStr setting of ``section`` and its sub-sections; a setting
    left empty is read from its ``<name>_file`` sibling when that is set and readable (an
    unreadable file is the business of the code that needs it)."""
    found = []
    prefix = str(section.model_config.get("env_prefix", ""))
    for name in type(section).model_fields:
        value = getattr(section, name)
        if isinstance(value, BaseSettings):
            found += _secret_fields(value)
            continue
        if not isinstance(value, SecretStr):
            continue
        secret, where = value.get_secret_value(), f"{prefix}{name}".upper()
        file = getattr(section, f"{name}_file", "")
        if not secret and file:
            try:
                secret = Path(file).read_text()
            except OSError:
                continue
            where = f"{prefix}{name}_file".upper() + f" ({file})"
        if secret and is_known(secret):
            found.append(f"{where} is {secret.strip()!r}, a known default")
    return found


def _url_problem(url: str, *, default_credential: str | None) -> str:
    """Why ``url``'s password is unsafe ('' when it is not): a known one to a host that is
    not loopback. ``default_credential``: what the client sends when the URL has none (None:
    no password means no authentication, which is not a known secret)."""
    parts = urlsplit(url)
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not colon:
        if default_credential is None:
            return ""
        password = default_credential
    user = unquote(user) or (default_credential or "")
    password = unquote(password)
    hosts = [_host(h) for h in hostinfo.split(",") if h.strip()] or ["localhost"]
    if not is_known(password) or all(is_loopback(h) for h in hosts):
        return ""
    shown = f"{parts.scheme}://{user}:***@{hostinfo}{parts.path}"
    return (
        f"the password of {shown} is {password!r}, a known default, and "
        f"{', '.join(h for h in hosts if not is_loopback(h))} is not this host"
    )


def _host(hostport: str) -> str:
    hostport = hostport.strip()
    if hostport.startswith("["):
        return hostport[1 : hostport.find("]")]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport

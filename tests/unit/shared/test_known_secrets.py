"""A service refuses to start with a secret anyone could know, naming the setting, unless the
operator allows it; loopback development with RabbitMQ's guest stays allowed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.bounce.settings import BounceSettings
from services.dispatcher.settings import DispatcherSettings
from services.ingest.settings import IngestSettings
from services.signer.settings import SignerSettings
from shared.errors import ConfigError
from shared.known_secrets import DefaultSecretError, is_loopback, problems, refuse_default_secrets
from shared.secrets import generate_master_key
from shared.testing import ROOT

SERVICES = (IngestSettings, SignerSettings, DispatcherSettings, BounceSettings)
REMOTE_GUEST = "amqp://guest:guest@rabbitmq:5672/"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch) -> None:
    """Each test sees only the HATO_* variables it sets."""
    for name in [n for n in os.environ if n.startswith("HATO_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("settings_class", SERVICES)
def test_the_defaults_and_a_loopback_guest_start(settings_class) -> None:
    """The built-in settings (guest on 127.0.0.1, as make up and the tests run) pass."""
    assert problems(settings_class()) == []
    assert refuse_default_secrets(settings_class()) == []


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672/",
        "amqp://guest:guest@localhost/",
        "amqp://guest:guest@[::1]:5672/",
        "amqp://127.0.0.2:5673/",  # no credentials: the client sends guest
        "amqp://hato:0c9f3d52a1b8e7f4@rabbitmq:5672/",
        "amqp://u:%73ecret-but-long-and-random@rabbit.internal:5672/prod",
    ],
)
def test_broker_urls_that_start(monkeypatch, url: str) -> None:
    """A known password on loopback, or any password of one's own anywhere, is fine."""
    monkeypatch.setenv("HATO_AMQP_URL", url)
    assert problems(SignerSettings()) == []


@pytest.mark.parametrize(
    ("url", "password"),
    [
        (REMOTE_GUEST, "guest"),
        ("amqp://hato:hato@rabbitmq:5672/", "hato"),
        ("amqp://hato:PASS@rabbit-0.internal:5672/", "PASS"),  # the README's placeholder
        ("amqp://hato:Change-Me@10.0.0.5/", "Change-Me"),
        ("amqp://rabbitmq:5672/", "guest"),  # no credentials: the client sends guest
        ("amqp://hato:@rabbitmq:5672/", ""),  # an empty password: the client sends guest
        # One node of a cluster off loopback is enough.
        ("amqp://x:R4nd0m-0wn@127.0.0.1/,amqp://guest:guest@rabbit-1:5672/", "guest"),
    ],
)
def test_a_known_broker_password_off_loopback_is_refused(monkeypatch, url, password) -> None:
    """guest, hato, PASS, change-me ... to a broker that is not this host: refused, naming
    HATO_AMQP_URL and the password, never starting."""
    monkeypatch.setenv("HATO_AMQP_URL", url)
    with pytest.raises(DefaultSecretError, match="HATO_AMQP_URL: ") as refused:
        refuse_default_secrets(DispatcherSettings())
    assert f"is {password!r}, a known default" in str(refused.value)
    assert "HATO_ALLOW_DEFAULT_SECRETS=1" in str(refused.value)
    assert isinstance(refused.value, ConfigError)  # main() exits 2 on it


def test_the_url_file_is_checked_and_named(monkeypatch, tmp_path) -> None:
    """A broker URL read from HATO_AMQP_URL_FILE is checked like one set inline, and the
    message names the file setting."""
    url_file = tmp_path / "amqp.url"
    url_file.write_text("amqp://hato:hato@rabbitmq:5672/\n")
    monkeypatch.setenv("HATO_AMQP_URL_FILE", str(url_file))
    with pytest.raises(DefaultSecretError, match=r"HATO_AMQP_URL_FILE: .*'hato'"):
        refuse_default_secrets(IngestSettings())
    url_file.write_text("amqp://hato:7b0e41f5c2d94a8e9e3c@rabbitmq:5672/\n")
    assert problems(IngestSettings()) == []


@pytest.mark.parametrize(
    ("variable", "settings_class"),
    [
        ("HATO_INGEST_ADMIN_TOKEN", IngestSettings),
        ("HATO_VERP_KEY", DispatcherSettings),
        ("HATO_VERP_KEY", BounceSettings),
        ("HATO_AMQP_SEAL_KEY", SignerSettings),
        ("HATO_MASTER_KEY", SignerSettings),
    ],
)
def test_a_key_or_token_that_is_a_placeholder_is_refused(
    monkeypatch, variable, settings_class
) -> None:
    """Every secret setting of a service is checked: change-me as a token, key or seal key
    is refused, naming the variable."""
    monkeypatch.setenv(variable, " change-me\n")
    with pytest.raises(DefaultSecretError, match=f"{variable} is 'change-me'"):
        refuse_default_secrets(settings_class())


def test_a_placeholder_in_a_secret_file_is_refused_naming_the_file(monkeypatch, tmp_path) -> None:
    """A mounted secret file holding a placeholder is refused, naming the *_FILE setting and
    its path; a file that cannot be read is left to the code that needs it."""
    token = tmp_path / "admin.token"
    token.write_text("secret\n")
    monkeypatch.setenv("HATO_INGEST_ADMIN_TOKEN_FILE", str(token))
    monkeypatch.setenv("HATO_MASTER_KEY_FILE", str(tmp_path / "missing.key"))
    (found,) = problems(IngestSettings())
    assert found == f"HATO_INGEST_ADMIN_TOKEN_FILE ({token}) is 'secret', a known default"


def test_random_secrets_start(monkeypatch, tmp_path) -> None:
    """Generated keys and tokens, as the compose secrets job writes them, pass."""
    (tmp_path / "master.key").write_text(generate_master_key())
    monkeypatch.setenv("HATO_MASTER_KEY_FILE", str(tmp_path / "master.key"))
    monkeypatch.setenv("HATO_INGEST_ADMIN_TOKEN", "q3XbV0n8Zp1L4u7Tg2Hc6Wd9Ry5Ke0Ma")
    monkeypatch.setenv("HATO_AMQP_SEAL_KEY", "5d1c0a7e9b3f")
    assert problems(IngestSettings()) == []


def test_a_known_database_password_off_loopback_is_refused(monkeypatch) -> None:
    """MongoDB URLs are checked too (a replica set's hosts are one URL); no credentials at
    all is no known secret."""
    monkeypatch.setenv(
        "HATO_MONGODB_URL", "mongodb://hato:PASS@mongo-0.internal,mongo-1.internal/?w=majority"
    )
    with pytest.raises(DefaultSecretError, match=r"HATO_MONGODB_URL: .*'PASS'"):
        refuse_default_secrets(BounceSettings())
    monkeypatch.setenv("HATO_MONGODB_URL", "mongodb://mongodb:27017/?w=majority")
    assert problems(BounceSettings()) == []
    monkeypatch.setenv("HATO_MONGODB_URL", "mongodb://hato:PASS@127.0.0.1:27017/")
    assert problems(BounceSettings()) == []


def test_the_operator_may_allow_them(monkeypatch) -> None:
    """HATO_ALLOW_DEFAULT_SECRETS=1: no refusal; what was tolerated is returned (and logged)."""
    monkeypatch.setenv("HATO_AMQP_URL", REMOTE_GUEST)
    monkeypatch.setenv("HATO_ALLOW_DEFAULT_SECRETS", "1")
    (tolerated,) = refuse_default_secrets(SignerSettings())
    assert tolerated.startswith("HATO_AMQP_URL: ")


def test_every_problem_is_named_at_once(monkeypatch) -> None:
    """One refusal lists every known secret, so one fix round is enough."""
    monkeypatch.setenv("HATO_AMQP_URL", REMOTE_GUEST)
    monkeypatch.setenv("HATO_VERP_KEY", "hato")
    monkeypatch.setenv("HATO_AMQP_SEAL_KEY", "password")
    found = problems(DispatcherSettings())
    assert [p.split(" ")[0] for p in found] == [
        "HATO_AMQP_SEAL_KEY",
        "HATO_VERP_KEY",
        "HATO_AMQP_URL:",
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.28.0.13", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("rabbitmq", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("localhost.example.com", False),
    ],
)
def test_loopback_is_this_host_only(host: str, loopback: bool) -> None:
    """Loopback is this host only (127/8, ::1 with or without brackets, localhost in any case): not
    0.0.0.0, a private address, or a name that merely starts with localhost."""
    assert is_loopback(host) is loopback


def test_a_service_with_a_known_secret_exits_with_a_clear_error(tmp_path) -> None:
    """python -m services.signer with hato:hato to a remote broker exits 2 before connecting
    anywhere, logging which setting holds which known secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HATO_")}
    env |= {
        "HATO_ENV_FILE": "",
        "HATO_LOG_FORMAT": "console",
        "HATO_AMQP_URL": "amqp://hato:hato@rabbitmq.invalid:5672/",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.signer"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "cannot start: bad configuration" in output
    assert "HATO_AMQP_URL:" in output and "'hato', a known default" in output
    assert "rabbitmq.invalid" in output and "hato:hato" not in output

"""Secrets stay secret; settings come from HATO_* variables."""

from __future__ import annotations

import pytest

from services.dispatcher.settings import DispatcherSettings
from shared.errors import ConfigError
from shared.secrets import SecretBox, SecretsError, generate_master_key
from shared.settings import BrokerSettings, SecretsSettings
from tests.helpers.settings import SETTINGS_CLASSES, own_fields


def test_sealed_keys_open_only_with_their_master_key() -> None:
    """A sealed value opens with its key, and a different key is refused."""
    box = SecretBox(generate_master_key())
    token = box.seal(b"-----BEGIN PRIVATE KEY-----")
    assert b"PRIVATE" not in token.encode()
    assert box.open(token) == b"-----BEGIN PRIVATE KEY-----"
    with pytest.raises(SecretsError):
        SecretBox(generate_master_key()).open(token)


def test_the_master_key_never_shows_in_a_repr() -> None:
    """Settings and the box print without the key."""
    key = generate_master_key()
    assert key not in repr(SecretsSettings(master_key=key))
    assert key not in repr(SecretBox(key))


def test_master_key_from_a_mounted_file(tmp_path) -> None:
    """The master key may be a mounted file (HATO_MASTER_KEY_FILE), its trailing newline ignored."""
    key = generate_master_key()
    (tmp_path / "k").write_text(key + "\n")
    box = SecretBox.from_settings(SecretsSettings(master_key_file=str(tmp_path / "k")))
    assert box.open(SecretBox(key).seal(b"x")) == b"x"


def test_no_master_key_is_a_clear_error() -> None:
    """Without a master key the error names the setting to give it, instead of failing at the first
    sealed value."""
    with pytest.raises(SecretsError, match="HATO_MASTER_KEY_FILE"):
        SecretBox.from_settings(SecretsSettings())


def test_service_settings_read_their_environment(monkeypatch) -> None:
    """Lists are comma-separated; shared sections keep their own prefixes."""
    monkeypatch.setenv("HATO_DISPATCHER_POOLS", "bulk, transactional")
    monkeypatch.setenv("HATO_DISPATCHER_RETRY_DELAYS", "1,5")
    monkeypatch.setenv("HATO_AMQP_URL", "amqp://u:p@rabbit:5672/")
    monkeypatch.setenv("HATO_MONGODB_DATABASE", "relay")
    s = DispatcherSettings()
    assert s.pools == ["bulk", "transactional"]
    assert s.retry_delays == [1.0, 5.0]
    assert s.broker.url == "amqp://u:p@rabbit:5672/"
    assert s.store.database == "relay"


def test_the_broker_url_comes_from_its_file(tmp_path) -> None:
    """HATO_AMQP_URL_FILE, when set, is read (every node of a cluster, one line) and
    HATO_AMQP_URL is ignored; an unreadable file is a configuration error naming it."""
    url_file = tmp_path / "amqp.url"
    url_file.write_text("amqp://h:k1@rmq-0:5672/, amqp://h:k1@rmq-1:5672/\n")
    settings = BrokerSettings(url="amqp://guest:guest@127.0.0.1:5672/", url_file=str(url_file))
    assert settings.urls() == ["amqp://h:k1@rmq-0:5672/", "amqp://h:k1@rmq-1:5672/"]
    assert settings.url_source() == "HATO_AMQP_URL_FILE"
    url_file.unlink()
    with pytest.raises(ConfigError, match="HATO_AMQP_URL_FILE"):
        settings.urls()


def test_every_setting_has_a_description() -> None:
    """Operators read the settings reference; no field goes undocumented."""
    for cls in SETTINGS_CLASSES:
        for name, field in own_fields(cls).items():
            assert field.description, f"{cls.__name__}.{name}"

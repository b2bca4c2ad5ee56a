"""The dispatcher's tables (routes per tenant, pace per domain and per tenant) as typed
settings: from the TOML file HATO_DISPATCHER_CONFIG_FILE names, or as JSON in the
environment, and refused at start when malformed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.dispatcher.routes import Destination
from services.dispatcher.rules import DEFAULT_RULES, Rules
from services.dispatcher.service import RulesWatch
from services.dispatcher.settings import DispatcherSettings
from services.dispatcher.throttle import DEFAULT, PRESETS, Pace, Throttle
from shared.errors import ConfigError

CONFIG = """
retry_delays = [30, 600]

[tenant_routes]
acme = "*=127.0.0.1:2600"

[throttle."docomo.ne.jp"]
connections = 1
per_minute = 30

[throttle."Example.COM."]
per_minute = 5

[tenant_throttle.acme."gmail.com"]
per_minute = 300
"""


@pytest.fixture(autouse=True)
def _clean(monkeypatch) -> None:
    for name in ("CONFIG_FILE", "THROTTLE", "TENANT_THROTTLE", "TENANT_ROUTES", "ROUTES"):
        monkeypatch.delenv(f"HATO_DISPATCHER_{name}", raising=False)


def _file(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "dispatcher.toml"
    path.write_text(text)
    monkeypatch.setenv("HATO_DISPATCHER_CONFIG_FILE", str(path))


def test_the_tables_come_from_the_toml_file(tmp_path, monkeypatch) -> None:
    """Routes per tenant and pace per domain and tenant are read from the file, domains
    lower-cased, fields left out at the general default; other settings may be there too."""
    _file(tmp_path, monkeypatch, CONFIG)
    settings = DispatcherSettings()
    routes, tenant_routes = settings.route_tables()
    assert routes.lookup("x.test") is None
    assert tenant_routes["acme"].lookup("x.test") == Destination("127.0.0.1", 2600)
    domains, tenants = settings.paces()
    assert domains == {
        "docomo.ne.jp": Pace(1, DEFAULT.per_connection, 30),
        "example.com": Pace(DEFAULT.connections, DEFAULT.per_connection, 5),
    }
    assert tenants == {"acme": {"gmail.com": Pace(DEFAULT.connections, 100, 300)}}
    assert settings.retry_delays == [30, 600]
    throttle = Throttle(*settings.paces())
    assert throttle.limits("docomo.ne.jp").connections == 1
    assert throttle.limits("gmail.com", "acme").per_minute == 300
    assert throttle.limits("gmail.com") == PRESETS["gmail.com"]


def test_the_environment_wins_over_the_file_and_still_takes_json(tmp_path, monkeypatch) -> None:
    """JSON in the environment (as before the file existed) is merged over the file's tables,
    field by field."""
    _file(tmp_path, monkeypatch, CONFIG)
    monkeypatch.setenv(
        "HATO_DISPATCHER_THROTTLE",
        '{"slow.test": {"connections": 2}, "docomo.ne.jp": {"connections": 3}}',
    )
    domains, _ = DispatcherSettings().paces()
    assert domains == {
        "slow.test": Pace(2, DEFAULT.per_connection, DEFAULT.per_minute),
        "docomo.ne.jp": Pace(3, DEFAULT.per_connection, 30),
        "example.com": Pace(DEFAULT.connections, DEFAULT.per_connection, 5),
    }


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[throttle."x.test"]\nconnexions = 2\n', "connexions"),  # a misspelt field
        ('[throttle."x.test"]\nconnections = 0\n', "connections"),  # below one
        ('[tenant_routes]\nacme = "x.test=host-without-port"\n', "acme"),  # a bad route
        ('routes = "*=127.0.0.1"\n', "routes"),
        ('[throttle."x.test"]\n[throttle."X.test"]\n', "x.test"),  # one domain twice
    ],
)
def test_a_malformed_table_stops_the_service(tmp_path, monkeypatch, text, named) -> None:
    """What would be silently ignored or fail at the first mail is refused when read, naming
    the setting."""
    _file(tmp_path, monkeypatch, text)
    with pytest.raises(ValidationError, match=named):
        DispatcherSettings()


def test_a_config_file_that_is_not_there_stops_the_service(tmp_path, monkeypatch) -> None:
    """A file name with a typo is an error, not an empty configuration."""
    monkeypatch.setenv("HATO_DISPATCHER_CONFIG_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        DispatcherSettings()


def test_the_readme_example_is_a_settings_file_the_dispatcher_reads(tmp_path, monkeypatch) -> None:
    """The README's TOML example of the settings file is read as written."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    (example,) = [
        block
        for block in re.findall(r"```toml\n(.*?)```", readme, re.S)
        if "[tenant_routes]" in block
    ]
    _file(tmp_path, monkeypatch, example)
    settings = DispatcherSettings()
    assert settings.paces()[0]["docomo.ne.jp"] == Pace(1, DEFAULT.per_connection, 30, 50, 10485760)
    assert settings.route_tables()[1]["acme"].lookup("x.test") == Destination(
        "smtp.acme.example", 587
    )


def test_the_readme_rules_example_is_a_rules_file_the_dispatcher_reads(
    tmp_path, monkeypatch
) -> None:
    """The README's rules file example is read as written, before the built-in rules."""
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    (example,) = [
        block for block in re.findall(r"```toml\n(.*?)```", readme, re.S) if "[[rule]]" in block
    ]
    rules = tmp_path / "rules.toml"
    rules.write_text(example)
    _file(tmp_path, monkeypatch, f'rules_file = "{rules}"\n')
    found = DispatcherSettings().rule_set()
    assert found[0].name == "gmail-rate" and found[0].threshold == 3
    assert len(found) == 1 + len(DEFAULT_RULES)


def test_a_rules_table_with_a_misspelt_field_stops_the_dispatcher(tmp_path, monkeypatch) -> None:
    """Rules in the settings file are checked at start like the other tables."""
    _file(tmp_path, monkeypatch, '[[rules]]\nname = "x"\naction = "pause"\ntreshold = 2\n')
    with pytest.raises(ValidationError, match="treshold"):
        DispatcherSettings()
    _file(tmp_path, monkeypatch, f'rules_file = "{tmp_path / "none.toml"}"\n')
    with pytest.raises(ValidationError, match="cannot read rules file"):
        DispatcherSettings()


def test_the_rules_file_is_read_again_when_it_changes_and_a_bad_one_is_not_taken(
    tmp_path, monkeypatch
) -> None:
    """A changed rules file replaces the rules in force (heartbeat check or SIGHUP); one that
    no longer reads leaves them as they were."""
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text('[[rule]]\nname = "a"\naction = "pause"\n')
    _file(tmp_path, monkeypatch, f'rules_file = "{rules_path}"\n')
    settings = DispatcherSettings()
    rules = Rules(settings.rule_set())
    watch = RulesWatch(settings, rules)
    watch.check()
    assert rules.rules[0].name == "a"
    rules_path.write_text('default_rules = false\n[[rule]]\nname = "b"\naction = "bounce"\n')
    watch.mtime = -1.0  # as if the file's time changed (a second may not have passed)
    watch.check()
    assert [r.name for r in rules.rules] == ["b"]
    rules_path.write_text('[[rule]]\nname = "c"\naction = "explode"\n')
    watch.reload()  # SIGHUP
    assert [r.name for r in rules.rules] == ["b"]

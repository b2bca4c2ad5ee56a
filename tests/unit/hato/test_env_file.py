"""Where the `hato` command finds the dev stack's settings."""

from __future__ import annotations

import os

from hato import cli


def test_var_dev_env_in_the_current_folder_is_read_without_overriding(
    tmp_path, monkeypatch
) -> None:
    """`make up` writes var/dev.env; the command takes from it what the environment does not
    set, and the environment wins."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "dev.env").write_text(
        "# written by make up\nHATO_MONGODB_DATABASE='devdb'\n"
        "HATO_DNS_NAMESERVERS='127.0.0.1:5300'\nOTHER='not ours'\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HATO_ENV_FILE", raising=False)
    monkeypatch.delenv("HATO_MONGODB_DATABASE", raising=False)
    monkeypatch.setenv("HATO_DNS_NAMESERVERS", "192.0.2.53")
    monkeypatch.delenv("OTHER", raising=False)
    path = cli.env_file()
    assert path == tmp_path / "var" / "dev.env"
    cli.load_env_file(path)
    assert os.environ["HATO_MONGODB_DATABASE"] == "devdb"
    assert os.environ["HATO_DNS_NAMESERVERS"] == "192.0.2.53"
    assert "OTHER" not in os.environ
    assert cli.CliSettings().store.database == "devdb"


def test_hato_env_file_names_another_file_or_none(tmp_path, monkeypatch) -> None:
    """HATO_ENV_FILE names the settings file instead of var/dev.env; set empty, none is read."""
    other = tmp_path / "prod.env"
    other.write_text("HATO_MONGODB_DATABASE=prod\n")
    monkeypatch.setenv("HATO_ENV_FILE", str(other))
    assert cli.env_file() == other
    monkeypatch.setenv("HATO_ENV_FILE", "")
    assert cli.env_file() is None


def test_help_describes_the_command_in_a_whole_sentence(capsys) -> None:
    """`hato --help` names what the command is for without cutting it off."""
    try:
        cli.build_parser().parse_args(["--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert cli.DESCRIPTION in out and cli.DESCRIPTION.endswith(".")

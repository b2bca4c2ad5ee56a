"""The command table of `hato`: the conventions every command keeps."""

from __future__ import annotations

import pytest

from hato import cli
from hato.table import Exit


def _parse(*argv: str):
    return cli.build_parser().parse_args(list(argv))


def test_every_read_command_takes_json() -> None:
    """Each command marked as a read accepts --json."""
    for command in cli.COMMANDS:
        if command.reads and not command.plain:
            words = command.words.split()
            needed = [a.names[0] for a in command.args if not a.names[0].startswith("-")]
            args = _parse(*words, *(["x"] * len(needed)), "--json")
            assert args.json is True, command.words


def test_what_add_makes_remove_takes_away() -> None:
    """Every group with an `add` also has a `remove` or `revoke`."""
    words = {c.words for c in cli.COMMANDS}
    for w in words:
        if w.endswith(" add"):
            group = w.removesuffix(" add")
            assert {f"{group} remove", f"{group} revoke"} & words, group


def test_only_activate_makes_dkim_check_write() -> None:
    """`dkim check` is a read (no indexes) unless --activate is given."""
    check = next(c for c in cli.COMMANDS if c.words == "dkim check")
    assert not cli.needs_writes(check, _parse("dkim", "check", "a.test"))
    assert cli.needs_writes(check, _parse("dkim", "check", "a.test", "--activate"))


def test_a_usage_error_exits_2(capsys, monkeypatch) -> None:
    """Unknown words are argparse's usage error."""
    monkeypatch.setenv("HATO_ENV_FILE", "")  # no var/dev.env of a running stack into os.environ
    with pytest.raises(SystemExit) as exc:
        cli.main(["tenant", "frob"])
    assert exc.value.code == Exit.USAGE


def test_tenant_content_options_become_limits() -> None:
    """`--jis-extensions` and `--missing-headers` reach the tenant's limits; other choices are
    a usage error."""
    args = _parse(
        "tenant", "set", "acme", "--jis-extensions", "utf-8", "--missing-headers", "refuse"
    )
    limits = cli._limits(args)
    assert limits is not None
    assert (limits.jis_extensions, limits.missing_headers) == ("utf-8", "refuse")
    with pytest.raises(SystemExit):
        _parse("tenant", "set", "acme", "--jis-extensions", "sjis")

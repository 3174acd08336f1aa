"""The command line's own usage: no command is an error that lists the commands; --help succeeds."""

from __future__ import annotations

import pytest

from autoscaler.cli import COMMANDS, main


def test_no_command_is_a_usage_error_listing_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "COMMAND" in err and all(name in err for name in COMMANDS)


def test_help_exits_zero_and_an_unknown_command_exits_two() -> None:
    with pytest.raises(SystemExit) as ok:
        main(["--help"])
    assert ok.value.code == 0
    with pytest.raises(SystemExit) as bad:
        main(["no-such-command"])
    assert bad.value.code == 2


def test_emulate_help_promises_only_what_it_offers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "replay a trace" not in out

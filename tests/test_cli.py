"""Every command answers --help, and the console script dispatches to it."""

from __future__ import annotations

import importlib

import pytest

from skymap_scanner import cli


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_of_every_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(cli.COMMANDS[name][0])
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_console_script_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0 and "commands:" in capsys.readouterr().out
    assert cli.main(["nonsense"]) == 2 and "unknown command 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # options first: the server, which needs --event-file
        cli.main(["--reco-algo", "dummy"])
    assert exc.value.code == 2 and "--event-file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["describe", "--help"])
    assert exc.value.code == 0 and "usage:" in capsys.readouterr().out

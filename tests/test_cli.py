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


def test_tools_live_in_cli_and_the_old_names_still_work() -> None:
    from skymap_scanner.cli import convert, describe
    from skymap_scanner.utils import convert as old_convert
    from skymap_scanner.utils import describe as old_describe
    from skymap_scanner.utils import simulate as old_simulate

    assert {cli.COMMANDS[n][0] for n in ("convert", "describe", "simulate")} == {
        "skymap_scanner.cli.convert", "skymap_scanner.cli.describe", "skymap_scanner.cli.simulate"}
    assert old_convert.main is convert.main and old_describe.main is describe.main
    with pytest.raises(SystemExit) as exc:
        old_simulate.main(["--help"])  # forwards to cli.simulate
    assert exc.value.code == 0


def test_events_and_the_core_do_not_import_the_command_line_tools() -> None:
    """Low-level helpers sit below everything: no runtime module reaches up into cli/ or utils/."""
    import ast
    from pathlib import Path

    pkg = Path(cli.__file__).resolve().parent.parent
    offenders = []
    for path in pkg.rglob("*.py"):
        rel = path.relative_to(pkg).parts
        if rel[0] in ("cli", "utils", "server", "client", "products") or rel[-1] == "__main__.py":
            continue  # the command-line layer itself
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            ours = node.level > 0 or node.module.startswith("skymap_scanner")
            parts = node.module.removeprefix("skymap_scanner").strip(".").split(".")
            if ours and parts[0] in ("cli", "utils"):
                offenders.append(f"{'/'.join(rel)}: from {'.' * node.level}{node.module}")
    assert offenders == []

"""One server per --cache-dir (issue 12, probe 5: two servers on one checkpoint took each other's replies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skymap_scanner.dirlock import lock_cache_dir
from skymap_scanner.errors import ConfigError
from skymap_scanner.server.__main__ import main as server_main

SAMPLE = Path(__file__).resolve().parent.parent / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"


def test_a_second_lock_on_a_cache_dir_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    first = lock_cache_dir(tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"another server \(pid \d+\) is running a scan with --cache-dir"):
        lock_cache_dir(tmp_path / "cache")
    first.close()
    lock_cache_dir(tmp_path / "cache").close()  # released: a resume may take it


def test_a_second_server_on_the_same_cache_dir_exits_with_one_line(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    held = lock_cache_dir(tmp_path / "cache")  # a first server running
    try:
        code = server_main(["--event-file", str(SAMPLE), "--reco-algo", "dummy", "--output-dir", str(tmp_path / "out"),
                            "--cache-dir", str(tmp_path / "cache"), "--local-workers", "1", "--nsides", "8:0"])
    finally:
        held.close()
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert code == 2 and len(err) == 1 and err[0].startswith("skymap_scanner.server: error: another server (pid ")
    assert "--cache-dir" in err[0]
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing written

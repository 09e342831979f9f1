"""The server's command line as a person meets it: one-line errors with exit 2 and nothing left
behind, implausible events refused and unusual ones warned about, the whole-scan ETA, the progress
bar on a terminal and the final line."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.console import (
    MAX_PULSES_PER_DOM,
    ProgressView,
    check_event,
    final_line,
    prepare_dirs,
    progress_text,
    remaining_items,
    remove_empty_dirs,
)
from skymap_scanner.errors import ConfigError, EventError
from skymap_scanner.events import load_event, write_event
from skymap_scanner.events.model import Pulses
from skymap_scanner.pixels import parse_progression

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"


def server(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE),
                           "--reco-algo", "dummy", "--nsides", "8:0", "--local-workers", "1", *args],
                          capture_output=True, text=True, timeout=120, env=full)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # no logger set-up lines, no traceback
    assert lines[0].startswith("skymap_scanner.server: error: ")
    for n in needles:
        assert n in lines[0]


def test_output_dir_in_proc_is_one_line_exit_2() -> None:
    assert_one_line_error(server(["--output-dir", "/proc/skyscan-test/out"]), "--output-dir", "/proc/skyscan-test")


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "a-file"
    f.write_text("x")
    assert_one_line_error(server(["--output-dir", str(f)]), "--output-dir", "not a directory")
    assert_one_line_error(server(["--output-dir", str(f / "below")]), "is not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_unwritable_cache_dir_leaves_no_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "new" / "out"
    assert_one_line_error(server(["--output-dir", str(out), "--cache-dir", "/proc"]), "--cache-dir", "not writable")
    assert not (tmp_path / "new").exists()  # created for the check, then taken back


def test_a_failure_after_the_checks_takes_the_new_directories_back(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = server(["--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")],
                  env={"SKYSCAN_BROKER_ADDRESS": "127.0.0.1"})  # broker mode without --client-startup-json
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("skymap_scanner.server: error: ") and "--client-startup-json" in last
    assert list(tmp_path.iterdir()) == []


def _with_pulses(n_per_dom: int, n_doms: int, tmp_path: Path) -> Path:
    ev = load_event(SAMPLE)
    p = ev.pulses
    first = np.unique(p.string * 100 + p.om, return_index=True)[1][:n_doms]
    idx = np.repeat(first, n_per_dom)
    t = p.time_ns[idx] + np.tile(np.arange(n_per_dom) * 3.0, first.size)
    pulses = Pulses.build(p.string[idx], p.om[idx], t, p.charge_pe[idx], p.lc[idx], p.x_m[idx], p.y_m[idx], p.z_m[idx])
    return write_event(dataclasses.replace(ev, pulses=pulses), tmp_path / "event.json")


def test_implausible_event_is_refused_with_nothing_left_behind(tmp_path: Path) -> None:
    event = _with_pulses(MAX_PULSES_PER_DOM + 1, 3, tmp_path)
    proc = subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(event),
                           "--reco-algo", "dummy", "--output-dir", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")})
    assert_one_line_error(proc, "event.json", f"{MAX_PULSES_PER_DOM + 1} pulses on one DOM")
    assert not (tmp_path / "out").exists()


def test_unusual_event_is_a_warning(tmp_path: Path) -> None:
    ev = load_event(_with_pulses(1000, 60, tmp_path))
    warnings = check_event(ev)
    assert len(warnings) == 1 and "60000 pulses on 60 DOMs" in warnings[0]
    assert check_event(load_event(SAMPLE)) == []  # a real alert: nothing to say
    with pytest.raises(EventError, match="hit DOMs, but the detector has 100"):
        check_event(load_event(SAMPLE), n_detector_doms=100)


def test_prepare_dirs_creates_and_takes_back(tmp_path: Path) -> None:
    made = prepare_dirs(("--output-dir", tmp_path / "a" / "b"), ("--cache-dir", None))
    assert made == [tmp_path / "a", tmp_path / "a" / "b"] and (tmp_path / "a" / "b").is_dir()
    (tmp_path / "a" / "keep.txt").write_text("result")
    remove_empty_dirs(made)
    assert not (tmp_path / "a" / "b").exists() and (tmp_path / "a" / "keep.txt").exists()  # never removes files
    assert prepare_dirs(("--output-dir", tmp_path)) == []  # already there: nothing to take back
    with pytest.raises(ConfigError, match="--cache-dir .*not a directory"):
        prepare_dirs(("--output-dir", tmp_path / "x"), ("--cache-dir", tmp_path / "a" / "keep.txt"))
    assert not (tmp_path / "x").exists()  # the first one is taken back too


def _progress(received: list[int], expected: list[int], started: list[bool]) -> list[dict[str, object]]:
    return [{"nside": n, "started": s, "items_received": r, "items_expected": e, "complete": s and r == e}
            for n, r, e, s in zip((8, 64, 512), received, expected, started, strict=True)]


def test_remaining_items_covers_the_whole_scan() -> None:
    steps = parse_progression("8:0 64:12 512:24")
    # nside 8 half done, the refinements not started: 384 + 12 * 64 + 24 * 64 items left (1 posvar)
    assert remaining_items(_progress([384, 0, 0], [768, 0, 0], [True, False, False]), steps, 1) == 384 + 768 + 1536
    assert remaining_items(_progress([768, 700, 0], [768, 768, 0], [True, True, False]), steps, 2) == 68 + 2 * 1536
    assert remaining_items(_progress([768, 768, 1536], [768, 768, 1536], [True] * 3), steps, 1) == 0


def test_progress_bar_on_a_terminal_and_not_elsewhere() -> None:
    m = {"progress": _progress([768, 100, 0], [768, 768, 0], [True, True, False]), "eta_s": 20.0,
         "rate_fits_per_s": 100.0, "complete": False}
    text = progress_text(m, width=10)
    assert text.startswith("[###.......]  30% | nside 64 | 100 fits/s | ETA 20s")  # 868 done, 2000 left

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    view = ProgressView(tty)
    try:
        view.update(m)
        assert tty.getvalue().startswith("\r[") and "ETA 20s" in tty.getvalue()
        rec = logging.LogRecord("skymap_scanner.scan", logging.INFO, __file__, 1, "progress: x", None, None)
        assert not logging.getLogger("skymap_scanner.scan").filter(rec)  # the bar replaces the log line
    finally:
        view.close()
    assert logging.getLogger("skymap_scanner.scan").filter(rec)
    plain = io.StringIO()
    ProgressView(plain).update(m)
    assert plain.getvalue() == ""  # not a terminal: the periodic progress log line is the display


def test_final_line_has_ra_dec_area_and_where(tmp_path: Path) -> None:
    summary = {"best_fit": {"ra_deg": 47.7312, "dec_deg": -3.5261},
               "regions": [{"name": "icecube_90", "area_deg2": 5.123}], "scan_complete": False}
    line = final_line(summary, None, tmp_path)
    assert line.startswith("done: RA 47.73 deg, Dec -3.53 deg; 90% region 5.12 deg2")
    assert "INCOMPLETE" in line and line.endswith(f"products in {tmp_path}")
    assert final_line(None, (10.0, 20.0), tmp_path).startswith("done: RA 10.00 deg, Dec +20.00 deg")


def test_a_scan_ends_with_the_final_line_and_no_setup_noise(tmp_path: Path) -> None:
    proc = server(["--output-dir", str(tmp_path / "out")])
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert not any("Third-Party Logger" in ln or "Root Logger" in ln for ln in lines)
    assert "done: RA " in lines[-1] and "90% region" in lines[-1] and str(tmp_path / "out") in lines[-1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert f"RA {summary['best_fit']['ra_deg']:.2f} deg" in lines[-1]

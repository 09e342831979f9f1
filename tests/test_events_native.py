"""The skymap-scanner-event/1 loader: good events load, every bad input is a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import minimal_event_doc

from skymap_scanner.errors import EventError
from skymap_scanner.events import load_event, native, write_event


def test_loads_and_is_immutable(event_file: Path) -> None:
    ev = load_event(event_file)
    assert (ev.run_id, ev.event_id, ev.event_type, ev.mjd) == (123, 456, "test", 60000.25)
    assert len(ev.pulses) == 5 and ev.pulses.n_doms == 5
    assert ev.pulses.qtot_pe == pytest.approx(12.9)
    # positions come from the shipped geometry: string 36 om 30 is near the detector centre
    i = int(np.flatnonzero((ev.pulses.string == 36) & (ev.pulses.om == 30))[0])
    assert abs(ev.pulses.x_m[i]) < 50 and abs(ev.pulses.y_m[i]) < 50
    with pytest.raises(ValueError):
        ev.pulses.time_ns[0] = 1.0
    with pytest.raises(AttributeError):
        ev.run_id = 1  # type: ignore[misc]


def test_unknown_keys_ignored_and_round_trip(tmp_path: Path) -> None:
    doc = minimal_event_doc(extra_key={"anything": 1})
    ev = native.from_dict(doc, "x")
    out = write_event(ev, tmp_path / "rt.json")
    ev2 = load_event(out)
    assert native.to_dict(ev2) == native.to_dict(ev)


def _mutate(path: list[str], value: Any) -> dict[str, Any]:
    doc = minimal_event_doc()
    d = doc
    for k in path[:-1]:
        d = d[k]
    if value is KeyError:
        del d[path[-1]]
    else:
        d[path[-1]] = value
    return doc


BAD_CASES = [
    (["pulses", "om"], [30, 31, 29, 40, 61], "not in the icecube86 geometry"),
    (["pulses", "string"], [36, 36, 35, 46, 99], "not in the icecube86 geometry"),
    (["run_id"], KeyError, "missing field 'run_id'"),
    (["pulses", "charge"], KeyError, "missing field 'pulses.charge'"),
    (["pulses", "time"], [1.0, 2.0], "unequal lengths"),
    (["pulses", "time"], [1.0, float("nan"), 3.0, 4.0, 5.0], "non-finite time"),
    (["pulses", "charge"], [1.0, 2.0, float("inf"), 4.0, 5.0], "non-finite charge"),
    (["pulses"], {"string": [], "om": [], "time": [], "charge": [], "lc": []}, "no pulses"),
    (["format"], "other/2", "unsupported format"),
    (["mjd"], "yesterday", "'mjd' must be a finite number"),
    (["geometry"], "icecube40", "unknown geometry"),
    (["is_real_event"], "yes", "'is_real_event' must be true or false"),
]


@pytest.mark.parametrize("path,value,expected", BAD_CASES)
def test_bad_input_is_a_clear_error(tmp_path: Path, path: list[str], value: Any, expected: str) -> None:
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(_mutate(path, value)))
    with pytest.raises(EventError) as exc:
        load_event(f)
    msg = str(exc.value)
    assert expected in msg and str(f) in msg and "\n" not in msg


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    f = tmp_path / "garbage.json"
    f.write_bytes(b"{not json")
    with pytest.raises(EventError, match="neither JSON"):
        load_event(f)
    with pytest.raises(EventError, match="no such file"):
        load_event(tmp_path / "nope.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(EventError, match="empty"):
        load_event(tmp_path / "empty.json")


def test_server_exits_nonzero_with_one_line_no_traceback(tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(_mutate(["pulses", "om"], [30, 31, 29, 40, 61])))
    proc = subprocess.run(
        [sys.executable, "-m", "skymap_scanner.server", "--event-file", str(f), "--reco-algo", "dummy",
         "--output-dir", str(tmp_path / "out"), "--local-workers", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    err_lines = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert len(err_lines) == 1 and "not in the icecube86 geometry" in err_lines[0] and str(f) in err_lines[0]
    assert "Traceback" not in proc.stderr

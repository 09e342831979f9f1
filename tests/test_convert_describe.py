"""The convert and describe command-line tools (called in-process through main(argv), plus one real -m run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.events import load_event
from skymap_scanner.events.i3live import envelope
from skymap_scanner.utils import convert, describe

DATA = Path(__file__).parent / "data" / "events"
BRONZE = DATA / "run00136662-evt000035405932-BRONZE.pkl"
TRACK_2023 = DATA / "138632_31747601.json"
HESE = DATA / "hese_event_01.json"


def _recorded(path: Path) -> dict:
    raw = path.read_bytes()
    msg = envelope.load_message_pickle(raw) if path.suffix == ".pkl" else json.loads(raw)
    return msg["value"]["data"]


@pytest.mark.parametrize("path", [BRONZE, HESE], ids=lambda p: p.name)
def test_convert_writes_an_equivalent_native_event(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "sub" / "event.json"
    assert convert.main([str(path), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["format"] == "skymap-scanner-event/1"
    a, b = load_event(path), load_event(out)
    assert (a.run_id, a.event_id, a.event_type, a.mjd, a.is_real_event) == \
        (b.run_id, b.event_id, b.event_type, b.mjd, b.is_real_event)
    for field in ("string", "om", "time_ns", "charge_pe", "lc", "x_m"):
        np.testing.assert_array_equal(getattr(a.pulses, field), getattr(b.pulses, field))
    assert {k: v.to_dict() for k, v in a.online_fits.items()}.keys() == b.online_fits.keys()
    for name, fit in a.online_fits.items():
        assert fit.zenith_rad == b.online_fits[name].zenith_rad
    assert len(a.calibration_errata) > 0  # both files carry CalibrationErrata
    np.testing.assert_array_equal(a.calibration_errata, b.calibration_errata)
    np.testing.assert_array_equal(a.saturation_windows, b.saturation_windows)
    # converting the native file again gives the same document
    again = tmp_path / "again.json"
    assert convert.main([str(out), str(again)]) == 0
    assert json.loads(again.read_text()) == doc


@pytest.mark.parametrize("path, ra_deg, dec_deg", [(BRONZE, 48.850, -3.522), (TRACK_2023, 138.654, 0.142)],
                         ids=["bronze", "138632"])
def test_describe_json_reports_recorded_numbers_and_sky_position(
    path: Path, ra_deg: float, dec_deg: float, capsys: pytest.CaptureFixture
) -> None:
    assert describe.main([str(path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    rec = _recorded(path)
    assert (d["run_id"], d["event_id"], d["event_type"]) == (rec["run_id"], rec["event_id"], "neutrino")
    assert (d["nch"], d["npulses"], d["qtot"]) == (rec["nch"], rec["npulses"], rec["qtot"])
    assert d["time_utc"] == rec["eventtime"]
    spline = d["online_fits"]["SplineMPE"]
    assert set(spline) >= {"zenith", "azimuth", "ra", "dec"}
    assert abs(np.degrees(spline["ra"]) - ra_deg) < 0.01 and abs(np.degrees(spline["dec"]) - dec_deg) < 0.01
    assert [f["stop"] for f in d["frames"]] == list("GCDQP")


def test_describe_text_lists_frames_objects_and_fits(capsys: pytest.CaptureFixture) -> None:
    assert describe.main([str(HESE)]) == 0
    text = capsys.readouterr().out
    for needle in ("run00127907", "HESE", "frame Q", "UncleanedInIcePulses", "I3SuperDST", "HESE_SPEFit2",
                   "RA", "nch"):
        assert needle in text


def test_describe_lists_time_windows(capsys: pytest.CaptureFixture) -> None:
    hese = DATA / "event_HESE_2017-11-28.json"  # the one with both errata and saturation windows
    assert describe.main([str(hese), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    frames = {o["key"] for f in d["frames"] for o in f["objects"]}
    assert {"CalibrationErrata", "SaturationWindows"} <= frames
    assert len(d["calibration_errata"]) >= 1 and len(d["saturation_windows"]) >= 1
    assert all(w["start"] <= w["stop"] for w in d["calibration_errata"])
    assert 0 < d["pulses_in_errata"] <= d["npulses"]
    assert describe.main([str(hese)]) == 0
    text = capsys.readouterr().out
    assert f"errata    {len(d['calibration_errata'])} time windows ({d['pulses_in_errata']} cleaned" in text
    w = d["saturation_windows"][0]
    assert f"DOM {w['string']:>2}-{w['om']:<2}" in text


def test_describe_a_native_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "e.json"
    assert convert.main([str(BRONZE), str(out)]) == 0
    capsys.readouterr()
    assert describe.main([str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "skymap-scanner-event/1" and "frames" not in d
    assert (d["nch"], d["npulses"], d["qtot"]) == (133, 668, 1326.45)


@pytest.mark.parametrize("tool", [convert, describe])
def test_bad_input_is_one_line_and_exit_2(tool: object, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"value": {"data": [["P", "not base64!"]]}}')
    for target in (tmp_path / "missing.json", bad):
        args = [str(target), str(tmp_path / "o.json")] if tool is convert else [str(target)]
        assert tool.main(args) == 2  # type: ignore[attr-defined]
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_convert_to_an_unwritable_place_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert convert.main([str(BRONZE), str(blocker / "out.json")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_module_paths_run_as_commands(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    r = subprocess.run([sys.executable, "-m", "skymap_scanner.cli.convert", str(BRONZE), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.is_file(), r.stderr
    r = subprocess.run([sys.executable, "-m", "skymap_scanner.cli.describe", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().endswith("no such file") and "Traceback" not in r.stderr

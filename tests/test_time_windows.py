"""Per-DOM time windows (CalibrationErrata, SaturationWindows): decoder on the real alerts, the event
model, the native format and :func:`mask_outside_windows` on hand-built pulse sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import minimal_event_doc

from skymap_scanner.errors import EventError
from skymap_scanner.events import load_event, native, write_event
from skymap_scanner.events.i3live import decode_alert, envelope
from skymap_scanner.events.i3live.archive import DecodeError
from skymap_scanner.events.i3live.objects import decode_time_window_map
from skymap_scanner.events.model import Pulses
from skymap_scanner.events.windows import freeze_windows, mask_outside_windows

DATA = Path(__file__).parent / "data" / "events"
WITH_WINDOWS = [DATA / "run00136662-evt000035405932-BRONZE.pkl", DATA / "event_HESE_2017-11-28.json",
                *sorted(DATA.glob("hese_event_0*.json"))]
KEYS = ("CalibrationErrata", "SaturationWindows")


def _pulses(rows: list[tuple[int, int, float]]) -> Pulses:
    s, o, t = (np.array(c) for c in zip(*rows, strict=True))
    n = len(rows)
    return Pulses.build(s, o, t, np.ones(n), np.ones(n, bool), np.zeros(n), np.zeros(n), np.zeros(n))


# -- mask_outside_windows ------------------------------------------------------------------------------------

def test_mask_edges_are_inside_and_other_doms_untouched() -> None:
    p = _pulses([(10, 5, 99.9), (10, 5, 100.0), (10, 5, 150.0), (10, 5, 200.0), (10, 5, 200.1),
                 (10, 6, 150.0), (11, 5, 150.0)])
    keep = mask_outside_windows(p, [(10, 5, 100.0, 200.0)])
    # pulses are sorted by (string, om, time): DOM 10-5 first, then 10-6, then 11-5
    assert keep.tolist() == [True, False, False, False, True, True, True]


def test_mask_several_windows_per_dom_and_unsorted_windows() -> None:
    p = _pulses([(20, 1, t) for t in (0.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0)] + [(21, 1, 10.0)])
    windows = [(20, 1, 40.0, 45.0), (21, 2, 0.0, 100.0), (20, 1, 5.0, 10.0), (20, 1, 20.0, 20.0)]
    keep = mask_outside_windows(p, windows)
    assert keep.tolist() == [True, False, True, False, True, False, True, True]
    # the same windows in another order give the same mask
    assert (mask_outside_windows(p, windows[::-1]) == keep).all()


def test_mask_without_windows_or_pulses() -> None:
    p = _pulses([(1, 1, 5.0), (2, 2, 6.0)])
    assert mask_outside_windows(p, np.zeros((0, 4))).tolist() == [True, True]
    assert mask_outside_windows(p.select([False, False]), [(1, 1, 0.0, 10.0)]).size == 0


def test_mask_matches_a_brute_force_loop() -> None:
    rng = np.random.default_rng(7)
    rows = [(int(rng.integers(1, 4)), int(rng.integers(1, 4)), float(rng.integers(0, 50))) for _ in range(300)]
    p = _pulses(rows)
    w = [(int(rng.integers(1, 4)), int(rng.integers(1, 4)), a, a + float(rng.integers(0, 10)))
         for a in rng.integers(0, 50, 12).astype(float)]
    want = [not any(s == ws and o == wo and a <= t <= b for ws, wo, a, b in w)
            for s, o, t in zip(p.string, p.om, p.time_ns, strict=True)]
    assert mask_outside_windows(p, w).tolist() == want


def test_freeze_windows_checks_rows() -> None:
    w = freeze_windows([(2, 1, 5.0, 6.0), (1, 3, 0.0, 1.0)])
    assert w[:, 0].tolist() == [1, 2] and not w.flags.writeable
    for bad, msg in (([(1, 1, 5.0, 4.0)], "starts after"), ([(1, 1, np.nan, 4.0)], "finite"),
                     ([(1, 1, 5.0)], "rows of"), ([(1.5, 1, 0.0, 1.0)], "integers")):
        with pytest.raises(ValueError, match=msg):
            freeze_windows(bad)


# -- the decoder on the real alerts ----------------------------------------------------------------------------

def _alert(path: Path):  # type: ignore[no-untyped-def]
    raw = path.read_bytes()
    doc = envelope.load_message_pickle(raw) if path.suffix == ".pkl" else json.loads(raw)
    return decode_alert(doc, str(path))


@pytest.fixture(scope="module")
def alerts() -> dict[str, object]:
    return {p.name: _alert(p) for p in WITH_WINDOWS}


@pytest.mark.parametrize("path", WITH_WINDOWS, ids=lambda p: p.name)
def test_real_window_maps_decode_and_account_for_every_byte(path: Path, alerts: dict) -> None:
    alert = alerts[path.name]
    q = next(f for f in alert.frames if f.stop == "Q")
    seen = 0
    for key in KEYS:
        slot = q.get(key)
        if slot is None:
            continue
        seen += 1
        w = decode_time_window_map(slot.buf, key)  # raises unless the blob is used up exactly
        ndoms = len({(int(s), int(o)) for s, o, _, _ in w})
        # byte accounting from the spec, independent of the decoder: a 41-byte header
        # ('I3TimeWindowSeriesMap'), map class info and count (6), class infos written once (10),
        # per DOM an OMKey and a series (25), per window 24 bytes
        assert len(slot.buf) == 57 + 25 * ndoms + 24 * len(w)
        assert len(w) >= 1 and (w[:, 2] <= w[:, 3]).all()
        # plausible: detector time in ns inside the readout, and each window's DOM saw light
        # starting before the window opens (errata and saturation follow a bright hit)
        sp = alert.split_pulses
        dom_s, dom_o = sp.keys[:, 0].repeat(sp.counts), sp.keys[:, 1].repeat(sp.counts)
        for s, o, start, stop in w:
            t = sp.time_ns[(dom_s == s) & (dom_o == o)]
            assert t.size and t.min() <= start <= t.max() + 1000 and stop - start < 20_000
    assert seen >= 1
    assert np.array_equal(alert.calibration_errata, decode_time_window_map(q.get("CalibrationErrata").buf))


def test_the_event_carries_the_windows(alerts: dict) -> None:
    ev = load_event(DATA / "event_HESE_2017-11-28.json")
    assert len(ev.calibration_errata) == len(alerts["event_HESE_2017-11-28.json"].calibration_errata) > 0
    assert len(ev.saturation_windows) == 1 and not ev.saturation_windows.flags.writeable
    # saturation lies on a DOM that also has errata, and the cleaned pulses of errata DOMs reach into them
    s, o = ev.saturation_windows[0, :2]
    assert ((ev.calibration_errata[:, 0] == s) & (ev.calibration_errata[:, 1] == o)).any()
    assert (~mask_outside_windows(ev.pulses, ev.calibration_errata)).sum() > 0


def test_truncated_or_padded_blob_is_a_one_line_decode_error(alerts: dict) -> None:
    q = next(f for f in alerts["event_HESE_2017-11-28.json"].frames if f.stop == "Q")
    buf = q.get("CalibrationErrata").buf
    for n in (0, 10, 45, 60, len(buf) - 1):
        with pytest.raises(DecodeError, match=r"truncated|exceeds") as e:
            decode_time_window_map(buf[:n], "CalibrationErrata")
        assert "\n" not in str(e.value)
    with pytest.raises(DecodeError, match="unexpected bytes at the end"):
        decode_time_window_map(buf + b"\0", "CalibrationErrata")
    # a window that stops before it starts (swap the last window's f64s)
    bad = buf[:-16] + buf[-8:] + buf[-16:-8]
    with pytest.raises(DecodeError, match="starts after it stops"):
        decode_time_window_map(bad, "CalibrationErrata")


# -- the native format -----------------------------------------------------------------------------------------

def test_native_round_trip_keeps_the_windows(tmp_path: Path) -> None:
    ev = load_event(DATA / "event_HESE_2017-11-28.json")
    out = write_event(ev, tmp_path / "e.json")
    back = load_event(out)
    assert np.array_equal(back.calibration_errata, ev.calibration_errata)
    assert np.array_equal(back.saturation_windows, ev.saturation_windows)
    doc = json.loads(Path(out).read_text())
    assert doc["saturation_windows"][0].keys() == {"string", "om", "start", "stop"}


def test_old_files_without_windows_load(tmp_path: Path) -> None:
    ev = native.from_dict(minimal_event_doc(), "x")
    assert ev.calibration_errata.shape == (0, 4) and ev.saturation_windows.shape == (0, 4)
    assert "calibration_errata" not in native.to_dict(ev)


@pytest.mark.parametrize(("value", "pattern"), [
    ({"string": 36, "om": 30, "start": 5.0, "stop": 4.0}, r"calibration_errata\[0\] starts after it stops"),
    ({"string": 36, "om": 30, "start": "5", "stop": 6.0}, r"calibration_errata\[0\] must be"),
    ({"string": 36, "om": 30, "start": float("inf"), "stop": 6.0}, r"calibration_errata\[0\] must be"),
    ({"string": 36.0, "om": 30, "start": 1.0, "stop": 6.0}, r"calibration_errata\[0\] must be"),
    ({"string": 36, "om": 99, "start": 1.0, "stop": 6.0}, r"calibration_errata\[0\] is on DOM \(string 36, om 99\)"),
    ([36, 30, 1.0, 6.0], r"calibration_errata\[0\] must be"),
])
def test_bad_windows_are_one_line_errors(value: object, pattern: str) -> None:
    with pytest.raises(EventError, match=pattern) as e:
        native.from_dict(minimal_event_doc(calibration_errata=[value]), "x")
    assert "\n" not in str(e.value)
    with pytest.raises(EventError, match="'saturation_windows' must be a list"):
        native.from_dict(minimal_event_doc(saturation_windows={}), "x")


def test_windows_off_the_in_ice_geometry_are_left_out(alerts: dict) -> None:
    import dataclasses

    from skymap_scanner.events.i3live import event_from_alert

    alert = alerts["run00136662-evt000035405932-BRONZE.pkl"]
    extra = np.array([(1.0, 61.0, 0.0, 1e5), (99.0, 1.0, 0.0, 1e5)])  # an IceTop DOM, no such string
    ev = event_from_alert(dataclasses.replace(alert, calibration_errata=np.vstack([alert.calibration_errata,
                                                                                    extra])), "x")
    assert np.array_equal(ev.calibration_errata, freeze_windows(alert.calibration_errata))

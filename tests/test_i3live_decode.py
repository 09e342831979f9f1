"""The i3live decoder on the real alert files in tests/data/events (provenance: tests/data/README.md)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.events import load_event
from skymap_scanner.events.i3live import cleaning, decode_alert, envelope, i3time
from skymap_scanner.events.i3live.objects import decode_pulse_series_map
from skymap_scanner.events.i3live.superdst import decode_superdst

DATA = Path(__file__).parent / "data" / "events"
BRONZE = DATA / "run00136662-evt000035405932-BRONZE.pkl"
TRACK_2023 = DATA / "138632_31747601.json"
HESE_2016 = sorted(DATA.glob("hese_event_0*.json"))
HESE_2017 = DATA / "event_HESE_2017-11-28.json"
ALL = [BRONZE, TRACK_2023, *HESE_2016, HESE_2017]
TRACKS = [BRONZE, TRACK_2023]


def _message(path: Path) -> dict:
    raw = path.read_bytes()
    if path.suffix == ".pkl":
        return envelope.load_message_pickle(raw)
    return json.loads(raw)


@pytest.fixture(scope="module")
def alerts() -> dict[str, object]:
    return {p.name: decode_alert(_message(p), str(p)) for p in ALL}


@pytest.fixture(scope="module")
def events() -> dict[str, object]:
    return {p.name: load_event(p) for p in ALL}


def test_all_files_shipped() -> None:
    assert len(ALL) == 7 and all(p.is_file() for p in ALL)


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_every_file_decodes_to_a_sane_event(path: Path, events: dict) -> None:
    ev = events[path.name]
    assert ev.is_real_event
    assert ev.geometry == "icecube86"
    p = ev.pulses
    assert len(p) > 0
    assert (p.string <= 78).all() and (p.om <= 60).all() and (p.om >= 1).all()
    assert np.isfinite(p.x_m).all() and np.isfinite(p.time_ns).all()
    assert (p.charge_pe > 0).all()
    assert 57000 < ev.mjd < 61000


@pytest.mark.parametrize("path", TRACKS, ids=lambda p: p.name)
def test_recorded_nch_npulses_qtot_reproduced_exactly(path: Path, events: dict) -> None:
    msg = _message(path)["value"]["data"]
    p = events[path.name].pulses
    s = cleaning.stats(p.string, p.om, p.charge_pe)
    assert (s.nch, s.npulses, s.qtot) == (msg["nch"], msg["npulses"], msg["qtot"])
    assert p.n_doms == msg["nch"]


@pytest.mark.parametrize("path", TRACKS, ids=lambda p: p.name)
def test_ids_time_and_type_of_track_alerts(path: Path, alerts: dict, events: dict) -> None:
    msg = _message(path)["value"]["data"]
    a, ev = alerts[path.name], events[path.name]
    assert (ev.run_id, ev.event_id) == (msg["run_id"], msg["event_id"])
    assert a.event_time == msg["eventtime"]  # to the microsecond
    t = dt.datetime.strptime(msg["eventtime"], "%Y-%m-%d %H:%M:%S.%f")
    mjd_expected = (t - dt.datetime(1858, 11, 17)).total_seconds() / 86400
    assert abs(ev.mjd - mjd_expected) * 86400e6 < 1.0  # < 1 microsecond
    assert ev.event_type == "neutrino"
    assert a.layout == ("2021a" if path.suffix == ".pkl" else "2023a")


@pytest.mark.parametrize("path", TRACKS, ids=lambda p: p.name)
def test_online_fits_match_the_message(path: Path, events: dict) -> None:
    reco = _message(path)["value"]["data"]["reco"]
    fits = events[path.name].online_fits
    for name, key in (("SplineMPE", "splinempe"), ("SPEFit2", "spefit2"), ("MPEFit", "onlineL2_bestfit")):
        rec = reco.get(key) or reco.get("l2_online_bestfit")
        assert fits[name].zenith_rad == pytest.approx(rec["zen"], abs=6e-6)
        assert fits[name].azimuth_rad == pytest.approx(rec["azi"], abs=6e-6)
    # the P-frame SplineMPE carries a vertex, the message-only SPEFit2 does not
    assert np.isfinite(fits["SplineMPE"].x_m) and np.isnan(fits["SPEFit2"].x_m)


@pytest.mark.parametrize("path", [*HESE_2016, HESE_2017], ids=lambda p: p.name)
def test_hese_type_fits_and_time(path: Path, alerts: dict, events: dict) -> None:
    a, ev = alerts[path.name], events[path.name]
    assert ev.event_type == "HESE"
    assert a.layout == "old"
    assert {"HESE_SPEFit2", "HESE_CascadeLlhVertexFit"} <= set(ev.online_fits)
    q0, q1 = a.q_header.start, a.q_header.end
    assert q0.year == a.p_header.start.year and q0.daq <= a.p_header.start.daq <= q1.daq
    sent = dt.datetime.strptime(_message(path)["time"], "%Y-%m-%d %H:%M:%S.%f")
    event = dt.datetime.strptime(a.event_time, "%Y-%m-%d %H:%M:%S.%f")
    assert dt.timedelta(0) < sent - event < dt.timedelta(minutes=5)  # sent shortly after the event
    assert abs(ev.mjd - i3time.to_mjd(a.p_header.start)) == 0


@pytest.mark.parametrize("path", HESE_2016, ids=lambda p: p.name)
def test_superdst_matches_full_precision_pulses(path: Path, alerts: dict) -> None:
    q = [f for f in alerts[path.name].frames if f.stop == "Q"][-1]
    full = decode_pulse_series_map(q.get("UncleanedInIcePulses").buf)
    dst = decode_superdst(q.get("I3SuperDST").buf)
    assert dst.n_keys > dst.in_ice().n_keys  # IceTop DOMs are part of the SuperDST map
    dst = dst.in_ice()
    np.testing.assert_array_equal(full.keys, dst.keys)
    np.testing.assert_array_equal(full.counts, dst.counts)
    assert np.abs(full.time_ns - dst.time_ns).max() <= 0.5
    assert np.abs(full.charge_pe - dst.charge_pe).max() <= 0.025
    np.testing.assert_array_equal(full.lc, dst.lc)


def test_split_pulses_and_masks_of_the_bronze_alert(alerts: dict) -> None:
    a = alerts[BRONZE.name]
    sp = a.split_pulses
    assert a.pulse_key == "SplitUncleanedInIcePulses"
    assert (sp.n_pulses, sp.n_keys) == (763, 176)  # spec section 11
    assert round(float(sp.charge_pe.astype(np.float64).sum()), 3) == 1418.425
    # pulse times are relative to the Q-frame start; the split event starts later
    offset_ns = (a.p_header.start.daq - a.q_header.start.daq) / 10
    assert offset_ns > 0
    assert sp.time_ns.min() >= offset_ns - 10_000


def test_pickle_and_json_of_the_same_kind_give_the_same_event_shape(events: dict) -> None:
    b, t = events[BRONZE.name], events[TRACK_2023.name]
    assert b.name == "run00136662.evt000035405932.neutrino"
    assert set(b.online_fits) == set(t.online_fits) == {"SplineMPE", "MPEFit", "SPEFit2"}

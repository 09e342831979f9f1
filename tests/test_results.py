"""Result files: skyreader reads our .npz and JSON; writes are atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.collector import RESULT_DTYPE
from skymap_scanner.results import EventMeta, ScanResult, load_result, scan_provenance

PROVENANCE = scan_provenance("pandel_mpe", {"n_posvar": "3"}, "8:0 64:12", "run00136662.evt000035405932.BRONZE",
                             scan_id="136662-35405932-abc")


def make_result() -> ScanResult:
    rng = np.random.default_rng(0)
    maps = {}
    for nside, n in ((8, 768), (64, 300)):
        arr = np.zeros(n, dtype=RESULT_DTYPE)
        arr["index"] = rng.choice(12 * nside * nside, n, replace=False)
        arr["llh"] = rng.uniform(10, 100, n)
        for f in ("E_in", "E_tot", "X", "Y", "Z", "T"):
            arr[f] = rng.normal(size=n)
        maps[nside] = arr
    maps[64]["llh"][17] = 1.5  # the planted best
    maps[8]["llh"][3] = np.nan  # a failed pixel
    return ScanResult(EventMeta(136662, 35405932, "BRONZE", 59723.3205, True), maps, {8: True, 64: False}, PROVENANCE)


def test_name_and_best() -> None:
    r = make_result()
    assert r.filename() == "run00136662.evt000035405932.BRONZE_8_64.npz"
    assert r.best() == (64, int(r.maps[64]["index"][17]), 1.5)


def test_skyreader_reads_npz_and_json(tmp_path: Path) -> None:
    skyreader = pytest.importorskip("skyreader", reason="icecube-skyreader is a test dependency: pip install -e '.[test]'")
    r = make_result()
    npz = r.write_npz(tmp_path)
    js = r.write_json(tmp_path)
    for loaded in (skyreader.SkyScanResult.read_npz(npz), skyreader.SkyScanResult.read_json(js)):
        md = loaded.get_event_metadata()
        assert (md.run_id, md.event_id, md.event_type, md.is_real_event) == (136662, 35405932, "BRONZE", True)
        best = loaded.best_fit
        assert int(best["index"]) == r.best()[1] and float(best["llh"]) == pytest.approx(1.5)
        arr = loaded.result["nside-64"]
        assert np.all(np.diff(arr["index"]) > 0)  # sorted by index
        assert arr.dtype.metadata["nside"] == 64 and not bool(arr.dtype.metadata["complete"])
        assert json.loads(arr.dtype.metadata["provenance"]) == PROVENANCE  # skyreader carries it along
    a = skyreader.SkyScanResult.read_npz(npz)
    b = skyreader.SkyScanResult.read_json(js)
    assert a.is_close(b, equal_nan=True)
    assert json.loads(js.read_text())["nside-8"]["columns"] == ["index", "llh", "E_in", "E_tot", "X", "Y", "Z", "T"]


def test_load_result_round_trip(tmp_path: Path) -> None:
    r = make_result()
    back = load_result(r.write_npz(tmp_path))
    assert back.meta == r.meta and back.complete == {8: True, 64: False}
    assert back.provenance == PROVENANCE
    assert back.provenance["reco"] == "pandel_mpe" and back.provenance["reco_options"] == {"n_posvar": "3"}
    assert back.provenance["nside_progression"] == "8:0 64:12" and back.provenance["scanner_version"]
    assert back.provenance["event"] == "run00136662.evt000035405932.BRONZE"
    for n in r.maps:
        a = np.sort(r.maps[n], order="index")
        for f in a.dtype.names or ():
            assert np.array_equal(a[f], back.maps[n][f], equal_nan=(f != "index"))


def test_atomic_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = make_result()
    path = r.write_npz(tmp_path)
    before = path.read_bytes()

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        r.write_npz(tmp_path)
    assert path.read_bytes() == before  # the old file is intact
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []  # no temp left behind


def test_load_result_checks_and_legacy(tmp_path: Path) -> None:
    from skymap_scanner.errors import SkyScanError

    legacy = np.zeros(3, dtype=[("index", "<i8"), ("llh", "<f8"), ("E_in", "<f8"), ("E_tot", "<f8")])
    legacy["index"] = [5, 1, 2]
    np.savez(tmp_path / "legacy.npz", **{"nside-8": legacy})
    r = load_result(tmp_path / "legacy.npz")
    assert r.meta is None and r.complete == {} and r.maps[8]["index"].tolist() == [5, 1, 2]
    with pytest.raises(SkyScanError, match="no event metadata"):
        r.write_npz(tmp_path)  # cannot name a result without its event
    np.savez(tmp_path / "nollh.npz", **{"nside-8": np.zeros(2, dtype=[("index", "<i8")])})
    with pytest.raises(SkyScanError, match="lacks the fields 'index' and 'llh'"):
        load_result(tmp_path / "nollh.npz")
    np.savez(tmp_path / "badkey.npz", **{"nside-x": legacy})
    with pytest.raises(SkyScanError, match="bad key"):
        load_result(tmp_path / "badkey.npz")
    np.savez(tmp_path / "obj.npz", **{"nside-8": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(SkyScanError, match="cannot read"):
        load_result(tmp_path / "obj.npz")


def test_partial_results_have_their_own_name(tmp_path: Path) -> None:
    r = make_result()
    partial = r.write_npz(tmp_path, partial=True)
    assert partial.name == "run00136662.evt000035405932.BRONZE_8_64.partial.npz"
    assert r.write_json(tmp_path, partial=True).name == "run00136662.evt000035405932.BRONZE_8_64.partial.json"
    final = r.write_npz(tmp_path)
    assert final != partial and not final.name.endswith(".partial.npz")
    assert load_result(partial).complete == {8: True, 64: False}


def test_a_header_without_provenance_still_reads(tmp_path: Path) -> None:
    """Files written before the provenance column (the header of issue 2) read as before."""
    skyreader = pytest.importorskip("skyreader", reason="icecube-skyreader is a test dependency: pip install -e '.[test]'")
    arr = np.zeros(2, dtype=RESULT_DTYPE)
    arr["index"], arr["llh"] = [3, 7], [2.0, 1.0]
    cols = [("nside", "<i8"), ("complete", "?"), ("run_id", "<i8"), ("event_id", "<i8"), ("event_type", "<U6"),
            ("mjd", "<f8"), ("is_real_event", "?"), ("version", "<i8")]
    header = np.array([(8, True, 136662, 2, "BRONZE", 59000.5, True, 1)], dtype=cols)
    np.savez(tmp_path / "old.npz", header=header, **{"nside-8": arr})
    r = load_result(tmp_path / "old.npz")
    assert r.provenance == {} and r.meta == EventMeta(136662, 2, "BRONZE", 59000.5, True)
    assert skyreader.SkyScanResult.read_npz(tmp_path / "old.npz").best_fit["index"] == 7


def test_bad_provenance_is_a_one_line_error(tmp_path: Path) -> None:
    from skymap_scanner.errors import SkyScanError

    arr = np.zeros(1, dtype=RESULT_DTYPE)
    cols = [("nside", "<i8"), ("complete", "?"), ("run_id", "<i8"), ("event_id", "<i8"), ("event_type", "<U6"),
            ("mjd", "<f8"), ("is_real_event", "?"), ("version", "<i8"), ("provenance", "<U8")]
    np.savez(tmp_path / "p.npz", header=np.array([(8, True, 1, 2, "BRONZE", 59000.5, True, 1, "[1, 2]")], dtype=cols),
             **{"nside-8": arr})
    with pytest.raises(SkyScanError, match="provenance is not a JSON object"):
        load_result(tmp_path / "p.npz")

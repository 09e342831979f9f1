"""make_products end to end, the products command, and IceCube's real Bronze scan (legacy Dec sign)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time
from synthetic import Gaussian, gaussian_scan, snap_to_pixel, write_result_npz

from skymap_scanner.errors import SkyScanError
from skymap_scanner.products import make_products
from skymap_scanner.utils import products as cli

BRONZE = Path(__file__).parent / "data" / "scans" / "run00136662-evt000035405932-BRONZE-8_64_512.npz"
BRONZE_IDS = ["--run-id", "136662", "--event-id", "35405932", "--event-type", "BRONZE", "--mjd", "59723.3205114045"]
HEADER = dict(
    run_id=138632, event_id=31747601, event_type="GOLD", is_real_event=True,
    mjd=float(Time("2023-12-02T17:08:24.093230", scale="utc").mjd),
)


@pytest.fixture
def result(tmp_path: Path) -> tuple[Path, Gaussian]:
    ra, dec = snap_to_pixel(0.2, 12.0, 512)
    g = Gaussian(ra, dec, sx=0.9, sy_plus=0.5, sy_minus=1.2)
    return write_result_npz(tmp_path / "scan.npz", gaussian_scan(g), header=HEADER), g


def test_make_products_writes_every_product_and_a_gcn_like_summary(result: tuple[Path, Gaussian], tmp_path: Path) -> None:
    path, g = result
    out = make_products(path, tmp_path / "out", reco="dummy", nsides="8:0 64:12 512:24")
    assert set(out) == {"summary", "moc_fits", "llh_fits", "fullsky_png", "fullsky_pdf", "zoom_png", "zoom_pdf",
                        "gcn_notice", "circular"}
    for p in out.values():
        assert p.parent == tmp_path / "out" and p.stat().st_size > 0
    assert out["fullsky_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["zoom_pdf"].read_bytes()[:5] == b"%PDF-"
    s = json.loads(out["summary"].read_text())
    assert s["event"]["run_id"] == 138632 and s["event"]["event_id"] == 31747601
    assert s["event"]["event_type"] == "GOLD" and s["event"]["is_real_event"] is True
    assert s["event"]["time_utc"].startswith("2023-12-02T17:08:24.09")
    assert s["best_fit"]["ra_deg"] == pytest.approx(g.ra0, abs=1e-5)
    assert s["best_fit"]["dec_deg"] == pytest.approx(g.dec0, abs=1e-5)
    assert s["best_fit"]["llh"] == pytest.approx(g.llh0)
    assert [r["name"] for r in s["regions"]] == ["wilks_50", "wilks_90", "icecube_50", "icecube_90"]
    for r in s["regions"]:
        assert set(r) >= {"name", "level", "containment", "area_deg2", "ra_err_deg", "dec_err_deg"}
        assert len(r["ra_err_deg"]) == len(r["dec_err_deg"]) == 2
    w90 = s["regions"][1]
    assert w90["dec_err_deg"][0] > w90["dec_err_deg"][1]  # the Gaussian is wider below (1.2) than above (0.5)
    assert w90["dec_err_deg"][0] / w90["dec_err_deg"][1] == pytest.approx(1.2 / 0.5, rel=0.02)
    areas = [r["area_deg2"] for r in s["regions"]]
    assert areas == sorted(areas)
    prov = s["provenance"]
    assert prov["reco"] == "dummy" and prov["nside_progression"] == "8:0 64:12 512:24"
    assert prov["nsides"] == [8, 64, 512]
    import hashlib

    assert prov["result_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_plotting_failure_still_leaves_fits_and_summary(
    result: tuple[Path, Gaussian], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from skymap_scanner.products import plots

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "fullsky_figure", broken)
    with pytest.raises(RuntimeError, match="no display"):
        make_products(result[0], tmp_path / "out")
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["regions"] and (tmp_path / "out" / "skymap.multiorder.fits").exists()
    assert "skymap_fullsky.png" not in s["provenance"]["products"]


def test_cli_help_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "--legacy-dec-sign" in capsys.readouterr().out
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip")
    assert cli.main([str(bad), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.npz" in err and "Traceback" not in err
    assert cli.main([str(tmp_path / "missing.npz"), "-o", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    np.savez(tmp_path / "nonside.npz", foo=np.arange(3))
    assert cli.main([str(tmp_path / "nonside.npz"), "-o", str(tmp_path / "o")]) == 2
    assert "no nside-N arrays" in capsys.readouterr().err


def test_cli_ids_override_the_header(result: tuple[Path, Gaussian], tmp_path: Path) -> None:
    assert cli.main([str(result[0]), "-o", str(tmp_path / "o"), "--no-plots", "--event-id", "7", "--contours", "wilks"]) == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["event"]["event_id"] == 7 and s["event"]["run_id"] == 138632
    assert not (tmp_path / "o" / "skymap_zoom.png").exists()


def test_bronze_scan_needs_the_explicit_legacy_flag(tmp_path: Path) -> None:
    if not BRONZE.exists():
        pytest.skip(f"test data missing: {BRONZE}")
    args = [str(BRONZE), *BRONZE_IDS, "--no-plots"]
    assert cli.main([*args, "-o", str(tmp_path / "raw")]) == 0
    assert cli.main([*args, "-o", str(tmp_path / "fixed"), "--legacy-dec-sign"]) == 0
    raw = json.loads((tmp_path / "raw" / "summary.json").read_text())
    fixed = json.loads((tmp_path / "fixed" / "summary.json").read_text())
    # Published RA ~47 deg; the legacy file read as-is puts the event at the mirrored Dec.
    assert 46.0 < fixed["best_fit"]["ra_deg"] < 49.0
    assert fixed["best_fit"]["ra_deg"] == pytest.approx(raw["best_fit"]["ra_deg"])
    assert fixed["best_fit"]["dec_deg"] == pytest.approx(-raw["best_fit"]["dec_deg"])
    assert -5.0 < fixed["best_fit"]["dec_deg"] < -2.0  # near SplineMPE's Dec -3.52 deg
    assert fixed["event"]["time_utc"].startswith("2022-05-24T07:41:32")
    assert "legacy" in fixed["provenance"]["dec_sign"]
    a_fixed = {r["name"]: r["area_deg2"] for r in fixed["regions"]}
    a_raw = {r["name"]: r["area_deg2"] for r in raw["regions"]}
    assert a_fixed == pytest.approx(a_raw, rel=1e-9)  # mirroring moves the map, it does not change areas
    assert a_fixed["wilks_50"] < a_fixed["wilks_90"] < a_fixed["icecube_50"] < a_fixed["icecube_90"]


def test_read_scan_rejects_object_arrays_without_unpickling(tmp_path: Path) -> None:
    from skymap_scanner.products import read_scan

    p = tmp_path / "obj.npz"
    np.savez(p, **{"nside-8": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(SkyScanError):
        read_scan(p)

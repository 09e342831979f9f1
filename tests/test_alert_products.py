"""GCN-ready products on a scan of an analytic Gaussian: FITS header cards, gcn_notice.json, circular.txt."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from astropy.io import fits
from astropy.time import Time
from synthetic import Gaussian, gaussian_scan, snap_to_pixel, write_result_npz

from skymap_scanner.products import HEADLINE, LEVEL_SETS, make_products
from skymap_scanner.products.alert import event_name

LEVEL = {ls.name: ls.level for ls in LEVEL_SETS}
HEADER = dict(run_id=138632, event_id=31747601, event_type="GOLD", is_real_event=True,
              mjd=float(Time("2023-12-02T17:08:24.093230", scale="utc").mjd))


def analytic(g: Gaussian, level: float) -> dict[str, float]:
    """Extents (deg) and area (deg2) of the split-Gaussian region 2*Delta-llh <= level (small-angle)."""
    r = math.sqrt(level)
    # dRA = x / cos(dec); the widest RA extent is at the contour point with the smallest cos(dec)
    t = [i * 2 * math.pi / 200_000 for i in range(200_000)]
    dra = [g.sx * r * math.cos(a) / math.cos(math.radians(g.dec0 + (g.sy_plus if math.sin(a) > 0 else g.sy_minus)
                                                           * r * math.sin(a))) for a in t]
    return {"ra_plus": max(dra), "ra_minus": -min(dra), "dec_plus": g.sy_plus * r, "dec_minus": g.sy_minus * r,
            "area": math.pi * g.sx * level * (g.sy_plus + g.sy_minus) / 2.0}


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> tuple[Gaussian, dict[str, Path]]:
    tmp = tmp_path_factory.mktemp("alert")
    ra, dec = snap_to_pixel(150.3, 12.0, 512)
    g = Gaussian(ra, dec, sx=0.3, sy_plus=0.2, sy_minus=0.35)
    npz = write_result_npz(tmp / "scan.npz", gaussian_scan(g), header=HEADER)
    return g, make_products(npz, tmp / "out", reco="dummy", plots=False)


def test_fits_headers_carry_the_gcn_cards_with_the_analytic_values(products: tuple[Gaussian, dict[str, Path]]) -> None:
    g, out = products
    for key in ("moc_fits", "llh_fits"):
        with fits.open(out[key]) as hdul:
            hdul.verify("exception")
            h = hdul[1].header
        assert (h["RUNID"], h["EVENTID"], h["EVENT-TYPE"]) == (138632, 31747601, "GOLD")
        assert h["DATE-OBS"].startswith("2023-12-02T17:08:24.09")
        assert h["MJD-OBS"] == pytest.approx(HEADER["mjd"])
        assert h["RA"] == pytest.approx(g.ra0, abs=1e-9) and h["DEC"] == pytest.approx(g.dec0, abs=1e-9)
        for cl, name in (("50", HEADLINE.r50), ("90", HEADLINE.r90)):
            a = analytic(g, LEVEL[name])
            assert h[f"RA_ERR_PLUS_{cl}"] == pytest.approx(a["ra_plus"], rel=0.01)
            assert h[f"RA_ERR_MINUS_{cl}"] == pytest.approx(a["ra_minus"], rel=0.01)
            assert h[f"DEC_ERR_PLUS_{cl}"] == pytest.approx(a["dec_plus"], rel=0.01)
            assert h[f"DEC_ERR_MINUS_{cl}"] == pytest.approx(a["dec_minus"], rel=0.01)
            assert h[f"CONTOUR_AREA_{cl}"] == pytest.approx(a["area"], rel=0.03)
        assert h["DEC_ERR_MINUS_90"] > h["DEC_ERR_PLUS_90"]  # wider below (0.35) than above (0.2)
        comments = " ".join(str(c) for c in h["COMMENT"])
        assert "22.2" in comments and "64.2" in comments  # says which regions the cards are


def test_gcn_notice_is_a_draft_with_the_headline_90_region(products: tuple[Gaussian, dict[str, Path]]) -> None:
    g, out = products
    n = json.loads(out["gcn_notice"].read_text())
    s = json.loads(out["summary"].read_text())
    a90 = analytic(g, LEVEL[HEADLINE.r90])
    assert n["draft"] is True and "check" in n["draft_note"]
    assert (n["mission"], n["messenger"]) == ("IceCube", "Neutrino")
    assert n["trigger_time"] == s["event"]["time_utc"] + "Z"
    assert n["event_name"] == "IceCube-231202A"
    assert n["ra"] == pytest.approx(g.ra0, abs=1e-5) and n["dec"] == pytest.approx(g.dec0, abs=1e-5)
    assert n["ra_dec_error"] == pytest.approx(math.sqrt(a90["area"] / math.pi), rel=0.02)
    assert n["containment_probability"] == 0.9
    assert n["systematic_included"] is HEADLINE.systematic_included
    assert n["dec_error_90"]["minus"] == pytest.approx(a90["dec_minus"], rel=0.01)
    assert (out["gcn_notice"].parent / n["healpix_file"]).is_file()
    assert n["healpix_file"] == out["moc_fits"].name


def test_circular_numbers_are_the_summarys(products: tuple[Gaussian, dict[str, Path]]) -> None:
    _, out = products
    text = out["circular"].read_text()
    s = json.loads(out["summary"].read_text())
    r90 = {r["name"]: r for r in s["regions"]}[HEADLINE.r90]
    assert "DRAFT" in text.splitlines()[0]
    assert "IceCube-231202A" in text and "Time: 17:08:24.09 UT" in text and "Date: 2023-12-02" in text
    ra = re.search(r"^RA: ([\d.]+) \(\+([\d.]+) -([\d.]+) deg 90%", text, re.M)
    dec = re.search(r"^Dec: (-?[\d.]+) \(\+([\d.]+) -([\d.]+) deg 90%", text, re.M)
    area = re.search(r"90% containment region covers ([\d.]+) sq\. deg", text)
    assert ra and dec and area
    assert [float(x) for x in ra.groups()] == [round(s["best_fit"]["ra_deg"], 2), round(r90["ra_err_deg"][1], 2),
                                               round(r90["ra_err_deg"][0], 2)]
    assert [float(x) for x in dec.groups()] == [round(s["best_fit"]["dec_deg"], 2), round(r90["dec_err_deg"][1], 2),
                                                round(r90["dec_err_deg"][0], 2)]
    assert float(area.group(1)) == round(r90["area_deg2"], 2)
    assert "dummy" in text  # the reco used


def test_event_name_from_the_date() -> None:
    assert event_name("2022-05-24T07:41:32.185352") == "IceCube-220524A"
    assert event_name("2019-01-01T00:00:00", letter="B") == "IceCube-190101B"
    assert event_name(None).startswith("IceCube-??")


def test_products_of_a_partial_result_say_so(tmp_path: Path) -> None:
    ra, dec = snap_to_pixel(150.3, 12.0, 512)
    arrays = gaussian_scan(Gaussian(ra, dec, sx=0.3))
    idx, llh = arrays[8]
    arrays[8] = (idx[:500], llh[:500])  # as after Ctrl-C
    npz = write_result_npz(tmp_path / "scan.partial.npz", arrays, header={**HEADER, "complete": False})
    out = make_products(npz, tmp_path / "out", plots=False)
    s = json.loads(out["summary"].read_text())
    assert s["scan_complete"] is False and s["fraction_of_sky_scanned"] < 0.7
    assert "INCOMPLETE" in out["circular"].read_text()
    assert json.loads(out["gcn_notice"].read_text())["scan_complete"] is False
    with fits.open(out["moc_fits"]) as hdul:
        assert hdul[1].header["COMPLETE"] is False
        assert "INCOMPLETE" in " ".join(str(c) for c in hdul[1].header["COMMENT"])


def test_products_command_takes_provenance_from_the_result(tmp_path: Path) -> None:
    import numpy as np

    from skymap_scanner.collector import RESULT_DTYPE
    from skymap_scanner.results import EventMeta, ScanResult, scan_provenance
    from skymap_scanner.utils import products as cli

    ra, dec = snap_to_pixel(150.3, 12.0, 512)
    maps = {}
    for nside, (idx, llh) in gaussian_scan(Gaussian(ra, dec, sx=0.3)).items():
        a = np.zeros(idx.size, dtype=RESULT_DTYPE)
        a["index"], a["llh"] = idx, llh
        maps[nside] = a
    prov = scan_provenance("pandel_mpe", {"n_posvar": "3"}, "8:0 64:12 512:24", "run00138632.evt000031747601.GOLD",
                           online_fits={"SplineMPE": [150.5, 12.1]})
    result = ScanResult(EventMeta(**HEADER), maps, dict.fromkeys(maps, True), prov)
    npz = result.write_npz(tmp_path)
    assert cli.main([str(npz), "-o", str(tmp_path / "out"), "--no-plots"]) == 0
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["provenance"]["reco"] == "pandel_mpe" and s["provenance"]["reco_options"] == {"n_posvar": "3"}
    assert s["provenance"]["nside_progression"] == "8:0 64:12 512:24"
    assert s["provenance"]["scanned_with_version"] and s["event"]["event_id"] == 31747601
    assert "pandel_mpe" in (tmp_path / "out" / "circular.txt").read_text()

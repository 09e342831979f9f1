"""Calibrated regions: the threshold lookup, deriving a calibration, the calibrated probability map,
``pixel_limited``, and what the products and the scan say about them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import Gaussian, gaussian_scan, snap_to_pixel

from skymap_scanner.calibration import (
    CALIBRATION_FORMAT,
    Calibration,
    EventCalibration,
    coverage,
    derive,
    load_calibration,
    shipped_calibration,
)
from skymap_scanner.collector import RESULT_DTYPE
from skymap_scanner.errors import ConfigError
from skymap_scanner.products import build_multires, make_products, scan_from_arrays
from skymap_scanner.products.fits import probability_density
from skymap_scanner.products.multires import SR_TO_DEG2
from skymap_scanner.products.regions import is_pixel_limited, region_area_deg2
from skymap_scanner.results import EventMeta, ScanResult

WILKS_GRID = tuple(round(x, 2) for x in np.arange(0.05, 0.951, 0.05)) + (0.97, 0.99)


def wilks_calibration(stretch: float = 1.0, exponent: float = 0.0) -> Calibration:
    """A calibration whose levels are ``stretch`` times Wilks' (2 dof) at the reference brightness 100."""
    return Calibration(
        reco="pandel_mpe", reco_options={"ice": "depth"}, feature="n_doms", reference=100.0, exponent=exponent,
        domain=(20.0, 1000.0), containment=WILKS_GRID,
        scaled_level=tuple(stretch * -2.0 * math.log1p(-c) for c in WILKS_GRID), provenance={}, version="test",
    )


# -- the lookup ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(n=st.floats(1.0, 5000.0), c1=st.floats(0.05, 0.99), c2=st.floats(0.05, 0.99))
def test_levels_are_monotone_in_containment_and_invert(n: float, c1: float, c2: float) -> None:
    cal = wilks_calibration(stretch=2.5, exponent=0.7).for_event(n)
    lo, hi = sorted((c1, c2))
    assert cal.level_for(lo) <= cal.level_for(hi)
    if hi - lo > 1e-6:
        assert cal.level_for(lo) < cal.level_for(hi)
    assert cal.containment_of(cal.level_for(c1)) == pytest.approx(c1, abs=1e-9)


def test_lookup_covers_its_documented_domain_and_clamps_outside() -> None:
    cal = wilks_calibration(exponent=1.0)
    inside = [cal.for_event(n) for n in (20.0, 100.0, 1000.0)]
    assert [e.extrapolated for e in inside] == [False, False, False]
    assert inside[1].level_for(0.9) == pytest.approx(4.605, rel=1e-3)
    assert inside[2].level_for(0.9) == pytest.approx(10 * 4.605, rel=1e-3)  # (1000/100)^1
    below, above = cal.for_event(5.0), cal.for_event(1e5)
    assert below.extrapolated and above.extrapolated
    assert below.level_for(0.9) == pytest.approx(inside[0].level_for(0.9))  # nearest edge, not extrapolated
    assert above.level_for(0.9) == pytest.approx(inside[2].level_for(0.9))
    with pytest.raises(ConfigError, match="outside the calibrated range"):
        inside[1].level_for(0.999)
    c = inside[1].containment_of(np.array([0.0, 1.0, 4.605, 20.0, 60.0, np.nan]))
    assert c[0] == 0.0 and np.all(np.diff(c[:5]) > 0) and c[4] < 1.0 and np.isnan(c[5])
    assert c[2] == pytest.approx(0.9, abs=1e-3)


def test_unknown_calibration_format_or_version_is_refused(tmp_path: Path) -> None:
    d = wilks_calibration().to_dict()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(d))
    assert load_calibration(good).version == "test"
    for fmt in ("skymap-scanner-calibration/2", None):
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({**d, "format": fmt}))
        with pytest.raises(ConfigError, match="cannot use it"):
            load_calibration(bad)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**d, "scaled_level": [3.0, 2.0] + list(d["scaled_level"][2:])}))
    with pytest.raises(ConfigError, match="ascending"):
        load_calibration(broken)
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        load_calibration(tmp_path / "notjson.json")


def test_the_shipped_calibration_loads_and_applies_only_to_its_fit() -> None:
    cal = shipped_calibration("pandel_mpe")
    assert cal is not None and cal.reco == "pandel_mpe"
    assert cal.to_dict()["format"] == CALIBRATION_FORMAT
    assert cal.provenance["n_events"] >= 100 and cal.provenance["seeds"]
    assert cal.applies_to("pandel_mpe", {})
    assert cal.applies_to("pandel_mpe", {"use_online_seeds": "false"})
    assert not cal.applies_to("pandel_mpe", {"ice": "homogeneous"})
    assert not cal.applies_to("dummy", {})
    assert shipped_calibration("dummy") is None
    e = cal.for_event(cal.reference)
    assert 1.386 < e.level_for(0.5) < e.level_for(0.9)  # pandel_mpe under-covers with Wilks: levels above it


# -- deriving ----------------------------------------------------------------------------------------
def simulated_rows(rng: np.random.Generator, n: int, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """2*Delta-llh(true) = (n_doms/150)^exponent * 3 * chi2(2 dof): a fit that under-covers more when bright."""
    n_doms = np.exp(rng.uniform(np.log(30), np.log(800), n))
    d = (n_doms / 150.0) ** exponent * 3.0 * rng.chisquare(2, n)
    return d, n_doms


def test_derive_recovers_the_brightness_dependence_and_covers_independent_events() -> None:
    rng = np.random.default_rng(5)
    d, n = simulated_rows(rng, 3000, exponent=0.8)
    cal = derive(d, n, reco="pandel_mpe", reco_options={"ice": "depth"})
    assert cal.exponent == pytest.approx(0.8, abs=0.12)
    d2, n2 = simulated_rows(rng, 4000, exponent=0.8)
    for c in (0.5, 0.9):
        levels = [cal.for_event(x).level_for(c) for x in n2]
        assert coverage(d2, levels) == pytest.approx(c, abs=0.03)
        bright = n2 > 400  # the model holds per brightness band, not only on average
        assert coverage(d2[bright], np.asarray(levels)[bright]) == pytest.approx(c, abs=0.05)
    flat = derive(d, n, reco="pandel_mpe", reco_options={}, exponent=0.0)
    bright = n2 > 400
    flat90 = [flat.for_event(x).level_for(0.9) for x in n2[bright]]
    assert coverage(d2[bright], flat90) < 0.85  # one level for all under-covers the bright events


def test_derive_refuses_too_few_events() -> None:
    with pytest.raises(ConfigError, match="at least 20"):
        derive([1.0] * 5, [100.0] * 5, reco="pandel_mpe", reco_options={})


# -- the probability map -----------------------------------------------------------------------------
def credible_area_deg2(m, density: np.ndarray, p: float) -> float:  # type: ignore[no-untyped-def]
    """Area of the smallest region holding probability ``p`` (highest density first), as ligo.skymap does."""
    order = np.argsort(-density, kind="stable")
    prob = (density * m.area_sr)[order]
    k = int(np.searchsorted(np.cumsum(prob), p - 1e-9))  # 1e-9: float round-off in the sum
    return float(np.sum(m.area_sr[order][: k + 1]) * SR_TO_DEG2)


@pytest.fixture(scope="module")
def gaussian_map():  # type: ignore[no-untyped-def]
    ra, dec = snap_to_pixel(40.0, -20.0, 512)
    g = Gaussian(ra, dec, sx=0.5, isotropic=True)  # 2*Delta-llh = (d / 0.5 deg)^2
    arrays = gaussian_scan(g, radii_deg=(180.0, 20.0, 6.0))
    return g, build_multires(scan_from_arrays(arrays))


@pytest.mark.parametrize("stretch", [1.0, 3.0])
def test_calibrated_map_credible_areas_match_the_analytic_gaussian(gaussian_map, stretch: float) -> None:  # type: ignore[no-untyped-def]
    g, m = gaussian_map
    cal = wilks_calibration(stretch=stretch).for_event(100.0)
    dens = probability_density(m, None, cal)
    assert float(np.sum(dens * m.area_sr)) == pytest.approx(1.0)
    for p in (0.5, 0.9):
        # Wilks-shaped containment stretched by s: region 2dllh <= s * (-2 ln(1-p)), area pi * sx^2 * level
        analytic = math.pi * g.sx**2 * stretch * -2.0 * math.log1p(-p)
        region = region_area_deg2(m, cal.level_for(p))
        assert region == pytest.approx(analytic, rel=0.06)  # the nside-512 pixelisation of the disc
        # the map's credible region is the calibrated region itself: the same area to within a pixel
        assert credible_area_deg2(m, dens, p) == pytest.approx(region, abs=hp.nside2pixarea(512, degrees=True))
    if stretch == 1.0:  # with Wilks' own levels the calibrated map is the Gaussian density itself
        plain = probability_density(m, None, None)
        near = 2.0 * (m.llh - m.llh_min) < 5.99  # the 95% region
        assert np.allclose(dens[near], plain[near], rtol=0.25)


def test_uncalibrated_map_is_far_more_confident_than_a_calibrated_one(gaussian_map) -> None:  # type: ignore[no-untyped-def]
    _, m = gaussian_map
    wide = probability_density(m, None, wilks_calibration(stretch=4.0).for_event(100.0))
    plain = probability_density(m, None, None)
    assert credible_area_deg2(m, wide, 0.9) > 3.0 * credible_area_deg2(m, plain, 0.9)


# -- pixel_limited, and the products of a calibrated scan -----------------------------------------
def test_pixel_limited_flags_a_region_the_scan_did_not_resolve() -> None:
    ra, dec = snap_to_pixel(100.0, 10.0, 512)
    g = Gaussian(ra, dec, sx=0.05, isotropic=True)  # a region far smaller than an nside-8 pixel
    coarse = build_multires(scan_from_arrays(gaussian_scan(g, nsides=(8,), radii_deg=(180.0,))))
    assert is_pixel_limited(coarse, 4.605)
    g2 = Gaussian(ra, dec, sx=0.4, isotropic=True)  # resolved at nside 512 (0.013 deg2 pixels)
    fine = build_multires(scan_from_arrays(gaussian_scan(g2)))
    assert not is_pixel_limited(fine, 4.605)
    assert is_pixel_limited(fine, 2000.0)  # reaches the nside-8 sky: not resolved at the finest nside


def result_of(arrays, provenance) -> ScanResult:  # type: ignore[no-untyped-def]
    maps = {}
    for nside, (idx, llh) in arrays.items():
        a = np.zeros(idx.size, dtype=RESULT_DTYPE)
        a["index"], a["llh"] = idx, llh
        maps[nside] = a
    meta = EventMeta(1, 2, "GOLD", 60000.0, False)
    return ScanResult(meta, maps, {n: True for n in maps}, provenance)


def test_products_of_a_calibrated_scan_headline_the_calibrated_regions(tmp_path: Path) -> None:
    ra, dec = snap_to_pixel(200.0, 30.0, 512)
    g = Gaussian(ra, dec, sx=0.6, isotropic=True)
    cal = wilks_calibration(stretch=2.0).for_event(100.0)
    result = result_of(gaussian_scan(g, radii_deg=(180.0, 20.0, 8.0)),
                       {"reco": "pandel_mpe", "calibration": cal.to_dict()})
    out = make_products(result, tmp_path, plots=False)
    s = json.loads(out["summary"].read_text())
    regions = {r["name"]: r for r in s["regions"]}
    assert s["headline_regions"]["50"] == "calibrated_50" and s["headline_regions"]["90"] == "calibrated_90"
    for name, c in (("calibrated_50", 0.5), ("calibrated_90", 0.9)):
        r = regions[name]
        assert set(r) >= {"name", "level", "containment", "area_deg2", "ra_err_deg", "dec_err_deg", "pixel_limited"}
        assert r["level"] == pytest.approx(2.0 * -2.0 * math.log1p(-c), rel=1e-3)
        assert r["area_deg2"] == pytest.approx(math.pi * 0.36 * r["level"], rel=0.05)
        assert r["pixel_limited"] is False
    assert {"wilks_50", "wilks_90", "icecube_50", "icecube_90"} <= set(regions)  # kept, labelled
    assert s["calibration"]["version"] == "test"
    with fits.open(out["moc_fits"]) as hdul:
        h = hdul[1].header
        uniq, dens = hdul[1].data["UNIQ"], hdul[1].data["PROBDENSITY"]
    assert h["PROBMETH"] == "CALIBRATED"
    assert h["CONTOUR_AREA_90"] == pytest.approx(regions["calibrated_90"]["area_deg2"], rel=1e-3)
    assert h["LEVEL_CALIBRATED_90"] == pytest.approx(regions["calibrated_90"]["level"], rel=1e-3)
    order = np.log2(uniq // 4).astype(int) // 2
    area = 4 * np.pi / (12 * 4.0**order)
    k = np.argsort(-dens)
    for name, p in (("calibrated_50", 0.5), ("calibrated_90", 0.9)):
        n = int(np.searchsorted(np.cumsum((dens * area)[k]), p))
        moc_area = float(np.sum(area[k][: n + 1])) * SR_TO_DEG2
        assert moc_area == pytest.approx(regions[name]["area_deg2"], rel=0.2)  # the issue's +-20%
    assert hp.nside2npix(8) > 0


def test_products_without_a_calibration_keep_icecube_headline_and_say_so(tmp_path: Path) -> None:
    ra, dec = snap_to_pixel(10.0, -40.0, 512)
    result = result_of(gaussian_scan(Gaussian(ra, dec, sx=0.3, isotropic=True)), {"reco": "dummy"})
    out = make_products(result, tmp_path, plots=False)
    s = json.loads(out["summary"].read_text())
    assert s["headline_regions"]["90"] == "icecube_90" and s["calibration"] is None
    assert not any(r["name"].startswith("calibrated") for r in s["regions"])
    with fits.open(out["moc_fits"]) as hdul:
        assert hdul[1].header["PROBMETH"] == "EXP_DLLH"


def test_event_calibration_round_trips() -> None:
    e = wilks_calibration(exponent=0.5).for_event(400.0)
    back = EventCalibration.from_dict(json.loads(json.dumps(e.to_dict())))
    assert back.level_for(0.9) == pytest.approx(e.level_for(0.9), rel=1e-4)
    with pytest.raises(ConfigError, match="malformed"):
        EventCalibration.from_dict({"containment": [0.5]})


def test_contour_steps_follow_the_events_calibrated_90_level(tmp_path: Path) -> None:
    """A contour progression refines along this event's calibrated 90% level (and its scan id says
    which level), unless a level is given or no calibration applies."""
    from skymap_scanner.contour import DEFAULT_CONTOUR_LEVEL
    from skymap_scanner.events import load_event
    from skymap_scanner.scan import ScanSpec

    event = load_event(Path(__file__).parent / "data" / "events" / "run00136662-evt000035405932-BRONZE.pkl")
    cal = wilks_calibration(stretch=3.0, exponent=0.5)
    cal.reco_options.clear()
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(cal.to_dict()))
    calibrated = ScanSpec(event, "pandel_mpe", {}, "8:0 64:c", calibration_source=str(path))
    assert calibrated.calibration is not None
    level = calibrated.contour_settings()[0]
    assert level == pytest.approx(calibrated.calibration.level_for(0.9), abs=1e-3)
    assert level != pytest.approx(DEFAULT_CONTOUR_LEVEL)
    plain = ScanSpec(event, "pandel_mpe", {}, "8:0 64:c", calibration_source="none")
    assert plain.contour_settings()[0] == DEFAULT_CONTOUR_LEVEL and plain.scan_id != calibrated.scan_id
    given = ScanSpec(event, "pandel_mpe", {}, "8:0 64:c", calibration_source=str(path), contour_level=7.5)
    assert given.contour_settings()[0] == 7.5
    # a classic progression's id does not depend on the calibration
    assert (ScanSpec(event, "pandel_mpe", {}, "8:0 64:12", calibration_source=str(path)).scan_id
            == ScanSpec(event, "pandel_mpe", {}, "8:0 64:12", calibration_source="none").scan_id)


@pytest.mark.parametrize("sx", [0.3, 1.5])
def test_coarse_map_credible_regions_are_the_calibrated_regions(sx: float) -> None:
    """On a coarse (pixel-limited) scan, where the bands' densities would rise outwards, the 50% and 90%
    credible regions of the calibrated map are still exactly the calibrated regions."""
    ra, dec = snap_to_pixel(120.0, 25.0, 64)
    g = Gaussian(ra, dec, sx=sx, isotropic=True)
    m = build_multires(scan_from_arrays(gaussian_scan(g, nsides=(8, 64), radii_deg=(180.0, 10.0))))
    cal = wilks_calibration(stretch=3.0).for_event(100.0)
    dens = probability_density(m, None, cal)
    d2 = 2.0 * (m.llh - m.llh_min)
    for p in (0.5, 0.9):
        inside = d2 <= cal.level_for(p)
        assert float(np.sum(dens[inside] * m.area_sr[inside])) == pytest.approx(p, abs=1e-9)
        assert dens[inside].min() > dens[np.isfinite(d2) & ~inside].max()  # every leaf inside is denser
        assert credible_area_deg2(m, dens, p) == pytest.approx(region_area_deg2(m, cal.level_for(p)), rel=1e-9)

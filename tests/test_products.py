"""Sky-map products on scans with a known analytic llh: best fit, areas, errors, multi-res map, FITS."""

from __future__ import annotations

import math

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import Gaussian, gaussian_scan, snap_to_pixel

from skymap_scanner.errors import SkyScanError
from skymap_scanner.products import LEVEL_SETS, best_fit, build_multires, make_region, scan_from_arrays
from skymap_scanner.products import fits as pfits
from skymap_scanner.products.llh_maps import mirror_dec
from skymap_scanner.products.multires import SR_TO_DEG2
from skymap_scanner.products.regions import LEVEL_FAMILIES, region_area_deg2, wilks_level
from skymap_scanner.results import EventMeta

WILKS_90 = LEVEL_FAMILIES["wilks"][1]


def analytic_extent(g: Gaussian, level: float) -> tuple[tuple[float, float], tuple[float, float], float]:
    """((RA-, RA+), (Dec-, Dec+), area) deg of the split-Gaussian region, from its parametrised contour."""
    t = np.linspace(0.0, 2.0 * np.pi, 400_001)
    x = g.sx * math.sqrt(level) * np.cos(t)
    y = np.where(np.sin(t) > 0, g.sy_plus, g.sy_minus) * math.sqrt(level) * np.sin(t)
    dra = x / np.cos(np.radians(g.dec0 + y))  # x = dRA * cos(dec) on the contour
    # dx dy = cos(dec) dRA dDec is the solid angle element, so the area is that of the flat half-ellipses.
    area = math.pi * g.sx * level * (g.sy_plus + g.sy_minus) / 2.0
    return (-dra.min(), dra.max()), (-y.min(), y.max()), area


CASES = {
    "equator-ish": dict(ra=123.4, dec=10.0),
    "near RA=0": dict(ra=0.05, dec=20.0),
    "near RA=360, asymmetric": dict(ra=359.9, dec=-45.0, sx=0.8, sy_plus=1.2, sy_minus=0.6),
    "asymmetric in Dec": dict(ra=200.0, dec=-30.0, sy_plus=0.7, sy_minus=1.5),
    "near north pole": dict(ra=30.0, dec=86.0),
    "near south pole": dict(ra=300.0, dec=-85.5, sx=0.7),
}


def make_case(ra: float, dec: float, **kw: float) -> tuple[Gaussian, object]:
    ra0, dec0 = snap_to_pixel(ra, dec, 512)  # the true minimum is a pixel centre of the finest nside
    g = Gaussian(ra0, dec0, **kw)  # type: ignore[arg-type]
    return g, scan_from_arrays(gaussian_scan(g))


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_best_fit_is_the_true_minimum(case: str) -> None:
    g, scan = make_case(**CASES[case])  # type: ignore[arg-type]
    fit = best_fit(scan)  # type: ignore[arg-type]
    assert fit.nside == 512
    assert fit.ra_deg == pytest.approx(g.ra0, abs=1e-9)
    assert fit.dec_deg == pytest.approx(g.dec0, abs=1e-9)
    assert fit.llh == pytest.approx(g.llh0, abs=1e-9)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("level_set", LEVEL_FAMILIES["wilks"], ids=lambda ls: ls.name)
def test_area_and_asymmetric_errors_match_the_analytic_region(case: str, level_set: object) -> None:
    g, scan = make_case(**CASES[case])  # type: ignore[arg-type]
    m = build_multires(scan)  # type: ignore[arg-type]
    region = make_region(m, level_set, best_fit(scan))  # type: ignore[arg-type]
    ra_err, dec_err, area = analytic_extent(g, level_set.level)  # type: ignore[attr-defined]
    assert region.area_deg2 == pytest.approx(area, rel=0.03)
    assert not region.contains_pole
    # Errors come from interpolated level crossings: far better than a pixel (0.11 deg at nside 512).
    assert region.dec_err_deg == pytest.approx(dec_err, rel=0.005, abs=0.005)
    assert region.ra_err_deg == pytest.approx(ra_err, rel=0.005, abs=0.005 / math.cos(math.radians(g.dec0)))


def test_wilks_90_area_is_pi_sigma2_4605_for_an_isotropic_gaussian() -> None:
    for ra, dec, sigma in ((10.0, 5.0, 1.0), (0.02, -60.0, 1.5), (250.0, 84.0, 0.8)):
        ra0, dec0 = snap_to_pixel(ra, dec, 512)
        g = Gaussian(ra0, dec0, sx=sigma, isotropic=True)
        scan = scan_from_arrays(gaussian_scan(g, radii_deg=(180.0, 20.0, 4.0 * sigma)))
        area = region_area_deg2(build_multires(scan), WILKS_90.level)
        assert WILKS_90.level == pytest.approx(4.605, abs=1e-3)
        assert area == pytest.approx(math.pi * sigma**2 * 4.605, rel=0.03)


def test_region_containing_the_pole_has_unconstrained_ra() -> None:
    ra0, dec0 = snap_to_pixel(75.0, 89.0, 512)
    g = Gaussian(ra0, dec0, sx=1.0, isotropic=True)  # 90% radius 2.15 deg > 1 deg to the pole
    scan = scan_from_arrays(gaussian_scan(g))
    m = build_multires(scan)
    fit = best_fit(scan)
    r90 = make_region(m, WILKS_90, fit)
    assert r90.contains_pole
    assert r90.ra_err_deg == (180.0, 180.0)
    assert r90.dec_err_deg[1] == pytest.approx(90.0 - dec0)
    assert r90.dec_err_deg[0] == pytest.approx(math.sqrt(WILKS_90.level), rel=0.005)
    r50 = make_region(m, LEVEL_FAMILIES["wilks"][0], fit)  # radius 1.18 deg: still contains the pole
    assert r50.contains_pole
    # a tighter map does not contain it
    tight = scan_from_arrays(gaussian_scan(Gaussian(ra0, dec0, sx=0.3, isotropic=True)))
    assert not make_region(build_multires(tight), WILKS_90, best_fit(tight)).contains_pole


def test_wilks_levels_are_chi2_quantiles_for_two_dof() -> None:
    from scipy.stats import chi2

    for ls in LEVEL_FAMILIES["wilks"]:
        assert wilks_level(ls.containment) == pytest.approx(chi2.ppf(ls.containment, 2), rel=1e-12)
    assert [ls.name for ls in LEVEL_SETS] == ["wilks_50", "wilks_90", "icecube_50", "icecube_90"]
    assert [ls.level for ls in LEVEL_FAMILIES["icecube"]] == [22.2, 64.2]


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    coarse_frac=st.floats(0.3, 1.0),
    mid=st.lists(st.integers(0, hp.nside2npix(4) - 1), max_size=30),
    fine=st.lists(st.integers(0, hp.nside2npix(16) - 1), max_size=80),
    seed=st.integers(0, 2**32 - 1),
)
def test_multires_map_takes_the_finest_scanned_value_everywhere(
    coarse_frac: float, mid: list[int], fine: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    npix1 = hp.nside2npix(1)
    coarse = np.flatnonzero(rng.random(npix1) < coarse_frac)
    if coarse.size == 0:
        coarse = np.array([0])
    arrays = {
        1: (coarse, rng.normal(size=coarse.size)),
        4: (np.unique(mid).astype(np.int64), rng.normal(size=len(set(mid)))),
        16: (np.unique(fine).astype(np.int64), rng.normal(size=len(set(fine)))),
    }
    m = build_multires(scan_from_arrays(arrays))
    assert m.area_sr.sum() == pytest.approx(4 * math.pi)  # the leaves tile the sky exactly once
    assert np.all(np.diff(m.start) > 0)
    # Independent reference: at random directions, the finest nside whose pixel there was scanned.
    theta = np.arccos(rng.uniform(-1, 1, 3000))
    phi = rng.uniform(0, 2 * np.pi, 3000)
    expect = np.full(theta.size, np.nan)
    for nside in (1, 4, 16):
        idx, llh = arrays[nside]
        lookup = dict(zip(idx.tolist(), llh.tolist(), strict=True))
        pix = hp.ang2pix(nside, theta, phi)
        vals = np.array([lookup.get(int(p), np.nan) for p in pix])
        expect = np.where(np.isnan(vals), expect, vals)
    np.testing.assert_array_equal(m.sample(theta, phi), expect)


def test_mirror_dec_flips_declination_and_is_an_involution() -> None:
    for nside in (8, 64, 512):
        idx = np.arange(0, hp.nside2npix(nside), 97, dtype=np.int64)
        mirrored = mirror_dec(nside, idx)
        t0, p0 = hp.pix2ang(nside, idx)
        t1, p1 = hp.pix2ang(nside, mirrored)
        np.testing.assert_allclose(t1, np.pi - t0, atol=1e-12)
        np.testing.assert_allclose(p1, p0, atol=1e-12)
        np.testing.assert_array_equal(mirror_dec(nside, mirrored), idx)


def test_legacy_dec_sign_mirrors_the_best_fit() -> None:
    g, _ = make_case(ra=40.0, dec=-20.0)
    arrays = gaussian_scan(g)
    normal = best_fit(scan_from_arrays(arrays))
    legacy = best_fit(scan_from_arrays(arrays, legacy_dec_sign=True))
    assert legacy.ra_deg == pytest.approx(normal.ra_deg)
    assert legacy.dec_deg == pytest.approx(-normal.dec_deg)


def test_bad_scan_arrays_are_one_line_errors() -> None:
    with pytest.raises(SkyScanError, match="power of two"):
        scan_from_arrays({12: (np.array([0]), np.array([1.0]))})
    with pytest.raises(SkyScanError, match="outside"):
        scan_from_arrays({8: (np.array([768]), np.array([1.0]))})
    with pytest.raises(SkyScanError, match="more than once"):
        scan_from_arrays({8: (np.array([3, 3]), np.array([1.0, 2.0]))})
    with pytest.raises(SkyScanError, match="no pixel with a finite llh"):
        scan_from_arrays({8: (np.array([3]), np.array([np.nan]))})


def test_unscanned_sky_has_zero_probability_and_nan_llh() -> None:
    arrays = {8: (np.arange(100, dtype=np.int64), np.linspace(5.0, 10.0, 100))}
    m = build_multires(scan_from_arrays(arrays))
    p = pfits.probability_density(m)
    assert np.all(p[np.isnan(m.llh)] == 0.0)
    assert np.sum(p * m.area_sr) == pytest.approx(1.0)


def _moc_case() -> tuple[object, object, object]:
    g, scan = make_case(ra=0.1, dec=-5.0, sx=1.3)
    m = build_multires(scan)  # type: ignore[arg-type]
    fit = best_fit(scan)  # type: ignore[arg-type]
    meta = pfits.Meta(EventMeta(136662, 35405932, "BRONZE", 59723.3205114, True), fit, "dummy", (8, 64, 512))
    return m, fit, meta


def test_moc_fits_round_trips(tmp_path: object) -> None:
    from pathlib import Path

    m, fit, meta = _moc_case()
    path = pfits.write_hdul(pfits.moc_hdul(m, meta), Path(str(tmp_path)) / "s.multiorder.fits")  # type: ignore[arg-type]
    with fits.open(path) as hdul:
        hdul.verify("exception")
        h = hdul[1].header
        tab = hdul[1].data
        assert (h["PIXTYPE"], h["ORDERING"], h["COORDSYS"], h["INDXSCHM"]) == ("HEALPIX", "NUNIQ", "C", "EXPLICIT")
        assert h["MOCORDER"] == 9
        assert h["OBJECT"] == "IceCube-136662-35405932"
        assert h["DATE-OBS"].startswith("2022-05-24T07:41")
        assert h["RA"] == pytest.approx(fit.ra_deg) and h["DEC"] == pytest.approx(fit.dec_deg)  # type: ignore[attr-defined]
        assert h["TUNIT2"] == "sr-1"
        uniq = np.asarray(tab["UNIQ"])
        prob = np.asarray(tab["PROBDENSITY"])
    assert np.all(np.diff(uniq) > 0)
    order = (np.floor(np.log2(uniq / 4)) // 2).astype(np.int64)
    area = 4 * np.pi / (12 * 4.0**order)
    assert np.sum(prob * area) == pytest.approx(1.0, abs=1e-12)
    # same probability per pixel as the in-memory map, and P ~ exp(-(llh - llh_min))
    srt = np.argsort(m.uniq)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(uniq, m.uniq[srt])  # type: ignore[attr-defined]
    expect = np.exp(-(m.llh[srt] - fit.llh))  # type: ignore[attr-defined]
    np.testing.assert_allclose(prob / prob.max(), expect / expect.max(), rtol=1e-12)


def test_moc_fits_is_read_by_ligo_skymap(tmp_path: object) -> None:
    pytest.importorskip("ligo.skymap.io", reason="ligo.skymap is not installed (optional test extra)")
    from pathlib import Path

    from ligo.skymap.io import read_sky_map

    m, fit, meta = _moc_case()
    path = pfits.write_hdul(pfits.moc_hdul(m, meta), Path(str(tmp_path)) / "s.multiorder.fits")  # type: ignore[arg-type]
    table = read_sky_map(str(path), moc=True)
    assert set(table.colnames) >= {"UNIQ", "PROBDENSITY"}
    assert table.meta["objid"] == "IceCube-136662-35405932"
    prob, _ = read_sky_map(str(path), nest=True)  # rasterised to MOCORDER, probability per pixel
    assert prob.size == hp.nside2npix(512)
    assert prob.sum() == pytest.approx(1.0, abs=1e-9)
    best = hp.ang2pix(512, math.radians(90 - fit.dec_deg), math.radians(fit.ra_deg), nest=True)  # type: ignore[attr-defined]
    assert int(np.argmax(prob)) == best


def test_llh_fits_round_trips_with_healpy(tmp_path: object) -> None:
    from pathlib import Path

    m, fit, meta = _moc_case()
    path = pfits.write_hdul(pfits.llh_hdul(m, meta), Path(str(tmp_path)) / "llh.fits")  # type: ignore[arg-type]
    llh = hp.read_map(str(path), dtype=np.float64)  # returned in RING order
    assert llh.size == hp.nside2npix(512)
    assert llh[fit.index] == pytest.approx(fit.llh)  # type: ignore[attr-defined]
    assert np.nanmin(llh) == pytest.approx(fit.llh)  # type: ignore[attr-defined]
    # a direction only scanned at nside 8 carries that nside-8 value
    far_theta, far_phi = math.radians(90 - 60.0), math.radians(180.0)
    assert llh[hp.ang2pix(512, far_theta, far_phi)] == pytest.approx(float(m.sample(far_theta, far_phi)))  # type: ignore[attr-defined]
    sr = 4 * math.pi / llh.size
    assert llh.size * sr * SR_TO_DEG2 == pytest.approx(41252.96, rel=1e-6)

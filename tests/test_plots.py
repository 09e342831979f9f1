"""The plots, read as a person would: baseline images (pytest-mpl, so a blank or broken plot fails),
and what is drawn: contour shapes against an analytic Gaussian, online-fit markers, the INCOMPLETE
banner and never-scanned sky."""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from synthetic import Gaussian, gaussian_scan, snap_to_pixel

from skymap_scanner.products import LEVEL_SETS, best_fit, build_multires, make_region, plots, scan_from_arrays
from skymap_scanner.products.regions import LEVEL_FAMILIES
from skymap_scanner.results import EventMeta

EVENT = EventMeta(138632, 31747601, "GOLD", 60280.714168, True)
ONLINE = {"SplineMPE": (150.9, 11.7), "MPEFit": (149.6, 12.4)}
TOL = 5  # RMS (0-255) a baseline may differ by: font hinting, not content


def _case(partial: bool = False) -> tuple[object, ...]:
    ra, dec = snap_to_pixel(150.3, 12.0, 512)
    g = Gaussian(ra, dec, sx=0.6, sy_plus=0.4, sy_minus=0.7)
    arrays = gaussian_scan(g, radii_deg=(180.0, 15.0, 8.0))
    if partial:  # as after Ctrl-C: a third of nside 8 and part of nside 512 missing
        idx, llh = arrays[8]
        arrays[8] = (idx[: idx.size * 2 // 3], llh[: idx.size * 2 // 3])
        idx, llh = arrays[512]
        arrays[512] = (idx[idx.size // 3:], llh[idx.size // 3:])
    scan = scan_from_arrays(arrays, EVENT, complete=not partial)
    m = build_multires(scan)
    fit = best_fit(scan)
    regions = [make_region(m, ls, fit) for ls in LEVEL_SETS]
    decor = plots.Decor(EVENT.label(), "2023-12-02 17:08:24.09", "reco dummy, nsides 8/64/512", ONLINE,
                        "INCOMPLETE - 67% of nside-8 pixels" if partial else None)
    return g, scan, m, fit, regions, decor


def _contours(fig: Figure, level: float) -> list[np.ndarray]:
    ax = fig.axes[0]
    (cs,) = [c for c in ax.collections if isinstance(c, ContourSet) and not c.filled and list(c.levels) == [level]]
    return [poly for path in cs.get_paths() for poly in path.to_polygons()]


@pytest.mark.mpl_image_compare(tolerance=TOL, style="default", savefig_kwargs={"dpi": 60})
def test_zoom_baseline() -> Figure:
    g, scan, m, fit, regions, decor = _case()
    return plots.zoom_figure(scan, m, fit, LEVEL_SETS, regions, decor, n_grid=200)  # type: ignore[arg-type]


@pytest.mark.mpl_image_compare(tolerance=TOL, style="default", savefig_kwargs={"dpi": 60})
def test_fullsky_baseline() -> Figure:
    g, scan, m, fit, regions, decor = _case()
    return plots.fullsky_figure(scan, m, fit, LEVEL_SETS, regions, decor, n_lon=360)  # type: ignore[arg-type]


@pytest.mark.mpl_image_compare(tolerance=TOL, style="default", savefig_kwargs={"dpi": 60})
def test_partial_zoom_baseline() -> Figure:
    g, scan, m, fit, regions, decor = _case(partial=True)
    return plots.zoom_figure(scan, m, fit, LEVEL_SETS, regions, decor, n_grid=200)  # type: ignore[arg-type]


def test_zoom_contours_are_one_smooth_ring_with_the_analytic_area() -> None:
    g, scan, m, fit, regions, decor = _case()
    fig = plots.zoom_figure(scan, m, fit, LEVEL_SETS, regions, decor, n_grid=300)  # type: ignore[arg-type]
    try:
        for ls in LEVEL_SETS:
            polys = _contours(fig, ls.level)
            assert len(polys) == 1, f"{ls.name}: {len(polys)} closed contours (islands or breaks)"
            ra, dec = polys[0][:, 0], polys[0][:, 1]
            x = (ra - g.ra0) * np.cos(np.radians(dec))
            area = 0.5 * abs(np.dot(x, np.roll(dec, 1)) - np.dot(dec, np.roll(x, 1)))
            expect = math.pi * g.sx * ls.level * (g.sy_plus + g.sy_minus) / 2.0
            assert area == pytest.approx(expect, rel=0.03), ls.name
            # no staircase: consecutive vertices turn smoothly (a pixel staircase turns by 90 deg)
            seg = np.diff(np.column_stack([x, dec]), axis=0)
            seg = seg[np.hypot(*seg.T) > 0]
            turn = np.degrees(np.abs(np.angle(np.exp(1j * np.diff(np.arctan2(seg[:, 1], seg[:, 0]))))))
            assert np.percentile(turn, 99) < 45.0, ls.name
        labels = [t.get_text() for t in fig.legends[0].get_texts()]
        assert any(t.startswith("SplineMPE (online): RA 150.90°") for t in labels)
        assert any(t.startswith("MPEFit (online)") for t in labels)
        assert not any("never scanned" in t for t in labels)
        assert not any("INCOMPLETE" in t.get_text() for t in fig.texts)
    finally:
        plots.save_figure(fig)


def test_partial_result_has_a_banner_and_unscanned_sky() -> None:
    g, scan, m, fit, regions, decor = _case(partial=True)
    for make in (plots.zoom_figure, plots.fullsky_figure):
        fig = make(scan, m, fit, LEVEL_FAMILIES["wilks"], regions, decor)  # type: ignore[arg-type,operator]
        try:
            assert any(t.get_text() == "INCOMPLETE - 67% of nside-8 pixels" for t in fig.texts)
            legend = fig.legends[0] if fig.legends else fig.axes[0].get_legend()
            # the zoom around the best fit is all scanned; the full sky lacks a third of nside 8
            assert ("never scanned" in [t.get_text() for t in legend.get_texts()]) == (make is plots.fullsky_figure)
        finally:
            plots.save_figure(fig)


def test_small_islands_are_not_drawn_but_the_best_fit_patch_is() -> None:
    d2 = np.full((50, 50), 10.0)
    d2[20:30, 20:30] = 0.0  # the region around the best fit
    d2[5, 5] = 0.0  # a one-cell island
    d2[40:46, 40:46] = 0.0  # a real second patch, 36 cells
    out = plots.drop_islands(d2, 1.0, keep=(25, 25), min_cells=4)
    assert out[5, 5] > 1.0 and (out[20:30, 20:30] <= 1.0).all() and (out[40:46, 40:46] <= 1.0).all()
    tiny_best = plots.drop_islands(d2, 1.0, keep=(5, 5), min_cells=400)
    assert tiny_best[5, 5] <= 1.0  # the patch holding the best fit always stays

"""Plots of a scan (matplotlib, Agg): a full-sky Mollweide map and a zoom around the best fit.

Both show 2*Delta-llh with the contours of the selected level sets, the best fit and the event's
online fits (SplineMPE, MPEFit, ... when the result records them). RA increases to the left, as on
the sky. What a person should read at a glance:

- **No staircases.** The contours are drawn on the llh interpolated between the centres of the
  finest scanned pixels (a C1 Clough-Tocher interpolation on their triangulation), not on the
  pixel tiles; tiny closed contours away from the best fit (single-pixel islands of noise, smaller
  than :data:`ISLAND_PIXELS` finest pixels) are not drawn (the areas in summary.json count them).
- **Never-scanned sky is grey and hatched**, not coloured as if its llh were known; a partial
  result carries an ``INCOMPLETE`` banner.
- **The full-sky map shows the region** even when it is smaller than a line width: an inset with
  the zoom and a ring around the best fit, labelled with the 90% area.

Figures are returned by the pure builders; :func:`save_figure` does the I/O.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import healpy as hp  # noqa: E402
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.patheffects as patheffects  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from skymap_scanner.products.llh_maps import Scan  # noqa: E402
from skymap_scanner.products.multires import MultiResMap, nside_to_order  # noqa: E402
from skymap_scanner.products.regions import BestFit, LevelSet, Region, headline_for  # noqa: E402
from skymap_scanner.utils.atomic import atomic_write  # noqa: E402

# Line style per level-set name: (colour, linestyle).
_STYLE = {
    "calibrated_50": ("#08519c", "-"),
    "calibrated_90": ("#006d2c", "-"),
    "wilks_50": ("#ff7f00", "--"),
    "wilks_90": ("#c51b8a", "--"),
    "icecube_50": ("#e41a1c", "-"),
    "icecube_90": ("black", "-"),
}
# Marker per online fit: (marker, colour); others get a plus.
_ONLINE = {"SplineMPE": ("X", "#1b9e77"), "MPEFit": ("D", "#d95f02"), "SPEFit2": ("P", "#7570b3")}
# Light where the fit is good, so the contours (strong colours) stand out where they are drawn.
_CMAP = "Blues"
_UNSCANNED = "0.82"
#: Closed contours smaller than this many finest-scan pixels, not around the best fit, are not drawn.
ISLAND_PIXELS = 4


@dataclasses.dataclass(frozen=True)
class Decor:
    """What the plots say besides the map: title parts, online fits (name -> (RA, Dec) deg), the
    INCOMPLETE banner text (None: complete) and a pointed scan's disc (name, RA, Dec, radius deg)."""

    event_label: str = ""
    time_utc: str | None = None
    extra: str | None = None
    online_fits: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    incomplete: str | None = None
    pointing: Mapping[str, object] | None = None


# -- the field ----------------------------------------------------------------------------------


def scan_points(scan: Scan) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(RA deg, Dec deg, llh) of every scanned pixel centre not covered by a finer scanned pixel."""
    finer: list[tuple[int, npt.NDArray[np.int64]]] = []
    out_ra, out_dec, out_llh = [], [], []
    for m in reversed(scan.maps):  # finest first
        order = nside_to_order(m.nside)
        nest = np.asarray(hp.ring2nest(m.nside, m.index), dtype=np.int64)
        covered = np.zeros(nest.size, dtype=bool)
        for o, pix in finer:
            covered |= np.isin(nest, pix >> (2 * (o - order)))
        theta, phi = hp.pix2ang(m.nside, m.index[~covered])
        out_ra.append(np.degrees(phi))
        out_dec.append(90.0 - np.degrees(theta))
        out_llh.append(m.llh[~covered])
        finer.append((order, nest))
    return np.concatenate(out_ra), np.concatenate(out_dec), np.concatenate(out_llh)


def _wrap(dra: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(np.mod(np.asarray(dra, dtype=float) + 180.0, 360.0) - 180.0)


def interpolated_delta2(
    scan: Scan, m: MultiResMap, fit: BestFit, ra_deg: npt.NDArray[np.float64], dec_deg: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """2*Delta-llh on a grid of (RA, Dec) deg around the best fit, interpolated between the centres
    of the finest scanned pixels; NaN where the sky was never scanned."""
    from scipy.interpolate import CloughTocher2DInterpolator

    ra_p, dec_p, llh_p = scan_points(scan)
    x_p = _wrap(ra_p - fit.ra_deg)
    x_g = _wrap(ra_deg - fit.ra_deg)
    margin = 2.5 * np.degrees(hp.nside2resol(scan.maps[0].nside))
    near = ((x_p >= x_g.min() - margin / max(np.cos(np.radians(fit.dec_deg)), 0.05)) & (x_p <= x_g.max() + margin)
            & (dec_p >= dec_deg.min() - margin) & (dec_p <= dec_deg.max() + margin))
    if near.sum() < 4:
        near[:] = True
    field = CloughTocher2DInterpolator(np.column_stack([x_p[near], dec_p[near]]), 2.0 * (llh_p[near] - fit.llh))
    d2 = np.asarray(field(x_g, dec_deg), dtype=float)
    nearest = 2.0 * (m.sample(np.radians(90.0 - dec_deg), np.radians(np.mod(ra_deg, 360.0))) - fit.llh)
    d2 = np.where(np.isfinite(d2), np.maximum(d2, 0.0), nearest)  # outside the triangulation: the pixel's value
    return np.where(np.isfinite(nearest), d2, np.nan)


def drop_islands(d2: npt.NDArray[np.float64], level: float, keep: tuple[int, int], min_cells: float) -> npt.NDArray[np.float64]:
    """``d2`` with in-region patches smaller than ``min_cells`` grid cells raised above ``level``
    (the patch holding grid cell ``keep``, the best fit, always stays)."""
    from scipy import ndimage

    inside = np.nan_to_num(d2, nan=np.inf) <= level
    labels, n = ndimage.label(inside)
    if n <= 1:
        return d2
    sizes = np.bincount(labels.ravel())
    small = sizes < min_cells
    small[0] = False
    small[labels[keep]] = False
    drop = small[labels]
    return np.where(drop, np.maximum(d2, level * 1.001 + 1e-9), d2)


# -- pieces shared by the figures -------------------------------------------------------------------


def _label(ls: LevelSet, region: Region | None) -> str:
    fam = {"wilks": "Wilks", "icecube": "IceCube millipede", "calibrated": "Calibrated"}.get(
        ls.name.split("_")[0], ls.name)
    text = f"{fam} {ls.containment:.0%} (2ΔLLH ≤ {ls.level:.4g})"
    if region is not None:
        text += f": {region.area_deg2:.3g} deg²"
        if region.touches_unscanned:
            text += " (reaches unscanned sky)"
        elif region.pixel_limited:
            text += " (pixel-limited)"
    return text


def _title(d: Decor) -> str:
    line = d.event_label + (f" — {d.time_utc} UTC" if d.time_utc else "")
    return line + (f"\n{d.extra}" if d.extra else "")


def _best_marker(ax: Axes, x: float, y: float, fit: BestFit, **kw: object) -> Line2D:
    (h,) = ax.plot(
        [x], [y], marker="*", ms=kw.pop("ms", 12), color="white", mec="black", mew=0.9, ls="none", zorder=6,
        label=f"Best fit: RA {fit.ra_deg:.2f}°, Dec {fit.dec_deg:+.2f}°", **kw,  # type: ignore[arg-type]
    )
    return h


def _online_markers(ax: Axes, d: Decor, to_xy: object, ms: float = 9) -> list[Line2D]:
    out = []
    for name, (ra, dec) in sorted(d.online_fits.items()):
        marker, colour = _ONLINE.get(name, ("+", "#444444"))
        x, y = to_xy(ra, dec)  # type: ignore[operator]
        (h,) = ax.plot([x], [y], marker=marker, ms=ms, color=colour, mec="white", mew=0.8, ls="none", zorder=5,
                       label=f"{name} (online): RA {ra:.2f}°, Dec {dec:+.2f}°")
        out.append(h)
    return out


def _banner(fig: Figure, d: Decor) -> None:
    if d.incomplete:
        fig.text(0.5, 0.5, d.incomplete, ha="center", va="center", fontsize=26, color="#b00000", alpha=0.55,
                 rotation=18, weight="bold", zorder=20,
                 bbox={"boxstyle": "round", "fc": "white", "ec": "#b00000", "alpha": 0.6})


def _unscanned_handle(d2: npt.NDArray[np.float64]) -> list[Patch]:
    if not np.isnan(d2).any():
        return []
    return [Patch(fc=_UNSCANNED, ec="0.5", hatch="///", label="never scanned")]


def _cmap() -> mcolors.Colormap:
    cmap = plt.get_cmap(_CMAP).copy()
    cmap.set_bad(_UNSCANNED)
    return cmap


def _hatch_unscanned(ax: Axes, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], d2: npt.NDArray[np.float64]) -> None:
    if np.isnan(d2).any():
        ax.contourf(x, y, np.isnan(d2).astype(float), levels=[0.5, 1.5], colors="none", hatches=["///"], zorder=2)


# -- the figures --------------------------------------------------------------------------------


def fullsky_figure(
    scan: Scan,
    m: MultiResMap,
    fit: BestFit,
    levels: Sequence[LevelSet],
    regions: Sequence[Region] = (),
    decor: Decor | None = None,
    *,
    n_lon: int = 540,
) -> Figure:
    """Mollweide map of 2*Delta-llh (RA 180 deg at the centre, increasing to the left), with an
    inset zoom on the regions and a ring with the 90% area around the best fit."""
    d = decor or Decor()
    n_lat = n_lon // 2
    x = np.linspace(-np.pi, np.pi, n_lon + 1)
    y = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)
    xc, yc = 0.5 * (x[1:] + x[:-1]), 0.5 * (y[1:] + y[:-1])
    xx, yy = np.meshgrid(xc, yc)
    ra = np.mod(np.pi - xx, 2 * np.pi)
    d2 = 2.0 * (m.sample(np.pi / 2 - yy, ra) - fit.llh)

    fig = plt.figure(figsize=(12, 6.2))
    ax = fig.add_subplot(111, projection="mollweide")
    vmax = float(np.nanmax(d2)) if np.any(np.isfinite(d2)) else 1.0
    norm = mcolors.PowerNorm(gamma=0.35, vmin=0.0, vmax=max(vmax, 1.0))
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(d2), cmap=_cmap(), norm=norm, shading="flat", rasterized=True)
    by_name = {r.name: r for r in regions}
    handles: list[Line2D | Patch] = []
    for ls in levels:
        col, sty = _STYLE.get(ls.name, ("black", "-"))
        ax.contour(xx, yy, d2, levels=[ls.level], colors=[col], linestyles=[sty], linewidths=1.2)
        handles.append(Line2D([], [], color=col, ls=sty, lw=1.5, label=_label(ls, by_name.get(ls.name))))

    def to_xy(ra_deg: float, dec_deg: float) -> tuple[float, float]:
        bx = np.pi - np.radians(ra_deg)
        return float((bx + np.pi) % (2 * np.pi) - np.pi), float(np.radians(dec_deg))

    bx, by = to_xy(fit.ra_deg, fit.dec_deg)
    handles.insert(0, _best_marker(ax, bx, by, fit))
    handles[1:1] = _online_markers(ax, d, to_xy, ms=7)
    r90 = by_name.get(headline_for(by_name).r90)
    if r90 is not None:  # a ring the eye finds, however small the region is
        ax.plot([bx], [by], marker="o", ms=22, mfc="none", mec="#b00000", mew=1.5, ls="none", zorder=5)
        ax.annotate(f"90%: {r90.area_deg2:.3g} deg²", (bx, by), xytext=(16, -22), textcoords="offset points",
                    color="#b00000", fontsize=9, weight="bold",
                    path_effects=[patheffects.withStroke(linewidth=2.5, foreground="white")])
    handles += _unscanned_handle(d2)
    ax.grid(True, color="0.6", lw=0.5)
    ticks = np.radians(np.arange(-150, 151, 30))
    ax.set_xticks(ticks)
    labels = ax.set_xticklabels([f"{int(np.mod(180 - np.degrees(t), 360)):d}°" for t in ticks], fontsize=8)
    for lab in labels:  # readable on both dark and light parts of the map
        lab.set_color("white")
        lab.set_path_effects([patheffects.withStroke(linewidth=2, foreground="black")])
    ax.set_xlabel("Right ascension (J2000)")
    ax.set_ylabel("Declination (J2000)")
    cb = fig.colorbar(mesh, ax=ax, orientation="horizontal", pad=0.08, fraction=0.05, aspect=40)
    cb.set_label("2ΔLLH = 2 (llh − llh_min)  (power-law colour scale)")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.62, -0.32), ncol=2, fontsize=8, frameon=False)
    ax.set_title(_title(d), fontsize=11, pad=14)
    fig.subplots_adjust(left=0.05, right=0.73, top=0.88, bottom=0.24)
    inset = fig.add_axes((0.765, 0.36, 0.22, 0.46))
    _draw_zoom(inset, scan, m, fit, levels, regions, d, n_grid=160, small=True)
    inset.set_title("zoom on the regions", fontsize=7)
    _banner(fig, d)
    return fig


def zoom_window(
    fit: BestFit, regions: Sequence[Region], *, pad: float = 0.35, min_half_deg: float = 1.0
) -> tuple[float, float, float]:
    """(RA half-width, Dec low, Dec high) in deg covering the regions with a margin (on-sky >= 2*min_half)."""
    ra_half = max([r.ra_err_deg[0] for r in regions] + [r.ra_err_deg[1] for r in regions] + [0.0])
    dec_m = max([r.dec_err_deg[0] for r in regions] + [0.0])
    dec_p = max([r.dec_err_deg[1] for r in regions] + [0.0])
    cosd = max(np.cos(np.radians(fit.dec_deg)), 0.05)
    half_dec = max(dec_m, dec_p, min_half_deg) * (1.0 + pad)
    half_ra = min(max(ra_half * (1.0 + pad), min_half_deg / cosd), 180.0)
    # Keep the window between 3:2 and 2:3 on the sky so neither axis is squashed.
    half_dec = max(half_dec, 2.0 / 3.0 * half_ra * cosd)
    half_ra = min(max(half_ra, 2.0 / 3.0 * half_dec / cosd), 180.0)
    return half_ra, max(fit.dec_deg - half_dec, -90.0), min(fit.dec_deg + half_dec, 90.0)


def _draw_zoom(
    ax: Axes, scan: Scan, m: MultiResMap, fit: BestFit, levels: Sequence[LevelSet], regions: Sequence[Region],
    d: Decor, *, n_grid: int, small: bool = False,
) -> tuple[object, list[Line2D | Patch]]:
    shown = [r for r in regions if r.name in {ls.name for ls in levels}]
    half_ra, dec_lo, dec_hi = zoom_window(fit, shown)
    ra = np.linspace(fit.ra_deg - half_ra, fit.ra_deg + half_ra, n_grid)
    dec = np.linspace(dec_lo, dec_hi, n_grid)
    rr, dd = np.meshgrid(ra, dec)
    d2 = interpolated_delta2(scan, m, fit, rr, dd)
    top = max([ls.level for ls in levels] + [1.0])
    step_ra, step_dec = ra[1] - ra[0], dec[1] - dec[0]
    img = ax.imshow(
        np.ma.masked_invalid(d2), origin="lower", cmap=_cmap(), vmin=0.0, vmax=1.6 * top, interpolation="bilinear",
        extent=(ra[0] - step_ra / 2, ra[-1] + step_ra / 2, dec[0] - step_dec / 2, dec[-1] + step_dec / 2),
    )
    _hatch_unscanned(ax, rr, dd, d2)
    cell_deg2 = step_ra * np.cos(np.radians(fit.dec_deg)) * step_dec
    finest_deg2 = float(np.degrees(np.degrees(hp.nside2pixarea(scan.maps[-1].nside))))
    keep = (int(np.argmin(np.abs(dec - fit.dec_deg))), int(np.argmin(np.abs(ra - fit.ra_deg))))
    by_name = {r.name: r for r in regions}
    handles: list[Line2D | Patch] = [_best_marker(ax, fit.ra_deg, fit.dec_deg, fit, ms=9 if small else 13)]
    handles += _online_markers(ax, d, lambda a, b: (fit.ra_deg + _wrap(a - fit.ra_deg), b), ms=6 if small else 10)
    for ls in levels:
        col, sty = _STYLE.get(ls.name, ("black", "-"))
        clean = drop_islands(d2, ls.level, keep, ISLAND_PIXELS * finest_deg2 / cell_deg2)
        ax.contour(rr, dd, clean, levels=[ls.level], colors=[col], linestyles=[sty], linewidths=1.0 if small else 1.8,
                   zorder=5)
        handles.append(Line2D([], [], color=col, ls=sty, lw=2, label=_label(ls, by_name.get(ls.name))))
    handles += _unscanned_handle(d2)
    ax.set_xlim(ra[-1], ra[0])  # RA increases to the left
    ax.set_ylim(dec_lo, dec_hi)
    ax.set_aspect(1.0 / max(np.cos(np.radians(fit.dec_deg)), 0.05))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{np.mod(v, 360.0):.4g}°"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}°"))
    if small:
        ax.tick_params(labelsize=6, length=2, pad=1)
    else:
        ax.grid(True, color="0.45", alpha=0.6, lw=0.6, ls=":")
    return img, handles


def zoom_figure(
    scan: Scan,
    m: MultiResMap,
    fit: BestFit,
    levels: Sequence[LevelSet],
    regions: Sequence[Region] = (),
    decor: Decor | None = None,
    *,
    n_grid: int = 400,
) -> Figure:
    """Zoomed RA/Dec map around the best fit with contours, best fit, online fits and a legend with the areas."""
    d = decor or Decor()
    fig, ax = plt.subplots(figsize=(9.0, 7.8), layout="constrained")
    img, handles = _draw_zoom(ax, scan, m, fit, levels, regions, d, n_grid=n_grid)
    ax.set_xlabel("Right ascension (J2000) [deg]")
    ax.set_ylabel("Declination (J2000) [deg]")
    cb = fig.colorbar(img, ax=ax, extend="max")  # type: ignore[arg-type]
    cb.set_label("2ΔLLH = 2 (llh − llh_min)")
    for ls in levels:
        cb.ax.axhline(ls.level, color=_STYLE.get(ls.name, ("black", "-"))[0], lw=2)
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    ax.set_title(_title(d), fontsize=11)
    _banner(fig, d)
    return fig


def save_figure(fig: Figure, *paths: Path, dpi: int = 150) -> list[Path]:
    """Save atomically in each format given by the suffixes (png, pdf), then close the figure."""
    out = []
    try:
        for path in map(Path, paths):
            fmt = path.suffix.lstrip(".").lower()
            out.append(atomic_write(path, functools.partial(fig.savefig, format=fmt, dpi=dpi)))
    finally:
        plt.close(fig)
    return out

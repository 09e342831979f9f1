"""Plots of a scan (matplotlib, Agg): a full-sky Mollweide map and a zoom around the best fit.

Both show 2*Delta-llh with the contours of the selected level sets and the best fit. RA increases to
the left, as on the sky. Figures are returned by the pure builders; :func:`save_figure` does the I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.patheffects as patheffects  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from skymap_scanner.products.multires import MultiResMap  # noqa: E402
from skymap_scanner.products.regions import BestFit, LevelSet, Region  # noqa: E402
from skymap_scanner.utils.atomic import atomic_write  # noqa: E402

# Line style per level-set name: (colour, linestyle).
_STYLE = {
    "wilks_50": ("#ff7f00", "--"),
    "wilks_90": ("#c51b8a", "--"),
    "icecube_50": ("#e41a1c", "-"),
    "icecube_90": ("black", "-"),
}
# Light where the fit is good, so the contours (strong colours) stand out where they are drawn.
_CMAP = "Blues"


def _label(ls: LevelSet, region: Region | None) -> str:
    fam = "Wilks" if ls.name.startswith("wilks") else "IceCube"
    text = f"{fam} {ls.containment:.0%} (2ΔLLH ≤ {ls.level:.4g})"
    if region is not None:
        text += f": {region.area_deg2:.3g} deg²"
    return text


def _title(event_label: str, time_utc: str | None, extra: str | None) -> str:
    line = event_label + (f" — {time_utc} UTC" if time_utc else "")
    return line + (f"\n{extra}" if extra else "")


def _best_marker(ax: plt.Axes, x: float, y: float, fit: BestFit) -> Line2D:
    (h,) = ax.plot(
        [x], [y], marker="*", ms=10, color="white", mec="black", mew=0.8, ls="none", zorder=4,
        label=f"Best fit: RA {fit.ra_deg:.2f}°, Dec {fit.dec_deg:+.2f}°",
    )
    return h


def fullsky_figure(
    m: MultiResMap,
    fit: BestFit,
    levels: Sequence[LevelSet],
    regions: Sequence[Region] = (),
    *,
    event_label: str = "",
    time_utc: str | None = None,
    extra: str | None = None,
    n_lon: int = 540,
) -> Figure:
    """Mollweide map of 2*Delta-llh (RA 180 deg at the centre, increasing to the left)."""
    n_lat = n_lon // 2
    x = np.linspace(-np.pi, np.pi, n_lon + 1)
    y = np.linspace(-np.pi / 2, np.pi / 2, n_lat + 1)
    xc, yc = 0.5 * (x[1:] + x[:-1]), 0.5 * (y[1:] + y[:-1])
    xx, yy = np.meshgrid(xc, yc)
    ra = np.mod(np.pi - xx, 2 * np.pi)
    d2 = 2.0 * (m.sample(np.pi / 2 - yy, ra) - fit.llh)

    fig = plt.figure(figsize=(10, 6.2))
    ax = fig.add_subplot(111, projection="mollweide")
    vmax = float(np.nanmax(d2)) if np.any(np.isfinite(d2)) else 1.0
    norm = mcolors.PowerNorm(gamma=0.35, vmin=0.0, vmax=max(vmax, 1.0))
    mesh = ax.pcolormesh(x, y, np.ma.masked_invalid(d2), cmap=_CMAP, norm=norm, shading="flat", rasterized=True)
    by_name = {r.name: r for r in regions}
    handles = []
    for ls in levels:
        col, sty = _STYLE.get(ls.name, ("black", "-"))
        ax.contour(xx, yy, d2, levels=[ls.level], colors=[col], linestyles=[sty], linewidths=1.2)
        handles.append(Line2D([], [], color=col, ls=sty, lw=1.5, label=_label(ls, by_name.get(ls.name))))
    bx = np.pi - np.radians(fit.ra_deg)
    bx = (bx + np.pi) % (2 * np.pi) - np.pi
    handles.insert(0, _best_marker(ax, bx, np.radians(fit.dec_deg), fit))
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
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, fontsize=8, frameon=False)
    ax.set_title(_title(event_label, time_utc, extra), fontsize=11, pad=14)
    fig.subplots_adjust(left=0.06, right=0.97, top=0.88, bottom=0.22)
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


def zoom_figure(
    m: MultiResMap,
    fit: BestFit,
    levels: Sequence[LevelSet],
    regions: Sequence[Region] = (),
    *,
    event_label: str = "",
    time_utc: str | None = None,
    extra: str | None = None,
    n_grid: int = 500,
) -> Figure:
    """Zoomed RA/Dec map around the best fit with contours, best fit and a legend with the areas."""
    shown = [r for r in regions if r.name in {ls.name for ls in levels}]
    half_ra, dec_lo, dec_hi = zoom_window(fit, shown)
    ra = np.linspace(fit.ra_deg - half_ra, fit.ra_deg + half_ra, n_grid)
    dec = np.linspace(dec_lo, dec_hi, n_grid)
    rr, dd = np.meshgrid(ra, dec)
    d2 = 2.0 * (m.sample(np.radians(90.0 - dd), np.radians(np.mod(rr, 360.0))) - fit.llh)
    top = max([ls.level for ls in levels] + [1.0])
    vmax = 1.6 * top

    fig, ax = plt.subplots(figsize=(9.0, 7.5), layout="constrained")
    step_ra, step_dec = ra[1] - ra[0], dec[1] - dec[0]
    img = ax.imshow(
        np.ma.masked_invalid(d2), origin="lower", cmap=_CMAP, vmin=0.0, vmax=vmax, interpolation="nearest",
        extent=(ra[0] - step_ra / 2, ra[-1] + step_ra / 2, dec[0] - step_dec / 2, dec[-1] + step_dec / 2),
    )
    by_name = {r.name: r for r in regions}
    handles: list[Line2D] = [_best_marker(ax, fit.ra_deg, fit.dec_deg, fit)]
    for ls in levels:
        col, sty = _STYLE.get(ls.name, ("black", "-"))
        ax.contour(rr, dd, d2, levels=[ls.level], colors=[col], linestyles=[sty], linewidths=1.8, zorder=5)
        handles.append(Line2D([], [], color=col, ls=sty, lw=2, label=_label(ls, by_name.get(ls.name))))
    ax.set_xlim(ra[-1], ra[0])  # RA increases to the left
    ax.set_ylim(dec_lo, dec_hi)
    ax.set_aspect(1.0 / max(np.cos(np.radians(fit.dec_deg)), 0.05))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{np.mod(v, 360.0):.4g}°"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4g}°"))
    ax.grid(True, color="0.45", alpha=0.6, lw=0.6, ls=":")
    ax.set_xlabel("Right ascension (J2000) [deg]")
    ax.set_ylabel("Declination (J2000) [deg]")
    cb = fig.colorbar(img, ax=ax, extend="max")
    cb.set_label("2ΔLLH = 2 (llh − llh_min)")
    for ls in levels:
        cb.ax.axhline(ls.level, color=_STYLE.get(ls.name, ("black", "-"))[0], lw=2)
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    ax.set_title(_title(event_label, time_utc, extra), fontsize=11)
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


"""Best fit, error regions on 2*Delta-llh, their areas and asymmetric RA/Dec errors (pure functions).

A region at ``level`` is every part of the sky where 2 * (llh - llh_min) <= level on the
multi-resolution map. Its area is the summed area of those leaves. Its RA/Dec extent is measured on
the region boundary: between each in-region pixel and each out-of-region neighbour (at the finest
order) the crossing of the level is interpolated linearly, so the errors are not quantised to pixel
centres. RA offsets are wrapped into (-180, 180] deg around the best fit (correct across RA = 0/360);
a region containing a celestial pole has an unconstrained RA, reported as 180 deg on both sides.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import healpy as hp
import numpy as np
import numpy.typing as npt

from skymap_scanner.calibration import EventCalibration
from skymap_scanner.products.llh_maps import Scan
from skymap_scanner.products.multires import SR_TO_DEG2, MultiResMap, children_at


@dataclasses.dataclass(frozen=True)
class LevelSet:
    """A named threshold on 2*Delta-llh with the containment it stands for."""

    name: str
    level: float
    containment: float


def wilks_level(containment: float) -> float:
    """2*Delta-llh threshold for 2 degrees of freedom (chi2 quantile = -2 ln(1 - p))."""
    return -2.0 * math.log1p(-containment)


#: The four level sets of the summary, in the order they are reported.
LEVEL_SETS: tuple[LevelSet, ...] = (
    LevelSet("wilks_50", wilks_level(0.5), 0.5),  # Wilks' theorem, 2 degrees of freedom
    LevelSet("wilks_90", wilks_level(0.9), 0.9),  # Wilks' theorem, 2 degrees of freedom
    LevelSet("icecube_50", 22.2, 0.5),  # IceCube realtime calibration (millipede track scans)
    LevelSet("icecube_90", 64.2, 0.9),  # IceCube realtime calibration (millipede track scans)
)
#: contour families a plot can draw; "calibrated" and "headline" depend on the scan (see plot_level_sets)
LEVEL_FAMILIES = {"wilks": LEVEL_SETS[:2], "icecube": LEVEL_SETS[2:], "both": LEVEL_SETS}
PLOT_FAMILIES = ("headline", "calibrated", "wilks", "icecube", "both", "all")


def plot_level_sets(family: str, level_sets: tuple[LevelSet, ...]) -> tuple[LevelSet, ...]:
    """The level sets a plot draws for ``family`` among the scan's ``level_sets``."""
    names = [ls.name for ls in level_sets]
    if family == "all":
        return level_sets
    if family == "headline":
        h = headline_for(names)
        return tuple(ls for ls in level_sets if ls.name in (h.r50, h.r90))
    if family == "calibrated":
        return tuple(ls for ls in level_sets if ls.name.startswith("calibrated_"))
    return LEVEL_FAMILIES[family]


@dataclasses.dataclass(frozen=True)
class Headline:
    """Which level sets are THE 50% and 90% regions of every product a person reads first
    (FITS cards, gcn_notice.json, circular.txt, the final log line), and what to say about them."""

    r50: str
    r90: str
    description: str
    systematic_included: bool


#: The headline regions of a scan whose reco has a calibration (:mod:`skymap_scanner.calibration`):
#: per-event 2*Delta-llh levels that contained the true direction in 50% / 90% of realistic
#: simulated events (mismatched ice, stochastic losses, noise, coincident muons).
CALIBRATED_HEADLINE = Headline(
    "calibrated_50",
    "calibrated_90",
    "2*Delta-llh <= this event's calibrated levels: on realistic simulated tracks (the simulator's ice "
    "and detector differ from the fit's) they contained the true direction in 50% and 90% of events",
    systematic_included=True,
)
#: The headline regions of a scan without a calibration (another reco, other reco options, an old
#: result): IceCube's realtime levels, which are not calibrated for this project's recos.
FALLBACK_HEADLINE = Headline(
    "icecube_50",
    "icecube_90",
    "2*Delta-llh <= 22.2 (50%) and 64.2 (90%): IceCube's realtime calibration for millipede scans, "
    "not calibrated for this reco (no calibration applies to this scan)",
    systematic_included=False,
)
#: what older callers knew as the headline (the regions of a scan without a calibration)
HEADLINE = FALLBACK_HEADLINE


def headline_for(names: Iterable[str]) -> Headline:
    """The one place that chooses the headline regions: the calibrated ones when the scan has them."""
    return CALIBRATED_HEADLINE if CALIBRATED_HEADLINE.r90 in set(names) else FALLBACK_HEADLINE


def calibrated_level_sets(calibration: EventCalibration | None) -> tuple[LevelSet, ...]:
    """``calibrated_50`` / ``calibrated_90`` at this event's levels (none without a calibration)."""
    if calibration is None:
        return ()
    return tuple(LevelSet(f"calibrated_{round(c * 100)}", calibration.level_for(c), c) for c in (0.5, 0.9))


def level_sets_for(calibration: EventCalibration | None) -> tuple[LevelSet, ...]:
    """Every level set of a scan's summary: the calibrated ones first (if any), then Wilks and IceCube."""
    return calibrated_level_sets(calibration) + LEVEL_SETS


#: A region with fewer leaves than this at the finest scanned nside is flagged ``pixel_limited``.
MIN_RESOLVED_LEAVES = 10

#: Limit on pixels examined for one region's boundary; above it a coarser order is used.
MAX_BOUNDARY_PIXELS = 1 << 21


@dataclasses.dataclass(frozen=True)
class BestFit:
    """Lowest-llh pixel over all nsides: J2000 RA/Dec in degrees."""

    ra_deg: float
    dec_deg: float
    llh: float
    nside: int
    index: int  # RING pixel number at ``nside``


@dataclasses.dataclass(frozen=True)
class Region:
    """One error region: area (deg2) and extents around the best fit (deg, [minus, plus], >= 0)."""

    name: str
    level: float
    containment: float
    area_deg2: float
    ra_err_deg: tuple[float, float]
    dec_err_deg: tuple[float, float]
    contains_pole: bool
    touches_unscanned: bool = False  # the region reaches sky that was never scanned: it may be larger
    #: the region is not resolved by the scan: part of it is coarser than the finest scanned nside, or
    #: it holds fewer than MIN_RESOLVED_LEAVES finest pixels (its area and errors are quantised)
    pixel_limited: bool = False


def headline_regions(regions: list[Region] | tuple[Region, ...]) -> tuple[Region, Region]:
    """The (50%, 90%) regions named by :func:`headline_for`."""
    by_name = {r.name: r for r in regions}
    h = headline_for(by_name)
    return by_name[h.r50], by_name[h.r90]


def theta_phi_to_radec_deg(
    theta: npt.ArrayLike, phi: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """HEALPix (theta, phi) rad -> (RA in [0, 360), Dec) deg."""
    ra = np.mod(np.degrees(phi), 360.0)
    dec = 90.0 - np.degrees(theta)
    return ra, dec


def best_fit(scan: Scan) -> BestFit:
    """The lowest llh over every nside (first such pixel, coarsest nside first, on ties)."""
    best: tuple[float, int, int] | None = None
    for m in scan.maps:
        if m.llh.size == 0:
            continue
        i = int(np.argmin(m.llh))
        if best is None or m.llh[i] < best[0]:
            best = (float(m.llh[i]), m.nside, int(m.index[i]))
    assert best is not None  # scan_from_arrays guarantees at least one pixel
    theta, phi = hp.pix2ang(best[1], best[2])
    ra, dec = theta_phi_to_radec_deg(theta, phi)
    return BestFit(float(ra), float(dec), best[0], best[1], best[2])


def delta2(m: MultiResMap, llh_min: float | None = None) -> npt.NDArray[np.float64]:
    """2 * (llh - llh_min) per leaf (NaN where never scanned)."""
    return 2.0 * (m.llh - (m.llh_min if llh_min is None else llh_min))


def region_area_deg2(m: MultiResMap, level: float, llh_min: float | None = None) -> float:
    """Area (deg2) of the leaves with 2*Delta-llh <= level."""
    inside = delta2(m, llh_min) <= level
    return float(np.sum(m.area_sr[inside]) * SR_TO_DEG2)


def _working_order(m: MultiResMap, inside: npt.NDArray[np.bool_]) -> int:
    """Finest order at which the region has at most MAX_BOUNDARY_PIXELS pixels."""
    orders = m.order[inside]
    for w in range(m.max_order, -1, -1):
        n = int(np.sum(4.0 ** np.maximum(w - orders, 0)))
        if n <= MAX_BOUNDARY_PIXELS:
            return w
    return 0


def _region_pixels(m: MultiResMap, inside: npt.NDArray[np.bool_], w: int) -> npt.NDArray[np.int64]:
    """NESTED pixels of order ``w`` covering the in-region leaves."""
    o, p = m.order[inside], m.ipix[inside]
    coarse = o <= w
    fine_parents = p[~coarse] >> (2 * (o[~coarse] - w))
    return np.unique(np.concatenate([children_at(o[coarse], p[coarse], w), fine_parents]))


def boundary_points(
    m: MultiResMap, level: float, llh_min: float | None = None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], bool]:
    """(theta, phi) rad of the interpolated crossings of 2*Delta-llh = level on the region boundary,
    and whether any in-region pixel borders never-scanned sky."""
    llh_min = m.llh_min if llh_min is None else llh_min
    d2_leaf = delta2(m, llh_min)
    inside = d2_leaf <= level
    w = _working_order(m, inside)
    nside = 1 << w
    pix = _region_pixels(m, inside, w)
    theta, phi = hp.pix2ang(nside, pix, nest=True)
    d_in = 2.0 * (m.sample(theta, phi) - llh_min)
    ok = d_in <= level
    pix, d_in = pix[ok], d_in[ok]
    if pix.size == 0:
        empty = np.empty(0)
        return empty, empty, False
    nb = hp.get_all_neighbours(nside, pix, nest=True)  # (8, n), -1 where a neighbour is missing
    src = np.broadcast_to(np.arange(pix.size), nb.shape)
    valid = nb >= 0
    nb, src = nb[valid], src[valid]
    nth, nph = hp.pix2ang(nside, nb, nest=True)
    d_out = 2.0 * (m.sample(nth, nph) - llh_min)
    touches = bool(np.isnan(d_out).any())
    cross = ~(d_out <= level)  # NaN (never scanned) counts as outside
    nb, src, d_out = nb[cross], src[cross], d_out[cross]
    d_src = d_in[src]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (level - d_src) / (d_out - d_src)
    t = np.where(np.isfinite(t), np.clip(t, 0.0, 1.0), 0.5)
    v_in = np.array(hp.pix2vec(nside, pix[src], nest=True))
    v_out = np.array(hp.pix2vec(nside, nb, nest=True))
    v = (1.0 - t) * v_in + t * v_out
    bt, bp = hp.vec2ang(v.T)
    return np.asarray(bt), np.asarray(bp), touches


def region_extent(
    m: MultiResMap, level: float, ra0_deg: float, dec0_deg: float, llh_min: float | None = None
) -> tuple[tuple[float, float], tuple[float, float], bool, bool]:
    """((RA-, RA+), (Dec-, Dec+), contains_pole, touches_unscanned) of the region around (ra0, dec0),
    extents in deg >= 0."""
    llh_min = m.llh_min if llh_min is None else llh_min
    if not np.any(delta2(m, llh_min) <= level):  # empty region (level below every leaf)
        return (0.0, 0.0), (0.0, 0.0), False, False
    theta, phi, touches = boundary_points(m, level, llh_min)
    ra, dec = theta_phi_to_radec_deg(theta, phi)
    pole_d2 = 2.0 * (m.sample(np.array([0.0, np.pi]), np.array([0.0, 0.0])) - llh_min)
    north, south = bool(pole_d2[0] <= level), bool(pole_d2[1] <= level)
    if ra.size == 0:  # no boundary: the region is the whole sky
        return (180.0, 180.0), (dec0_deg + 90.0, 90.0 - dec0_deg), True, touches
    dra = np.mod(ra - ra0_deg + 180.0, 360.0) - 180.0
    ra_err = (max(float(-dra.min()), 0.0), max(float(dra.max()), 0.0))
    dec_err = (max(dec0_deg - float(dec.min()), 0.0), max(float(dec.max()) - dec0_deg, 0.0))
    if north:
        dec_err = (dec_err[0], 90.0 - dec0_deg)
    if south:
        dec_err = (dec0_deg + 90.0, dec_err[1])
    if north or south:
        ra_err = (180.0, 180.0)
    return ra_err, dec_err, north or south, touches


def is_pixel_limited(m: MultiResMap, level: float, llh_min: float | None = None) -> bool:
    """True if the region at ``level`` is not resolved: it reaches leaves coarser than the map's finest
    order, or it has fewer than :data:`MIN_RESOLVED_LEAVES` leaves."""
    inside = delta2(m, llh_min) <= level
    n = int(np.sum(inside))
    return n < MIN_RESOLVED_LEAVES or bool(np.any(m.order[inside] < m.max_order))


def make_region(m: MultiResMap, level_set: LevelSet, fit: BestFit) -> Region:
    """Area and extents of one level set around the best fit."""
    area = region_area_deg2(m, level_set.level, fit.llh)
    ra_err, dec_err, pole, touches = region_extent(m, level_set.level, fit.ra_deg, fit.dec_deg, fit.llh)
    return Region(level_set.name, level_set.level, level_set.containment, area, ra_err, dec_err, pole, touches,
                  is_pixel_limited(m, level_set.level, fit.llh))

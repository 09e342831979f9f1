"""Contour-driven refinement: which pixels of the previous nside a contour step refines. No I/O.

A contour step (progression syntax ``NSIDE:c`` or ``NSIDE:cB``) refines the region the error contour
covers instead of a fixed count of pixels around the best fit. At each refinement every collected sample
(any nside so far) is compared with the current best llh, and the candidates are the previous nside's
pixels that

* have their own 2*Delta-llh below ``level + margin``, or
* contain or touch a sample at a finer nside whose 2*Delta-llh is below ``level + margin`` (the fine
  pixel itself or one of its 8 HEALPix neighbours lies in the candidate): the region found at the finer
  nside reaches that coarse pixel, so it grows there even where the coarse sample missed it.

Each candidate is ranked by its lowest such 2*Delta-llh; at most ``budget`` parents are refined, the
lowest first, so the pixels inside the level go before those only inside the margin. Pixels are RING
HEALPix pixels; 2*Delta-llh is dimensionless, areas are in deg^2.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import healpy as hp
import numpy as np
import numpy.typing as npt

from .pixels import parent_pixels

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
#: per nside, a structured array with at least the fields ``index`` (RING pixel) and ``llh`` (the best llh
#: of that pixel, NaN where every fit failed), as :meth:`ScanEngine.results` and ``ScanResult.maps`` hold
SampleMaps = Mapping[int, npt.NDArray[np.void]]

#: 2*Delta-llh level a contour step follows when no calibrated level is given: the threshold that
#: covered the true direction in 90% of 56 simulated tracks (``pandel_mpe``, the simulator's realistic
#: mode; see the README's benchmark table). A per-event calibrated 90% level replaces it when known.
DEFAULT_CONTOUR_LEVEL = 11.3
#: extra 2*Delta-llh above the level that still makes a pixel a candidate: a coarse pixel's centre
#: samples the llh at one point, the region's edge may cross the pixel a little lower
DEFAULT_CONTOUR_MARGIN = 2.0
SR_TO_DEG2 = (180.0 / np.pi) ** 2


@dataclass(frozen=True)
class ContourSelection:
    """The outcome of one contour refinement at ``coarse_nside``."""

    coarse_nside: int
    parents: IntArray  # RING pixels at ``coarse_nside`` to refine now, lowest 2*Delta-llh first
    n_candidates: int  # candidates not refined before (refined now or cut by the budget)
    n_inside: int  # of those, how many score below the level itself (own sample or a finer one they touch)
    n_cut_inside: int  # such candidates that the budget cut

    @property
    def over_budget(self) -> bool:
        """True when the budget left some candidate unrefined."""
        return self.n_candidates > self.parents.size


def _valid(maps: SampleMaps) -> dict[int, tuple[IntArray, FloatArray]]:
    out: dict[int, tuple[IntArray, FloatArray]] = {}
    for nside, arr in maps.items():
        llh = np.asarray(arr["llh"], dtype=np.float64)
        ok = np.isfinite(llh)
        out[int(nside)] = (np.asarray(arr["index"], dtype=np.int64)[ok], llh[ok])
    return out


def best_llh_of(maps: SampleMaps) -> float:
    """Lowest finite llh over every nside (inf when there is none)."""
    lows = [float(llh.min()) for _, llh in _valid(maps).values() if llh.size]
    return min(lows, default=np.inf)


def select_contour_parents(
    maps: SampleMaps,
    coarse_nside: int,
    *,
    level: float = DEFAULT_CONTOUR_LEVEL,
    margin: float = DEFAULT_CONTOUR_MARGIN,
    budget: int,
    already: npt.ArrayLike = (),
) -> ContourSelection:
    """The pixels of ``coarse_nside`` a contour step refines next (see the module docstring).

    ``maps``: every sample so far, per nside. ``already``: parents refined before; they are never chosen
    again and count against ``budget`` (so a step refines at most ``budget`` parents in all).
    """
    if level <= 0 or margin < 0:
        raise ValueError("the contour level must be > 0 and the margin >= 0")
    samples = _valid(maps)
    best = best_llh_of(maps)
    done = np.unique(np.asarray(already, dtype=np.int64))
    empty = np.empty(0, np.int64)
    if not np.isfinite(best):
        return ContourSelection(coarse_nside, empty, 0, 0, 0)
    limit = level + margin
    cand_pix: list[IntArray] = []
    cand_score: list[FloatArray] = []
    for nside, (pix, llh) in samples.items():
        d2 = 2.0 * (llh - best)
        low = d2 < limit
        if nside < coarse_nside or not low.any():
            continue
        pix, d2 = pix[low], d2[low]
        if nside == coarse_nside:
            cand_pix.append(pix)
            cand_score.append(d2)
            continue
        # the fine pixel and its neighbours (-1 where a pixel has only 7), mapped to their coarse parents
        nb = np.asarray(hp.get_all_neighbours(nside, pix), dtype=np.int64)  # (8, n)
        touched = np.vstack([pix[None, :], nb])
        score = np.broadcast_to(d2, touched.shape)
        ok = touched >= 0
        cand_pix.append(parent_pixels(nside, touched[ok], coarse_nside))
        cand_score.append(score[ok])
    if not cand_pix:
        return ContourSelection(coarse_nside, empty, 0, 0, 0)
    pix_all = np.concatenate(cand_pix)
    score_all = np.concatenate(cand_score)
    # lowest score per parent
    order = np.lexsort((score_all, pix_all))
    pix_all, score_all = pix_all[order], score_all[order]
    first = np.ones(pix_all.size, bool)
    first[1:] = pix_all[1:] != pix_all[:-1]
    pix_u, score_u = pix_all[first], score_all[first]
    new = ~np.isin(pix_u, done)
    pix_u, score_u = pix_u[new], score_u[new]
    rank = np.lexsort((pix_u, score_u))  # lowest 2*Delta-llh first, ties by pixel number
    pix_u, score_u = pix_u[rank], score_u[rank]
    room = max(0, budget - int(done.size))
    chosen = pix_u[:room]
    inside = score_u < level
    return ContourSelection(coarse_nside, chosen, int(pix_u.size), int(inside.sum()), int(inside[room:].sum()))


def leaf_mask(maps: SampleMaps) -> dict[int, npt.NDArray[np.bool_]]:
    """Per nside, which samples are leaves: no sample at a finer nside lies inside them."""
    nsides = sorted(maps)
    out: dict[int, npt.NDArray[np.bool_]] = {}
    for i, nside in enumerate(nsides):
        pix = np.asarray(maps[nside]["index"], dtype=np.int64)
        covered = np.zeros(pix.size, bool)
        for finer in nsides[i + 1:]:
            fpix = np.asarray(maps[finer]["index"], dtype=np.int64)
            if fpix.size:
                covered |= np.isin(pix, parent_pixels(finer, fpix, nside))
        out[nside] = ~covered
    return out


def region_area_by_nside(maps: SampleMaps, level: float = DEFAULT_CONTOUR_LEVEL,
                         best_llh: float | None = None) -> dict[int, float]:
    """Area (deg^2) of the region with 2*Delta-llh < ``level``, split by the nside its pixels were resolved at.

    Each point of the sky belongs to the finest scanned pixel holding it (a refined pixel is replaced by its
    children, which a refinement scans all of). 2*Delta-llh is relative to ``best_llh`` (default: the lowest
    llh of the maps). The region is fully resolved at the finest nside when every other entry is 0.
    """
    best = best_llh_of(maps) if best_llh is None else best_llh
    leaves = leaf_mask(maps)
    out: dict[int, float] = {}
    for nside in sorted(maps):
        llh = np.asarray(maps[nside]["llh"], dtype=np.float64)
        inside = leaves[nside] & np.isfinite(llh) & (2.0 * (llh - best) < level)
        out[nside] = float(inside.sum()) * hp.nside2pixarea(nside) * SR_TO_DEG2
    return out


def fully_resolved(area_by_nside: Mapping[int, float], finest_nside: int) -> bool:
    """True when the whole region (as :func:`region_area_by_nside` gives it) lies at ``finest_nside``."""
    return all(a == 0.0 for n, a in area_by_nside.items() if n != finest_nside) and area_by_nside.get(
        finest_nside, 0.0) > 0.0


__all__ = ["DEFAULT_CONTOUR_LEVEL", "DEFAULT_CONTOUR_MARGIN", "ContourSelection", "best_llh_of", "fully_resolved",
           "leaf_mask", "region_area_by_nside", "select_contour_parents"]

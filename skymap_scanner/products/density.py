"""The calibrated probability density of a scan (pure; no I/O).

Goal: the map's credible region of probability C is the calibrated region 2*Delta-llh <= T(C),
exactly at the headline containments (50%, 90%) and as closely as the map allows elsewhere.

Leaves are grouped into bands of 2*Delta-llh between the calibration's levels; band j gets the
probability C(T_j) - C(T_j-1) (the tail beyond the top level the rest). A band's density is its
probability over its area. Where that density would rise away from the best fit (a thin band, a
pixel-limited map) adjacent bands are pooled (isotonic regression), never across a headline level:
there the neighbouring bands on either side are pooled first, so the regions at 50% and 90% hold
exactly their probability and every leaf inside is denser than every leaf outside. Within each
pooled block the density is then shaped by the slope of C(T) (smoother than steps), as far as that
keeps every block denser than the next.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from skymap_scanner.calibration import EventCalibration

HEADLINE_CONTAINMENTS = (0.5, 0.9)  # credible regions that equal the calibrated regions exactly


def _pool_blocks(mass: npt.NDArray[np.float64], area: npt.NDArray[np.float64],
                 anchors: set[int]) -> list[list[int]]:
    """Bands grouped into blocks whose mean density does not rise outwards; a block never spans an
    anchor band's upper edge unless nothing else can make the sequence fall (then it must)."""
    # segments between anchors: pool adjacent violators inside each (pool-adjacent-violators)
    segments: list[list[list[int]]] = [[]]
    for j in range(mass.size):
        seg = segments[-1]
        seg.append([j])
        while len(seg) > 1 and _density(seg[-1], mass, area) > _density(seg[-2], mass, area):
            last = seg.pop()
            seg[-1].extend(last)
        if j in anchors and j < mass.size - 1:
            segments.append([])
    # across anchors: make the last block of a segment at least as dense as the first of the next,
    # by pooling inside the segments (exactness kept) and only as a last resort across the anchor
    changed = True
    while changed:
        changed = False
        for k in range(len(segments) - 1):
            left, right = segments[k], segments[k + 1]
            if not left or not right or _density(left[-1], mass, area) >= _density(right[0], mass, area):
                continue
            changed = True
            if len(left) > 1 and (len(left) >= len(right) or len(right) == 1):
                last = left.pop()
                left[-1].extend(last)
            elif len(right) > 1:
                first = right.pop(0)
                right[0][:0] = first
            else:
                left[-1].extend(right.pop())
                del segments[k + 1]
                while len(left) > 1 and _density(left[-1], mass, area) > _density(left[-2], mass, area):
                    last = left.pop()
                    left[-1].extend(last)
                break
    return [block for seg in segments for block in seg]


def _density(block: list[int], mass: npt.NDArray[np.float64], area: npt.NDArray[np.float64]) -> float:
    a = float(np.sum(area[block]))
    return float(np.sum(mass[block])) / a if a > 0 else np.inf


def calibrated_density(d2: npt.NDArray[np.float64], area_sr: npt.NDArray[np.float64],
                       calibration: EventCalibration) -> npt.NDArray[np.float64]:
    """Per-leaf density (sr-1, sums to 1 over the leaves) from 2*Delta-llh ``d2`` (NaN = not scanned,
    density 0) and each leaf's area (sr)."""
    ok = np.isfinite(d2)
    if not ok.any():
        raise ValueError("probability map is zero everywhere (no finite llh)")
    levels = np.asarray(calibration.level, dtype=float)
    containment = np.asarray(calibration.containment, dtype=float)
    c_edges = np.concatenate([[0.0], calibration.containment_of(levels), [1.0]])
    n_bands = levels.size + 1  # the last: the tail beyond the top level
    band = np.searchsorted(levels, np.where(ok, d2, np.inf), side="left")
    band_area = np.bincount(band[ok], weights=area_sr[ok], minlength=n_bands)
    mass = np.diff(c_edges)
    anchors = {int(np.argmin(np.abs(containment - c))) for c in HEADLINE_CONTAINMENTS
               if np.min(np.abs(containment - c)) < 1e-9}
    # an empty band's probability moves outwards to the next band that has leaves, or inwards when
    # moving it out would carry it across a headline level
    mass = mass.copy()
    for j in range(n_bands):
        if band_area[j] > 0 or mass[j] == 0:
            continue
        nxt = j + 1
        while nxt < n_bands and band_area[nxt] <= 0:
            nxt += 1
        crosses = any(j <= a < nxt for a in anchors)
        prev = j - 1
        while prev >= 0 and band_area[prev] <= 0:
            prev -= 1
        target = prev if (crosses or nxt >= n_bands) and prev >= 0 else nxt
        if 0 <= target < n_bands:
            mass[target] += mass[j]
            mass[j] = 0.0
    used = [j for j in range(n_bands) if band_area[j] > 0]
    sub_anchors = {i for i, j in enumerate(used) if any(j <= a < (used[i + 1] if i + 1 < len(used) else n_bands)
                                                        for a in anchors)}
    blocks = _pool_blocks(mass[used], band_area[used].astype(float), sub_anchors)
    block_of_band = np.full(n_bands, -1)
    for b, members in enumerate(blocks):
        block_of_band[np.asarray(used)[members]] = b
    block = np.where(ok, block_of_band[np.minimum(band, n_bands - 1)], -1)
    n_blocks = len(blocks)
    block_mass = np.bincount(block[ok], weights=mass[band[ok]] * area_sr[ok] / band_area[band[ok]],
                             minlength=n_blocks)
    block_area = np.bincount(block[ok], weights=area_sr[ok], minlength=n_blocks)
    flat = np.zeros(d2.size)
    flat[ok] = (block_mass / block_area)[block[ok]]
    # shaped: inside each block, proportional to the slope of C(T) (beyond the top level, the tail's
    # exponential), with the block's probability unchanged
    from scipy.interpolate import PchipInterpolator

    slope = PchipInterpolator(np.concatenate([[0.0], levels]), c_edges[:-1]).derivative()
    w_top = -2.0 * np.log1p(-containment[-1])  # the Wilks level of the top containment
    x = d2[ok]
    w = np.where(x <= levels[-1], np.maximum(slope(np.minimum(x, levels[-1])), 0.0),
                 np.exp(-(x - levels[-1]) * w_top / (2.0 * levels[-1]))
                 * max(float(slope(levels[-1])), 1e-12)) + 1e-12
    wsum = np.bincount(block[ok], weights=w * area_sr[ok], minlength=n_blocks)
    shaped = np.zeros(d2.size)
    shaped[ok] = w * (block_mass / wsum)[block[ok]]
    # the most shaping that keeps every block denser, leaf for leaf, than the next one
    lam = _max_mixing(flat[ok], shaped[ok], block[ok], n_blocks)
    density = (1.0 - lam) * flat + lam * shaped
    return density / float(np.sum(density * area_sr))


def _max_mixing(flat: npt.NDArray[np.float64], shaped: npt.NDArray[np.float64], block: npt.NDArray[np.int64],
                n_blocks: int) -> float:
    """Largest lambda in [0, 1] with min(block k) >= max(block k+1) for (1-lambda)*flat + lambda*shaped."""
    def monotone(lam: float) -> bool:
        rho = (1.0 - lam) * flat + lam * shaped
        lo = np.full(n_blocks, np.inf)
        hi = np.full(n_blocks, -np.inf)
        np.minimum.at(lo, block, rho)
        np.maximum.at(hi, block, rho)
        present = np.isfinite(lo)
        lo, hi = lo[present], hi[present]
        return bool(np.all(lo[:-1] >= hi[1:] * (1.0 - 1e-12)))

    if monotone(1.0):
        return 1.0
    if not monotone(0.0):
        return 0.0
    a, b = 0.0, 1.0
    for _ in range(30):
        mid = 0.5 * (a + b)
        a, b = (mid, b) if monotone(mid) else (a, mid)
    return a

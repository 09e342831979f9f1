"""The calibrated probability density of a scan (pure; no I/O).

Goal: the map's credible region of probability C is the calibrated region 2*Delta-llh <= T(C),
exactly at the headline containments (50%, 90%) and as closely as the map allows elsewhere.

Leaves are grouped into bands of 2*Delta-llh: inside the 50% level, up to the 90% level, up to the
table's top level, beyond it; each band gets the calibrated probability between its edges. A band's
density is its probability over its area. Where that density would rise away from the best fit (a thin band, a
pixel-limited map) adjacent bands are pooled (isotonic regression), never across a headline level:
there the neighbouring bands on either side are pooled first, so the regions at 50% and 90% hold
exactly their probability and every leaf inside is denser than every leaf outside. Within each
pooled block the density is then shaped by the slope of the calibrated containment C'(T) (smooth
where the scan is), as far as that keeps every leaf of a block denser than every leaf of the next.
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
    table_levels = np.asarray(calibration.level, dtype=float)
    table_containment = np.asarray(calibration.containment, dtype=float)
    # bands: inside the 50% level, between 50% and 90%, between 90% and the table's top, beyond it
    keep = [i for i, c in enumerate(table_containment)
            if min(abs(c - h) for h in HEADLINE_CONTAINMENTS) < 1e-9] + [table_containment.size - 1]
    keep = sorted(set(keep))
    levels = table_levels[keep]
    containment = table_containment[keep]
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
    # shaped: inside each block proportional to the slope of the calibrated containment C'(T) (a
    # monotone cubic through the whole table), beyond the top level the calibration's exponential
    # tail; rescaled so each block keeps its probability
    from scipy.interpolate import PchipInterpolator

    x = d2[ok]
    top = float(table_levels[-1])
    c_table = np.concatenate([[0.0], calibration.containment_of(table_levels)])
    slope = PchipInterpolator(np.concatenate([[0.0], table_levels]), c_table).derivative()
    w_top = -2.0 * float(np.log1p(-table_containment[-1]))  # the Wilks level of the top containment
    s_top = max(float(slope(top)), 1e-12)
    w = np.where(x <= top, np.maximum(slope(np.minimum(x, top)), 1e-12),
                 s_top * np.exp(-(x - top) * w_top / (2.0 * top)))
    wsum = np.bincount(block[ok], weights=w * area_sr[ok], minlength=n_blocks)
    shaped = np.zeros(d2.size)
    shaped[ok] = w * (block_mass / wsum)[block[ok]]
    # per block, the most shaping that keeps every leaf of a block denser than every leaf of the next
    lam = _block_mixing(block_mass / block_area, shaped[ok], block[ok], n_blocks)
    density = np.zeros(d2.size)
    density[ok] = flat[ok] + lam[block[ok]] * (shaped[ok] - flat[ok])
    return density / float(np.sum(density * area_sr))


def _block_mixing(flat: npt.NDArray[np.float64], shaped: npt.NDArray[np.float64], block: npt.NDArray[np.int64],
                  n_blocks: int) -> npt.NDArray[np.float64]:
    """Per block k, the weight lambda_k in [0, 1] of the shaped density against the block's flat one
    (``flat[k]``) such that min(block k) >= max(block k+1).

    Within a block the density is flat_k + lambda_k * (shaped - flat_k), so its minimum and maximum are
    linear in lambda_k, and lowering a block's lambda only raises its minimum and lowers its maximum: each
    adjacent pair can be settled on its own, in closed form, without upsetting another.
    """
    smin = np.full(n_blocks, np.inf)
    smax = np.full(n_blocks, -np.inf)
    np.minimum.at(smin, block, shaped)
    np.maximum.at(smax, block, shaped)
    lam = np.ones(n_blocks)
    drop = flat[:-1] - flat[1:]  # >= 0: the pooled blocks' densities do not rise outwards
    spread = (smax[1:] - flat[1:]) - (smin[:-1] - flat[:-1])  # what shaping both blocks fully costs
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(spread > drop, np.clip(0.999 * drop / spread, 0.0, 1.0), 1.0)  # 0.999: no ties
    lam[:-1] = np.minimum(lam[:-1], t)
    lam[1:] = np.minimum(lam[1:], t)
    return lam

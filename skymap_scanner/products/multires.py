"""The multi-resolution (multi-order, NESTED) llh map built from all nsides of a scan.

Every point of the sky takes the llh of the finest scanned pixel containing it: a coarse pixel that
has finer scanned pixels inside is split into children at the finer order, the children inherit the
coarse value, and the scanned ones are overwritten. The leaves partition the whole sky (sky never
scanned, which a complete scan does not have, gets llh = NaN), so they form a valid MOC.

Internally: NESTED pixel numbers, ``order = log2(nside)``, radians; ``uniq = 4 * 4**order + ipix``.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

import healpy as hp
import numpy as np
import numpy.typing as npt

from skymap_scanner.products.llh_maps import Scan

SR_TO_DEG2 = (180.0 / np.pi) ** 2


def nside_to_order(nside: int) -> int:
    """log2(nside) for a power of two."""
    return int(nside).bit_length() - 1


@dataclasses.dataclass(frozen=True, eq=False)
class MultiResMap:
    """Leaves of a MOC sorted by position on the sky; ``llh`` per leaf (NaN where never scanned)."""

    order: npt.NDArray[np.int64]
    ipix: npt.NDArray[np.int64]
    llh: npt.NDArray[np.float64]

    @property
    def max_order(self) -> int:
        return int(self.order.max())

    @cached_property
    def start(self) -> npt.NDArray[np.int64]:
        """First NESTED pixel of each leaf at ``max_order`` (ascending)."""
        return self.ipix << (2 * (self.max_order - self.order))

    @property
    def uniq(self) -> npt.NDArray[np.int64]:
        return (4 << (2 * self.order)) + self.ipix

    @property
    def area_sr(self) -> npt.NDArray[np.float64]:
        return np.asarray(4.0 * np.pi / (12.0 * 4.0**self.order), dtype=np.float64)

    @property
    def llh_min(self) -> float:
        return float(np.nanmin(self.llh))

    @property
    def fraction_scanned(self) -> float:
        """Fraction of the sky's area with a finite llh (1.0 for a complete scan)."""
        return float(np.sum(self.area_sr[np.isfinite(self.llh)]) / (4.0 * np.pi))

    def leaf_at(self, theta: npt.ArrayLike, phi: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Index of the leaf containing each direction (theta, phi in rad)."""
        p = hp.ang2pix(1 << self.max_order, theta, phi, nest=True)
        return np.searchsorted(self.start, p, side="right") - 1

    def sample(self, theta: npt.ArrayLike, phi: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """llh of the finest scanned pixel at each direction (rad)."""
        return self.llh[self.leaf_at(theta, phi)]

    def rasterize(self) -> npt.NDArray[np.float64]:
        """Single-resolution NESTED llh map at ``max_order``."""
        return np.repeat(self.llh, 1 << (2 * (self.max_order - self.order)))


def children_at(
    order: npt.NDArray[np.int64], ipix: npt.NDArray[np.int64], target_order: int
) -> npt.NDArray[np.int64]:
    """Every NESTED pixel of ``target_order`` inside each pixel (order <= target_order), grouped per
    input pixel in input order, ascending within each group."""
    n = 1 << (2 * (target_order - order))
    first = np.repeat(ipix << (2 * (target_order - order)), n)
    offsets = np.arange(first.size) - np.repeat(np.cumsum(n) - n, n)
    return first + offsets


def _full_sky(order: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    n = 12 << (2 * order)
    return np.full(n, order, dtype=np.int64), np.arange(n, dtype=np.int64)


def build_multires(scan: Scan) -> MultiResMap:
    """Merge all nsides of ``scan`` into one :class:`MultiResMap` (finest value wins)."""
    nest = []
    for m in scan.maps:
        ipix = np.asarray(hp.ring2nest(m.nside, m.index), dtype=np.int64)
        nest.append((nside_to_order(m.nside), ipix, m.llh))
    order0 = nest[0][0]
    order, ipix = _full_sky(order0)
    llh = np.full(ipix.size, np.nan)
    llh[nest[0][1]] = nest[0][2]
    for o, pix, vals in nest[1:]:
        if pix.size == 0:
            continue
        # Leaves (all coarser than o) that contain a scanned pixel of order o: split them to order o.
        start = ipix << (2 * (o - order))
        hit = np.zeros(ipix.size, dtype=bool)
        hit[np.searchsorted(start, pix, side="right") - 1] = True
        child = children_at(order[hit], ipix[hit], o)
        child_llh = np.repeat(llh[hit], 1 << (2 * (o - order[hit])))
        pos = np.searchsorted(child, pix)
        child_llh[pos] = vals
        order = np.concatenate([order[~hit], np.full(child.size, o, dtype=np.int64)])
        new_start = np.concatenate([start[~hit], child])
        ipix = np.concatenate([ipix[~hit], child])
        llh = np.concatenate([llh[~hit], child_llh])
        srt = np.argsort(new_start, kind="stable")
        order, ipix, llh = order[srt], ipix[srt], llh[srt]
    return MultiResMap(order, ipix, llh)

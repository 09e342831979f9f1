"""IceCube's online pulse cleaning, as the alert numbers nch/npulses/qtot use it (spec section 8).

Pure functions on arrays: seeded RT cleaning (HLC core seeds, 150 m / 1000 ns,
up to 3 growth iterations), the 6000 ns time window with the most pulses, and
the cut to strings <= 78 (no DeepCore).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RT_RADIUS_M = 150.0
RT_TIME_NS = 1000.0
SEED_MIN_PARTNER_DOMS = 2
RT_ITERATIONS = 3
TIME_WINDOW_NS = 6000.0
MAX_STRING = 78


@dataclass(frozen=True)
class CleaningStats:
    """IceCube's ``nch`` (hit DOMs), ``npulses`` and ``qtot`` (PE, float32 charges summed, 5 decimals)."""

    nch: int
    npulses: int
    qtot: float


class _Neighbourhood:
    """RT-connection counts between pulses, vectorised over (pulse, neighbour DOM) pairs.

    DOMs are ranked; each pulse gets a key ``rank * stride + t`` so that one
    ``searchsorted`` over keys sorted by (DOM, time) finds, for every pair, the
    pulses of that DOM strictly within +-window. ``stride`` is a power of two
    larger than the time span, so keys are exact for the integer and
    half-integer ns times SuperDST produces.
    """

    def __init__(self, rank: np.ndarray, t: np.ndarray, near: np.ndarray, window_ns: float) -> None:
        self.window = window_ns
        self.rank = rank
        t0 = t - t.min()
        span = float(t0.max()) + 4 * window_ns + 1
        self.stride = float(2.0 ** np.ceil(np.log2(span)))
        self.t = t0
        self.key = rank * self.stride + t0
        deg = near.sum(axis=1)
        self.nb_ptr = np.r_[0, np.cumsum(deg)]
        self.nb_idx = np.nonzero(near)[1]
        self.deg = deg

    def pairs(self, pulses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pulse, neighbour DOM rank) for every pulse in ``pulses`` and every DOM near its own."""
        r = self.rank[pulses]
        n = self.deg[r]
        p = np.repeat(pulses, n)
        first = np.repeat(self.nb_ptr[r], n)
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        return p, self.nb_idx[first + within]

    def count(self, p: np.ndarray, m: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """For pairs (p, m): how many of the ``ref`` pulses (indices, sorted by key) on DOM m are within +-window."""
        ref_key = self.key[ref]
        base = m * self.stride + self.t[p]
        lo = np.searchsorted(ref_key, base - self.window, side="right")
        hi = np.searchsorted(ref_key, base + self.window, side="left")
        return hi - lo


def seeded_rt(
    dom: npt.ArrayLike, time_ns: npt.ArrayLike, hlc: npt.ArrayLike, dom_xyz_m: npt.ArrayLike,
    radius_m: float = RT_RADIUS_M, window_ns: float = RT_TIME_NS,
    min_partner_doms: int = SEED_MIN_PARTNER_DOMS, iterations: int = RT_ITERATIONS,
) -> np.ndarray:
    """Boolean mask of the pulses kept by seeded RT cleaning.

    ``dom`` indexes rows of ``dom_xyz_m`` (m). Two pulses are RT-connected when
    their DOMs are <= ``radius_m`` apart (the same DOM included) and their times
    differ by < ``window_ns``. Seeds: HLC pulses with at least ``min_partner_doms``
    distinct DOMs among their RT-connected HLC pulses (the pulse's own DOM counts
    through its other pulses). Then up to ``iterations`` times, add every pulse
    RT-connected to a pulse selected so far.
    """
    d = np.asarray(dom, dtype=np.int64)
    t = np.asarray(time_ns, dtype=np.float64)
    h = np.asarray(hlc, dtype=bool)
    xyz = np.asarray(dom_xyz_m, dtype=np.float64).reshape(-1, 3)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((t, d))  # by (DOM, time): keys below are sorted in this order
    d, t, h = d[order], t[order], h[order]
    hit, rank = np.unique(d, return_inverse=True)
    rank = rank.reshape(-1)
    pos = xyz[hit]
    near = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(axis=-1)) <= radius_m
    nb = _Neighbourhood(rank, t, near, window_ns)

    hlc_idx = np.flatnonzero(h)
    p, m = nb.pairs(hlc_idx)
    n = nb.count(p, m, hlc_idx) - (m == rank[p])  # a pulse is not its own partner
    n_doms = np.bincount(p[n > 0], minlength=t.size)
    selected = h & (n_doms >= min_partner_doms)
    frontier = selected.copy()
    for _ in range(iterations):
        todo = np.flatnonzero(~selected)
        p, m = nb.pairs(todo)
        hits = nb.count(p, m, np.flatnonzero(frontier)) > 0
        grow = np.zeros(t.size, dtype=bool)
        grow[p[hits]] = True
        if not grow.any():
            break
        selected |= grow
        frontier = grow
    out = np.empty_like(selected)
    out[order] = selected
    return out


def max_time_window(time_ns: npt.ArrayLike, window_ns: float = TIME_WINDOW_NS) -> np.ndarray:
    """Mask of the pulses in the ``window_ns`` window (end - start <= window) holding the most pulses.

    Windows start at a pulse; the earliest wins a tie.
    """
    t = np.asarray(time_ns, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    ts = np.sort(t)
    n_in = np.searchsorted(ts, ts + window_ns, side="right") - np.arange(ts.size)
    start = ts[int(np.argmax(n_in))]
    return (t >= start) & (t <= start + window_ns)


def online_cleaning(
    string: npt.ArrayLike, om: npt.ArrayLike, time_ns: npt.ArrayLike, hlc: npt.ArrayLike,
    xyz_m: npt.ArrayLike,
) -> np.ndarray:
    """Mask of the pulses IceCube's online filter keeps: seeded RT, then the time window, then strings <= 78.

    ``xyz_m`` is (n_pulses, 3), each pulse's DOM position in m.
    """
    s = np.asarray(string, dtype=np.int64)
    o = np.asarray(om, dtype=np.int64)
    t = np.asarray(time_ns, dtype=np.float64)
    h = np.asarray(hlc, dtype=bool)
    pos = np.asarray(xyz_m, dtype=np.float64).reshape(-1, 3)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    dom_code = s * 1000 + o
    uniq, first, dom = np.unique(dom_code, return_index=True, return_inverse=True)
    keep = seeded_rt(dom.reshape(-1), t, h, pos[first])
    idx = np.flatnonzero(keep)
    tw = max_time_window(t[idx])
    keep[idx[~tw]] = False
    keep &= s <= MAX_STRING
    return keep


def stats(string: npt.ArrayLike, om: npt.ArrayLike, charge_pe: npt.ArrayLike) -> CleaningStats:
    """nch, npulses and qtot (float32 charges summed in float64, rounded to 5 decimals)."""
    s = np.asarray(string, dtype=np.int64)
    o = np.asarray(om, dtype=np.int64)
    q = np.asarray(charge_pe).astype(np.float32).astype(np.float64)
    nch = int(np.unique(s * 1000 + o).size)
    return CleaningStats(nch=nch, npulses=int(s.size), qtot=round(float(q.sum()), 5))

"""IceCube's online pulse cleaning, as the alert numbers nch/npulses/qtot use it (spec section 8).

Pure functions on arrays: seeded RT cleaning (HLC core seeds, 150 m / 1000 ns,
up to 3 growth iterations), the 6000 ns time window with the most pulses, and
the cut to strings <= 78 (no DeepCore).
"""

from __future__ import annotations

from collections.abc import Iterator
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


BLOCK_ELEMENTS = 1 << 22  # rows x columns of the RT matrix handled at once (bounds memory)


class _RTMatrix:
    """RT connectivity of pulses, computed by row blocks: |dt| < window and DOM distance <= radius."""

    def __init__(self, dom: np.ndarray, t: np.ndarray, dom_xyz_m: np.ndarray, radius_m: float,
                 window_ns: float) -> None:
        diff = dom_xyz_m[:, None, :] - dom_xyz_m[None, :, :]
        self.dom_near = np.sqrt((diff**2).sum(axis=-1)) <= radius_m
        self.dom = dom
        self.t = t
        self.window_ns = window_ns
        self.block = max(1, BLOCK_ELEMENTS // max(1, t.size))

    def blocks(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices, bool matrix rows x all pulses) by blocks; a pulse is connected to itself."""
        for a in range(0, rows.size, self.block):
            r = rows[a:a + self.block]
            near = self.dom_near[self.dom[r][:, None], self.dom[None, :]]
            near &= np.abs(self.t[r][:, None] - self.t[None, :]) < self.window_ns
            yield r, near


def seeded_rt(
    dom: npt.ArrayLike, time_ns: npt.ArrayLike, hlc: npt.ArrayLike, dom_xyz_m: npt.ArrayLike,
    radius_m: float = RT_RADIUS_M, window_ns: float = RT_TIME_NS,
    min_partner_doms: int = SEED_MIN_PARTNER_DOMS, iterations: int = RT_ITERATIONS,
) -> np.ndarray:
    """Boolean mask of the pulses kept by seeded RT cleaning.

    ``dom`` indexes rows of ``dom_xyz_m`` (m). Seeds: HLC pulses with at least
    ``min_partner_doms`` distinct DOMs among their RT-connected HLC pulses (the
    pulse's own DOM counts through its other pulses). Then up to ``iterations``
    times, add every pulse RT-connected to a pulse selected so far.
    """
    d = np.asarray(dom, dtype=np.int64)
    t = np.asarray(time_ns, dtype=np.float64)
    h = np.asarray(hlc, dtype=bool)
    xyz = np.asarray(dom_xyz_m, dtype=np.float64).reshape(-1, 3)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    # group columns by DOM so "distinct partner DOMs" is a reduction over contiguous column groups
    order = np.argsort(d, kind="stable")
    d, t, h = d[order], t[order], h[order]
    rt = _RTMatrix(d, t, xyz, radius_m, window_ns)
    group_starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    selected = np.zeros(t.size, dtype=bool)
    for rows, conn in rt.blocks(np.flatnonzero(h)):
        conn &= h[None, :]
        conn[np.arange(rows.size), rows] = False  # a pulse is not its own partner
        n_doms = np.logical_or.reduceat(conn, group_starts, axis=1).sum(axis=1)
        selected[rows] = n_doms >= min_partner_doms
    frontier = selected.copy()
    for _ in range(iterations):
        grow = np.zeros(t.size, dtype=bool)
        for _rows, conn in rt.blocks(np.flatnonzero(frontier)):
            grow |= conn.any(axis=0)
        frontier = grow & ~selected
        if not frontier.any():
            break
        selected |= frontier
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

"""Per-DOM time windows (IceCube's ``CalibrationErrata``, ``SaturationWindows``) and the pulse mask they give.

A window set is a read-only (n, 4) float64 array, one row ``(string, om, start_ns, stop_ns)`` per
window, times in the pulses' detector-time convention. Pure numpy, no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .model import Pulses

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: the empty window set (an event without errata)
NO_WINDOWS: FloatArray = np.zeros((0, 4), dtype=np.float64)
NO_WINDOWS.setflags(write=False)


def freeze_windows(rows: npt.ArrayLike) -> FloatArray:
    """A read-only (n, 4) float64 copy of ``rows`` sorted by (string, om, start); raises ValueError on bad rows."""
    a = np.array(rows, dtype=np.float64, copy=True)
    if a.size == 0:
        return NO_WINDOWS
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"time windows must be rows of (string, om, start_ns, stop_ns), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("time windows must be finite numbers")
    if (a[:, :2] != np.round(a[:, :2])).any():
        raise ValueError("time window string and om must be integers")
    bad = a[:, 2] > a[:, 3]
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"time window {i} starts after it stops ({a[i, 2]} > {a[i, 3]} ns)")
    a = a[np.lexsort((a[:, 2], a[:, 1], a[:, 0]))]
    a.setflags(write=False)
    return a


def mask_outside_windows(pulses: Pulses, windows: npt.ArrayLike) -> BoolArray:
    """True for each pulse NOT inside any window ``[start, stop]`` (inclusive) of its own DOM."""
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    n = len(pulses)
    if n == 0 or w.shape[0] == 0:
        return np.ones(n, dtype=bool)
    dom = pulses.string.astype(np.int64) * 1000 + pulses.om.astype(np.int64)
    wdom = w[:, 0].astype(np.int64) * 1000 + w[:, 1].astype(np.int64)
    # windows grouped by DOM: for each pulse, the [lo, hi) range of its DOM's windows
    order = np.argsort(wdom, kind="stable")
    wdom, start, stop = wdom[order], w[order, 2], w[order, 3]
    lo = np.searchsorted(wdom, dom, side="left")
    hi = np.searchsorted(wdom, dom, side="right")
    counts = hi - lo
    inside = np.zeros(n, dtype=bool)
    # one pass per window rank: few windows per DOM, so this loop is short
    for k in range(int(counts.max(initial=0))):
        has = counts > k
        j = lo[has] + k
        t = pulses.time_ns[has]
        inside[has] |= (t >= start[j]) & (t <= stop[j])
    return ~inside

"""Per-event pulse preparation for ``pandel_mpe``: cleaning, first pulse per DOM, seeds (no I/O).

Runs once per worker process per event, so nothing here is on the hot path; still numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..events.i3live.cleaning import online_cleaning
from ..events.model import Pulses

F64 = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def muon_pulse_mask(pulses: Pulses) -> BoolArray:
    """The pulses IceCube's online muon fits use: seeded RT cleaning (HLC core seeds, 150 m, 1000 ns,
    up to 3 iterations), then the 6000 ns window holding the most pulses, strings <= 78.

    Idempotent in practice on decoded alerts (already cleaned so); makes simulated and native
    events, which may carry raw pulses, go through the same selection.
    """
    if len(pulses) == 0:
        return np.zeros(0, dtype=bool)
    pos = np.stack([pulses.x_m, pulses.y_m, pulses.z_m], axis=1)
    return online_cleaning(pulses.string, pulses.om, pulses.time_ns, pulses.lc, pos)


@dataclass(frozen=True)
class DomHits:
    """One entry per hit DOM: first-pulse time (ns), total charge (PE), position (m)."""

    t1_ns: F64
    charge_pe: F64
    pos_m: F64  # (n, 3)


def first_pulses(pulses: Pulses) -> DomHits:
    """First pulse time and summed charge per DOM (pulses are sorted by string, om, time)."""
    key = pulses.string * 100 + pulses.om
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    charge = np.add.reduceat(pulses.charge_pe, first) if first.size else np.zeros(0)
    pos = np.stack([pulses.x_m[first], pulses.y_m[first], pulses.z_m[first]], axis=1)
    return DomHits(pulses.time_ns[first].astype(np.float64), charge.astype(np.float64), pos)


def charge_weighted_centre(hits: DomHits) -> F64:
    """Charge-weighted centre of the hit DOMs (m); the plain mean when all charges are 0."""
    w = hits.charge_pe
    if w.sum() <= 0:
        return np.asarray(hits.pos_m.mean(axis=0), dtype=np.float64)
    return np.asarray(w @ hits.pos_m / w.sum(), dtype=np.float64)


@dataclass(frozen=True)
class LineFitResult:
    """LineFit first guess: a point (m) passed at time t (ns), velocity (m/ns), comes-from angles (rad)."""

    point_m: F64
    t_ns: float
    velocity_m_per_ns: F64
    zenith_rad: float
    azimuth_rad: float


def line_fit(hits: DomHits) -> LineFitResult:
    """Least-squares r_i = r0 + v t_i over the first pulses (IceCube's LineFit idea, unweighted)."""
    t = hits.t1_ns
    r = hits.pos_m
    tm = float(t.mean())
    rm = r.mean(axis=0)
    dt = t - tm
    denom = float(dt @ dt)
    v = (dt @ (r - rm)) / denom if denom > 0 else np.zeros(3)
    speed = float(np.linalg.norm(v))
    if speed > 0:
        come_from = -v / speed
        zen = float(np.arccos(np.clip(come_from[2], -1.0, 1.0)))
        azi = float(np.mod(np.arctan2(come_from[1], come_from[0]), 2 * np.pi))
    else:
        zen, azi = float("nan"), float("nan")
    return LineFitResult(np.asarray(rm, dtype=np.float64), tm, np.asarray(v, dtype=np.float64), zen, azi)

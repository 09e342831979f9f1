"""``pandel_mpe``: a pure-Python Pandel MPE muon-track fit for a fixed direction.

For each (pixel, posvar) the direction is fixed and three parameters are fitted: the track's
offset (a, b) in m in the plane perpendicular to it (relative to the event's charge-weighted
centre) and the time t0 in ns at which the muon passes its point of closest approach to that
centre (the along-track coordinate is degenerate and pinned there). The likelihood is the MPE
form of the jitter-convolved Pandel pdf for the first pulse of each hit DOM (see
:mod:`._pandel`) with a noise floor; minimised by a small box-bounded BFGS using the analytic gradient.

Pulses: those inside the event's ``CalibrationErrata`` windows are dropped, then IceCube's online
muon pulse selection (seeded RT cleaning from HLC core hits, 150 m / 1000 ns, 3 iterations; the 6 us
window with the most pulses; strings <= 78) picks what is fitted, whatever the input format.

Ice (``ice=depth``, the default): every DOM gets the Pandel parameters of the South Pole ice at its
depth (:mod:`._ice`: the shipped table, with scaling laws from the photon Monte Carlo of
:mod:`._icemc`); DOMs whose absorption rates agree within 2% share one likelihood table.
``ice=homogeneous`` uses one Pandel ice for all (AMANDA's H2 by default).

Position variations (``n_posvar``, default 3):

* first nside (no parent seed): 0 = charge-weighted centre, 1 = LineFit centre, 2.. = points on a
  ring of ``posvar_radius_m`` around the charge-weighted centre (IceCube-style seed pattern);
* refined nsides (parent seed given): 0 = the parent pixel's best vertex and time, 1 = charge-weighted
  centre, 2.. = points on the ring around the parent vertex. With ``refined_full=false`` the
  ring points at refined nsides are only evaluated at their start (one likelihood call, no
  minimisation): the parent seed is already good, and this saves ~half the scan time.

With ``use_online_seeds`` (default on) the vertices of online fits found in a real event
(e.g. MPEFit, SplineMPE; their directions are never used) come right after the base seeds and
take the place of ring points. The full default scan (8:0 64:12 512:24) of a ~250-DOM event
thus minimises 3 x 768 + 2 x 1984 fits (about 6300) and evaluates ~2000 more.

Reported: llh (negative log-likelihood), X, Y, Z (m) the fitted vertex, T (ns).
E_tot = total charge (PE) of the cleaned pulses; E_in = charge (PE) of the cleaned DOMs within
100 m of the fitted track. Both are charge proxies in PE, NOT energies in GeV.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..events.model import Event
from ..events.windows import mask_outside_windows
from . import _ice
from . import _pandel as pm
from ._pandel_prep import (
    DomHits,
    charge_weighted_centre,
    first_pulses,
    line_fit,
    muon_pulse_mask,
)
from .base import FitResult, Reco, Vertex

E_IN_RADIUS_M = 100.0
PERP_BOUND_M = 1000.0
TIME_MARGIN_NS = 5000.0
PARAM_SCALE = np.array([10.0, 10.0, 30.0])  # typical sizes of (a m, b m, t0 ns) for the first step
F_TOL = 1e-3  # stop after two iterations gaining < 1e-3 in llh
RATE_LOG_STEP = 0.04  # DOM absorption rates within 2% share one likelihood table


@dataclass(frozen=True)
class PandelPrepared:
    """Everything fit() needs, computed once per event."""

    hits: DomHits
    centre_m: np.ndarray  # charge-weighted centre, the reference point of (a, b)
    dom_rel_m: np.ndarray  # (n, 3) DOM positions minus centre
    data: pm.MPEData
    linefit_point_m: np.ndarray
    extra_seeds: tuple[Vertex, ...]  # from online fits, if any
    qtot_pe: float
    ice: pm.IceModel
    cells: pm.CellTable
    log_floor: float


class PandelMPE(Reco):
    """Pandel MPE track fit with fixed direction, pure numpy/scipy."""

    name = "pandel_mpe"
    OPTIONS = {
        "n_posvar": (int, 3, "position variations per pixel (>= 1)"),
        "posvar_radius_m": (float, 40.0, "radius (m) of the ring of seed variations"),
        "refined_full": (bool, False, "also minimise the ring variations at refined nsides"),
        "hlc_only": (bool, False, "use only HLC (local-coincidence) pulses"),
        "noise_floor_per_ns": (float, 1e-6, "noise floor of the per-DOM likelihood (1/ns)"),
        "jitter_ns": (float, 15.0, "Gaussian time jitter folded into the Pandel pdf (ns)"),
        "ice": (str, "depth", "depth = per-DOM ice from the shipped South Pole ice table; "
                              "homogeneous = one Pandel ice (scattering_m, absorption_m, tau_ns)"),
        "ice_window_m": (float, 30.0, "depth window (m) over which a DOM's ice is averaged (ice=depth)"),
        "scattering_m": (float, 33.3, "Pandel scattering length (m), ice=homogeneous (H2 default)"),
        "absorption_m": (float, 98.0, "absorption length (m), ice=homogeneous"),
        "tau_ns": (float, 557.0, "Pandel tau (ns), ice=homogeneous"),
        "max_npe": (float, 1e9, "cap on a DOM's charge used as the MPE photon count N"),
        "drop_errata": (bool, True, "drop pulses inside the event's CalibrationErrata time windows"),
        "use_online_seeds": (bool, True, "use vertices of online fits in the event as extra seeds"),
        "max_iter": (int, 50, "maximum BFGS iterations per fit"),
    }

    ICE_MODES = ("depth", "homogeneous")

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        if self.options["ice"] not in self.ICE_MODES:
            raise ConfigError(f"reco option ice={self.options['ice']!r} is not one of {', '.join(self.ICE_MODES)}")
        if not self.options["max_npe"] >= 1.0:
            raise ConfigError(f"reco option max_npe={self.options['max_npe']!r} must be >= 1")

    @property
    def n_posvar(self) -> int:
        return max(1, int(self.options["n_posvar"]))

    def prepare(self, event: Event) -> PandelPrepared:
        pulses = event.pulses
        if self.options["hlc_only"] and pulses.lc.sum() >= 3:
            pulses = pulses.select(pulses.lc)
        if self.options["drop_errata"] and len(event.calibration_errata):
            # pulses in a DOM's known-bad calibration window carry wrong times and charges
            pulses = pulses.select(mask_outside_windows(pulses, event.calibration_errata))
        cleaned = pulses.select(muon_pulse_mask(pulses))
        hits = first_pulses(cleaned)
        if hits.t1_ns.size < 3:  # cleaning left too little: use everything
            cleaned = pulses
            hits = first_pulses(pulses)
        centre = charge_weighted_centre(hits)
        lf = line_fit(hits)
        seeds: list[Vertex] = []
        if self.options["use_online_seeds"]:
            for fit in event.online_fits.values():
                v = Vertex(fit.x_m, fit.y_m, fit.z_m, fit.time_ns)
                if v.is_finite():
                    seeds.append(v)
        jitter = float(self.options["jitter_ns"])
        ice = pm.IceModel(jitter_ns=jitter, scattering_m=float(self.options["scattering_m"]),
                          absorption_m=float(self.options["absorption_m"]), tau_ns=float(self.options["tau_ns"]))
        n_pe = np.minimum(hits.charge_pe, float(self.options["max_npe"]))
        if self.options["ice"] == "depth":
            dom_ice = _ice.depth_pandel(hits.pos_m[:, 2], float(self.options["ice_window_m"]))
            rates, which = _ice.snap_rates(dom_ice.rate_per_ns, RATE_LOG_STEP)
            cells = pm.stacked_cell_table(tuple(float(r) for r in rates), jitter)
            data = pm.mpe_data(hits.t1_ns, n_pe, dom_ice.inv_sl, which * pm.cells_per_table(cells.table))
        else:
            cells = pm.cell_table_for(ice)
            data = pm.mpe_data(hits.t1_ns, n_pe, ice.inv_sl)
        return PandelPrepared(
            hits=hits,
            centre_m=centre,
            dom_rel_m=hits.pos_m - centre,
            data=data,
            linefit_point_m=lf.point_m,
            extra_seeds=tuple(seeds),
            qtot_pe=float(cleaned.charge_pe.sum()),
            ice=ice,
            cells=cells,
            log_floor=math.log(float(self.options["noise_floor_per_ns"])),
        )

    def calibration_feature(self, event: Event) -> float | None:
        """DOMs with a pulse after the pulse selection (what the fit sees): how bright the event is."""
        return float(self.prepare(event).hits.t1_ns.size)

    def _start(
        self, prep: PandelPrepared, frame: pm.DirectionFrame, posvar: int, seed: Vertex | None
    ) -> tuple[float, float]:
        """(a, b) in m where variation ``posvar`` starts."""

        def ab(point: np.ndarray) -> tuple[float, float]:
            rel = point - prep.centre_m
            return float((rel * frame.e1).sum()), float((rel * frame.e2).sum())

        if seed is not None and seed.is_finite():
            base = [ab(np.array([seed.x_m, seed.y_m, seed.z_m])), (0.0, 0.0)]
        else:
            base = [(0.0, 0.0), ab(prep.linefit_point_m)]
        base += [ab(np.array([s.x_m, s.y_m, s.z_m])) for s in prep.extra_seeds]
        if posvar < len(base):
            return base[posvar]
        k = posvar - len(base)
        n_ring = max(1, self.n_posvar - len(base))
        angle = 2 * math.pi * k / n_ring
        r = float(self.options["posvar_radius_m"])
        return base[0][0] + r * math.cos(angle), base[0][1] + r * math.sin(angle)

    @staticmethod
    def _t0_start(prep: PandelPrepared, frame: pm.DirectionFrame, a: float, b: float) -> float:
        """A t0 (ns) putting the early residuals near 0: the 10% quantile of t1 - t_geo(t0=0)."""
        rho = np.hypot(frame.p1 - a, frame.p2 - b)
        tg = (frame.along + prep.ice.k_perp * rho) / pm.C_VACUUM_M_PER_NS
        return float(np.quantile(prep.data.t1_ns - tg, 0.1))

    def fit(
        self, prepared: Any, zenith_rad: float, azimuth_rad: float, posvar: int, seed: Vertex | None
    ) -> FitResult:
        prep: PandelPrepared = prepared
        frame = pm.direction_frame(zenith_rad, azimuth_rad, prep.dom_rel_m)
        a0, b0 = self._start(prep, frame, posvar, seed)
        if seed is not None and posvar == 0 and seed.is_finite():
            t0 = seed.t_ns  # the parent pixel's fitted time (T is the time at the closest approach to the centre)
        else:
            t0 = self._t0_start(prep, frame, a0, b0)
        x0 = np.array([a0, b0, t0])
        args = (frame, prep.data, prep.cells, prep.ice, prep.log_floor)
        minimise = not (seed is not None and posvar >= 2 and not self.options["refined_full"])
        if minimise:
            t_lo = float(prep.data.t1_ns.min()) - TIME_MARGIN_NS
            t_hi = float(prep.data.t1_ns.max()) + TIME_MARGIN_NS
            x, llh, _ = pm.bfgs_minimise(
                lambda p: pm.mpe_nll_and_grad(p, *args), x0,
                np.array([-PERP_BOUND_M, -PERP_BOUND_M, t_lo]), np.array([PERP_BOUND_M, PERP_BOUND_M, t_hi]),
                PARAM_SCALE, max_iter=int(self.options["max_iter"]), f_tol=F_TOL,
            )
        else:
            x, llh = x0, pm.mpe_nll_and_grad(x0, *args)[0]
        if not math.isfinite(llh):
            return FitResult.failed()
        return self._result(prep, frame, x, llh)

    @staticmethod
    def _result(prep: PandelPrepared, frame: pm.DirectionFrame, x: np.ndarray, llh: float) -> FitResult:
        a, b, t0 = (float(v) for v in x)
        vertex = prep.centre_m + a * frame.e1 + b * frame.e2
        rho = np.hypot(frame.p1 - a, frame.p2 - b)
        e_in = float(prep.hits.charge_pe[rho <= E_IN_RADIUS_M].sum())
        return FitResult(llh, e_in, prep.qtot_pe, float(vertex[0]), float(vertex[1]), float(vertex[2]), t0)


RECO = PandelMPE

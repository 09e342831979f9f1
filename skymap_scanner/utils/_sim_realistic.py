"""The ``realistic`` simulator mode: one muon track event as real alerts contain it (no I/O).

The physics and its constants are in :mod:`._sim_physics`. Here the event is put together:

* the primary muon: continuous light (line source) + Poisson stochastic cascades along the part
  of the track within ``VISIBLE_RADIUS_M`` of the detector centre; a fraction
  ``starting_fraction`` of tracks start at a neutrino vertex placed 0-300 m before the point where
  the track enters a sphere of ``DETECTOR_RADIUS_M`` (so outside the instrumented volume), with a
  hadronic cascade there of energy ``E y / (1 - y)``, y uniform in [0, 0.5] (mean inelasticity at
  these energies ~0.25), at ``HADRONIC_LIGHT_FACTOR`` = 0.8 of EM light; the rest are through-going;
* with probability ``coincident_prob`` (default 0.15; a 2.7 kHz muon rate times a ~20 us readout
  gives ~5%, so the default is deliberately harsher), a coincident atmospheric muon: down-going with
  ``p(cos zenith) ~ cos^2``, energy ``E^-2.7`` in 0.5-20 TeV, impact up to 600 m, passing its
  closest approach ``U(-4, +8)`` us from the primary's;
* depth-dependent ice along each photon path, photon delays from a pluggable delay model, DOM
  acceptance, per-DOM efficiency (rde x a fixed Gaussian spread of ``dom_eff_spread``, drawn once per
  detector from ``dom_eff_seed`` so every event sees the same DOMs), PMT jitter, SPE charges,
  afterpulses, saturation, discriminator, dark noise over the readout window, HLC flags,
  SuperDST digitisation and (default) IceCube's online cleaning.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..events.geometry import icecube86
from ..events.i3live.cleaning import online_cleaning
from ..events.model import Pulses
from ..recos._pandel import H2, perpendicular_basis, travel_direction
from . import _sim_physics as ph

F64 = npt.NDArray[np.float64]

VISIBLE_RADIUS_M = 800.0
DETECTOR_RADIUS_M = 550.0
HADRONIC_LIGHT_FACTOR = 0.8
COINCIDENT_IMPACT_MAX_M = 600.0
COINCIDENT_DT_NS = (-4000.0, 8000.0)

ORIGIN_PRIMARY = 0
ORIGIN_COINCIDENT = 1
ORIGIN_AFTERPULSE = 2
ORIGIN_NOISE = 3


@dataclass(frozen=True)
class RealisticSettings:
    """Every knob of the realistic mode (all recorded in the truth file).

    ``delay_model``: a key of ``_sim_physics.DELAY_MODELS`` (default ``icemc``: delays drawn from the photon
    Monte Carlo's histograms, which match the first-hit delays of real alerts; ``diffusion`` gave ~2x longer ones); ``coincident_*``: probability, energy
    range (GeV) and spectral index of the coincident atmospheric muon; ``starting_fraction``: tracks
    that start at a vertex outside the detector; ``dom_eff_spread``/``dom_eff_seed``: the fixed
    per-DOM efficiency spread around rde; ``digitise``: SuperDST time/charge quantisation.
    """

    delay_model: str = "icemc"
    online_cleaning: bool = True
    coincident_prob: float = 0.15
    coincident_energy_gev: tuple[float, float] = (500.0, 2e4)
    coincident_index: float = 2.7
    starting_fraction: float = 0.2
    stochastic_losses: bool = True
    noise_rate_hz: float = ph.NOISE_RATE_HZ
    afterpulse_prob: float = ph.AFTERPULSE_PROB
    saturation: bool = True
    sat_knee_pe: float = ph.SAT_KNEE_PE
    sat_max_pe: float = ph.SAT_MAX_PE
    angular_acceptance: bool = True
    dom_eff_spread: float = 0.05
    dom_eff_seed: int = 86
    tts_ns: float = ph.TTS_NS
    digitise: bool = True

    def check(self) -> None:
        if self.delay_model not in ph.DELAY_MODELS:
            raise ConfigError(f"unknown delay model {self.delay_model!r} (known: {', '.join(ph.DELAY_MODELS)})")
        if self.delay_model == "icemc" and not ph.icemc_available():
            raise ConfigError("delay model 'icemc' needs skymap_scanner.recos._icemc.sample_delays_ns")
        for name in ("coincident_prob", "starting_fraction", "afterpulse_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]")
        if self.noise_rate_hz < 0 or self.dom_eff_spread < 0 or self.tts_ns < 0:
            raise ConfigError("noise_rate_hz, dom_eff_spread and tts_ns must be >= 0")
        if not 0 < self.sat_knee_pe < self.sat_max_pe:
            raise ConfigError("need 0 < sat_knee_pe < sat_max_pe")
        lo, hi = self.coincident_energy_gev
        if not 0 < lo <= hi:
            raise ConfigError("coincident_energy_gev must be 0 < lo <= hi")

    def to_dict(self) -> dict[str, Any]:
        """The settings plus the physics constants they use, for provenance."""
        consts = {k: getattr(ph, k) for k in (
            "PHOTONS_PER_GEV", "MUON_B_PER_M", "BARE_MUON_GEV_PER_M", "V_MIN", "STOCHASTIC_FRACTION",
            "R_REG_M", "CASCADE_COS_SIGMA", "DOM_AREA_M2", "A_BACK", "QUASI_DIRECT_PATH_FRACTION",
            "SPE_SIGMA", "SPE_LOW_FRACTION", "SPE_LOW_MEAN", "DISCRIMINATOR_PE", "AFTERPULSE_GROUPS_NS",
            "PULSE_BIN_NS", "READOUT_BEFORE_NS", "READOUT_AFTER_NS", "HLC_WINDOW_NS")}
        consts.update(VISIBLE_RADIUS_M=VISIBLE_RADIUS_M, DETECTOR_RADIUS_M=DETECTOR_RADIUS_M,
                      HADRONIC_LIGHT_FACTOR=HADRONIC_LIGHT_FACTOR, COINCIDENT_IMPACT_MAX_M=COINCIDENT_IMPACT_MAX_M,
                      COINCIDENT_DT_NS=COINCIDENT_DT_NS, ice="ice_transparency.csv, path-averaged")
        return {**asdict(self), "constants": consts}


@dataclass(frozen=True)
class Muon:
    """A muon: travel direction, closest approach to the origin ``vertex`` at ``t_ns``, energy, and
    ``s_start`` (m along the track from the vertex; -inf: through-going)."""

    direction: F64
    vertex: F64
    t_ns: float
    energy_gev: float
    s_start: float = -math.inf


@dataclass
class _Sources:
    """Expected photoelectrons per (source, DOM) with what the photon sampler needs."""

    mu: list[F64] = field(default_factory=list)
    t_direct: list[F64] = field(default_factory=list)
    d_m: list[F64] = field(default_factory=list)
    le: list[F64] = field(default_factory=list)
    la: list[F64] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)

    def add(self, mu: F64, t: F64, d: F64, le: F64, la: F64, origin: int) -> None:
        for lst, a in ((self.mu, mu), (self.t_direct, t), (self.d_m, d), (self.le, le), (self.la, la)):
            lst.append(np.atleast_2d(a))
        self.origin.extend([origin] * np.atleast_2d(mu).shape[0])


@dataclass(frozen=True)
class Detector:
    """DOM indices (string, om 1-based), positions (n, 3) m and efficiencies (rde x spread)."""

    string: npt.NDArray[np.int64]
    om: npt.NDArray[np.int64]
    pos: F64
    eff: F64


@functools.lru_cache(maxsize=4)
def detector(spread: float, seed: int) -> Detector:
    geo = icecube86()
    ok = np.isfinite(geo.x_m)
    s, o = np.nonzero(ok)
    pos = np.stack([geo.x_m[ok], geo.y_m[ok], geo.z_m[ok]], axis=1)
    eff = geo.rde[ok] * np.clip(np.random.default_rng(seed).normal(1.0, spread, s.size), 0.5, 1.5)
    return Detector(s + 1, o + 1, pos, eff)


def _acc(settings: RealisticSettings, cos_src: F64, r: F64, le: F64, la: F64) -> F64:
    if not settings.angular_acceptance:
        return np.ones(np.broadcast(cos_src, r).shape)
    return ph.effective_acceptance(cos_src, r, le, la)


def track_light(m: Muon, det: Detector, settings: RealisticSettings) -> tuple[F64, F64, F64, F64, F64]:
    """Continuous light of a muon at every DOM: (mu PE, direct time ns, path m, le, la)."""
    u = m.direction
    rel = det.pos - m.vertex
    along = rel @ u
    rho = np.sqrt(np.maximum(np.einsum("ij,ij->i", rel, rel) - along**2, 0.0))
    tc = math.tan(H2.theta_c_rad)
    sc = math.sin(H2.theta_c_rad)
    s_emit = along - rho / tc
    d = rho / sc
    t = m.t_ns + (along + H2.k_perp * rho) / ph.C_VACUUM_M_PER_NS
    behind = s_emit < m.s_start
    s_src = np.where(behind, m.s_start if math.isfinite(m.s_start) else 0.0, s_emit)
    src = m.vertex + s_src[:, None] * u
    if behind.any():
        d_start = np.linalg.norm(det.pos[behind] - src[behind], axis=1)
        d[behind] = d_start
        t[behind] = m.t_ns + m.s_start / ph.C_VACUUM_M_PER_NS + d_start / ph.C_ICE_M_PER_NS
    le, la = ph.path_averaged_lengths(src[:, 2], det.pos[:, 2])
    photons_per_m = ph.PHOTONS_PER_GEV * ph.muon_continuous_gev_per_m(m.energy_gev)
    mu = ph.line_fluence(photons_per_m, rho, le, la)
    if behind.any():
        mu[behind] *= np.exp(-(m.s_start - s_emit[behind]) / ph.attenuation_length(le[behind], la[behind]))
    cos_src = (src[:, 2] - det.pos[:, 2]) / np.maximum(d, 1e-3) * -1.0
    mu *= ph.DOM_AREA_M2 * det.eff * _acc(settings, cos_src, d, le, la)
    return mu, t, d, le, la


def point_light(pts: F64, t0: F64, energy: F64, axis: F64, det: Detector,
                settings: RealisticSettings) -> tuple[F64, F64, F64, F64, F64]:
    """Light of point cascades (k, 3) at every DOM, each array (k, n_doms)."""
    rel = det.pos[None, :, :] - pts[:, None, :]
    r = np.maximum(np.linalg.norm(rel, axis=2), 1e-3)
    cos_alpha = (rel @ axis) / r
    le, la = ph.path_averaged_lengths(np.broadcast_to(pts[:, 2:3], r.shape), np.broadcast_to(det.pos[:, 2], r.shape))
    cos_src = rel[:, :, 2] / r  # DOM->source has z = -rel_z; the PMT axis is -z
    mu = ph.point_fluence(ph.PHOTONS_PER_GEV * energy[:, None], r, le, la) * ph.cascade_emission(cos_alpha, r, le)
    mu *= ph.DOM_AREA_M2 * det.eff[None, :] * _acc(settings, cos_src, r, le, la)
    t = t0[:, None] + r / ph.C_ICE_M_PER_NS
    return mu, t, r, le, la


def _visible_span(m: Muon) -> tuple[float, float]:
    b = float(np.linalg.norm(m.vertex))
    half = math.sqrt(max(VISIBLE_RADIUS_M**2 - b * b, 0.0))
    return max(-half, m.s_start), half


def add_muon(rng: np.random.Generator, m: Muon, det: Detector, settings: RealisticSettings,
             src: _Sources, origin: int) -> dict[str, Any]:
    """Add a muon's continuous light and its stochastic cascades to ``src``; returns loss truth."""
    src.add(*track_light(m, det, settings), origin=origin)
    lo, hi = _visible_span(m)
    if not settings.stochastic_losses or hi <= lo:
        return {"n_cascades": 0, "cascade_energy_gev": 0.0, "max_cascade_gev": 0.0}
    s, e = ph.sample_losses(rng, m.energy_gev, hi - lo)
    if s.size:
        s = s + lo
        pts = m.vertex + s[:, None] * m.direction
        t = m.t_ns + s / ph.C_VACUUM_M_PER_NS
        src.add(*point_light(pts, t, e, m.direction, det, settings), origin=origin)
    return {"n_cascades": int(s.size), "cascade_energy_gev": float(e.sum()),
            "max_cascade_gev": float(e.max()) if e.size else 0.0}


def _coincident_muon(rng: np.random.Generator, settings: RealisticSettings, t_primary: float) -> tuple[Muon, float, float]:
    cz = rng.random() ** (1.0 / 3.0)  # p(cos zenith) ~ cos^2, down-going
    zen = math.acos(cz)
    azi = rng.uniform(0.0, 2 * math.pi)
    lo, hi = settings.coincident_energy_gev
    g = 1.0 - settings.coincident_index
    energy = (lo**g + rng.random() * (hi**g - lo**g)) ** (1.0 / g)
    u = travel_direction(zen, azi)
    e1, e2 = perpendicular_basis(u)
    r = COINCIDENT_IMPACT_MAX_M * math.sqrt(rng.random())
    phi = rng.uniform(0.0, 2 * math.pi)
    vertex = r * math.cos(phi) * e1 + r * math.sin(phi) * e2
    t = t_primary + rng.uniform(*COINCIDENT_DT_NS)
    return Muon(u, vertex, t, energy), zen, azi


@dataclass(frozen=True)
class RealisticEvent:
    """The pulses (sorted as :class:`Pulses` sorts them), each pulse's origin code, and truth details."""

    pulses: Pulses
    origin: npt.NDArray[np.int64]
    details: dict[str, Any]


def simulate(rng: np.random.Generator, primary: Muon, settings: RealisticSettings,
             delay_model: ph.DelayModel | None = None) -> RealisticEvent:
    """Simulate the pulses of one event whose primary muon is ``primary`` (``s_start`` honoured).

    ``delay_model`` overrides ``settings.delay_model`` (any callable ``(rng, d, le, la) -> ns``).
    """
    settings.check()
    delays = delay_model if delay_model is not None else ph.DELAY_MODELS[settings.delay_model]
    det = detector(settings.dom_eff_spread, settings.dom_eff_seed)
    n_doms = det.pos.shape[0]
    src = _Sources()
    details: dict[str, Any] = {"primary": add_muon(rng, primary, det, settings, src, ORIGIN_PRIMARY)}
    details["primary"]["s_start_m"] = primary.s_start if math.isfinite(primary.s_start) else None
    if math.isfinite(primary.s_start):
        y = rng.uniform(0.0, 0.5)
        e_had = primary.energy_gev * y / (1.0 - y)
        p0 = primary.vertex + primary.s_start * primary.direction
        t0 = primary.t_ns + primary.s_start / ph.C_VACUUM_M_PER_NS
        src.add(*point_light(p0[None, :], np.array([t0]), np.array([HADRONIC_LIGHT_FACTOR * e_had]),
                             primary.direction, det, settings), origin=ORIGIN_PRIMARY)
        details["primary"].update(start_x_m=float(p0[0]), start_y_m=float(p0[1]), start_z_m=float(p0[2]),
                                  hadronic_energy_gev=float(e_had))
    details["coincident"] = None
    if rng.random() < settings.coincident_prob:
        cm, czen, cazi = _coincident_muon(rng, settings, primary.t_ns)
        losses = add_muon(rng, cm, det, settings, src, ORIGIN_COINCIDENT)
        details["coincident"] = {"zenith_rad": czen, "azimuth_rad": cazi, "energy_gev": cm.energy_gev,
                                 "t_ns": cm.t_ns, "x_m": float(cm.vertex[0]), "y_m": float(cm.vertex[1]),
                                 "z_m": float(cm.vertex[2]), **losses}

    mu = np.concatenate(src.mu, axis=0)
    n_ph = rng.poisson(mu).ravel()
    flat = np.repeat(np.arange(n_ph.size), n_ph)
    row, dom = np.divmod(flat, n_doms)
    origin_rows = np.asarray(src.origin, dtype=np.int64)
    p_origin = origin_rows[row]

    def pick(parts: list[F64]) -> F64:
        return np.concatenate(parts, axis=0).ravel()[flat]

    t = pick(src.t_direct) + delays(rng, pick(src.d_m), pick(src.le), pick(src.la))
    t = t + rng.normal(0.0, settings.tts_ns, t.size)
    q = ph.spe_charges(rng, t.size)
    ap = rng.random(t.size) < settings.afterpulse_prob
    n_ap = int(ap.sum())
    all_dom = np.r_[dom, dom[ap]]
    all_t = np.r_[t, t[ap] + ph.afterpulse_delays(rng, n_ap)]
    all_q = np.r_[q, ph.spe_charges(rng, n_ap)]
    all_origin = np.r_[p_origin, np.full(n_ap, ORIGIN_AFTERPULSE)]
    p_dom, p_t, p_q, first = ph.make_pulses(all_dom, all_t, all_q, n_doms)
    p_origin_pulse = all_origin[first]

    # saturation: per-DOM charge compressed, all its pulses scaled alike
    q_true = np.bincount(p_dom, weights=p_q, minlength=n_doms).astype(np.float64)
    n_sat = 0
    if settings.saturation:
        q_obs = ph.saturate(q_true, settings.sat_knee_pe, settings.sat_max_pe)
        scale = np.divide(q_obs, q_true, out=np.ones(n_doms), where=q_true > 0)
        p_q = p_q * scale[p_dom]
        n_sat = int(np.count_nonzero(q_true > settings.sat_knee_pe))

    # readout window around the primary's light (its signal photons, afterpulses excluded)
    t_prim = t[p_origin == ORIGIN_PRIMARY]
    if t_prim.size:
        t_lo, t_hi = float(t_prim.min()) - ph.READOUT_BEFORE_NS, float(t_prim.max()) + ph.READOUT_AFTER_NS
    else:
        t_lo, t_hi = primary.t_ns - 10_000.0, primary.t_ns + 10_000.0

    # dark noise over the window
    n_noise = rng.poisson(settings.noise_rate_hz * (t_hi - t_lo) * 1e-9, n_doms)
    nz_dom = np.repeat(np.arange(n_doms), n_noise)
    nz_t = rng.uniform(t_lo, t_hi, nz_dom.size)
    nz_q = ph.spe_charges(rng, nz_dom.size)

    dom_all = np.r_[p_dom, nz_dom]
    t_all = np.r_[p_t, nz_t]
    q_all = np.r_[p_q, nz_q]
    o_all = np.r_[p_origin_pulse, np.full(nz_dom.size, ORIGIN_NOISE)]
    keep = (q_all >= ph.DISCRIMINATOR_PE) & (t_all >= t_lo) & (t_all <= t_hi)
    dom_all, t_all, q_all, o_all = dom_all[keep], t_all[keep], q_all[keep], o_all[keep]
    if settings.digitise:
        t_all, q_all = ph.superdst_digitise(t_all, q_all)
    s_all, om_all = det.string[dom_all], det.om[dom_all]
    lc = ph.hlc_flags(s_all, om_all, t_all)
    raw = {"nch": int(np.unique(dom_all).size), "npulses": int(t_all.size), "qtot_pe": float(q_all.sum())}
    if settings.online_cleaning and t_all.size:
        mask = online_cleaning(s_all, om_all, t_all, lc, det.pos[dom_all])
        dom_all, t_all, q_all, o_all, lc = dom_all[mask], t_all[mask], q_all[mask], o_all[mask], lc[mask]
        s_all, om_all = s_all[mask], om_all[mask]
    xyz = det.pos[dom_all]
    pulses = Pulses.build(s_all, om_all, t_all, q_all, lc, xyz[:, 0], xyz[:, 1], xyz[:, 2])
    order = np.lexsort((t_all, om_all, s_all))
    origin_sorted = o_all[order]
    counts = {name: int(np.count_nonzero(origin_sorted == code)) for name, code in (
        ("primary", ORIGIN_PRIMARY), ("coincident", ORIGIN_COINCIDENT), ("afterpulse", ORIGIN_AFTERPULSE),
        ("noise", ORIGIN_NOISE))}
    details.update(
        readout_window_ns=[t_lo, t_hi], before_cleaning=raw,
        after_cleaning={"nch": pulses.n_doms, "npulses": len(pulses), "qtot_pe": pulses.qtot_pe},
        pulses_by_origin=counts,
        n_photoelectrons=int(t.size), n_afterpulses=n_ap, n_saturated_doms=n_sat,
        max_dom_charge_true_pe=float(q_true.max()) if q_true.size else 0.0,
    )
    return RealisticEvent(pulses, origin_sorted, details)

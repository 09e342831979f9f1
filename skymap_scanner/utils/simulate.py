"""Simulate through-going muon tracks in IceCube-86 as ``skymap-scanner-event/1`` files.

Physics, deliberately simple but not the reco's model in the ``depth`` mode:

* an infinite muon track with a known direction (comes-from zenith/azimuth, rad), passing its
  point of closest approach to the detector origin at ``T0_NS``;
* expected photoelectrons per DOM: ``YIELD_PE * (E / 100 TeV) * rde * exp(-d / lambda_a) / d``
  with ``d = rho / sin(theta_c)`` (m) the Cherenkov photon path, Poisson-sampled;
* each photon is delayed after the direct Cherenkov time by a Gamma(d / lambda_s, rate) delay
  (the Pandel form), plus Gaussian PMT jitter ``PMT_JITTER_NS``;
* ice: ``pandel`` = homogeneous H2 ice (what the reco assumes); ``depth`` = scattering and
  absorption lengths of ``ice_transparency.csv`` averaged along each photon's path
  (path-integrated 1/lambda), so the fit sees light it does not model exactly;
* photons within ``PULSE_BIN_NS`` of each other on a DOM form a pulse (time of its first photon,
  charge = photon count with 30% Gaussian smearing); per-DOM noise hits at ``--noise-rate-hz``
  over a 20 us window; HLC flags: a pulse on a DOM one or two OMs away on the same string
  within 1 us.

``realistic`` (``--ice realistic``, the mode accuracy is quoted on) is a different simulator
(:mod:`._sim_realistic`, physics and documented constants in :mod:`._sim_physics`): depth-dependent
ice along each photon path, a photon delay model that is not Pandel (pluggable), continuous muon
light plus stochastic cascades, tracks through-going or starting outside the detector, an optional
coincident atmospheric muon, DOM angular acceptance, per-DOM efficiency, PMT jitter, SPE charges,
afterpulses, saturation, dark noise over the readout window, HLC flags, SuperDST digitisation and
IceCube's online cleaning. Its truth file records every setting and constant (``settings``) and what
happened (``details``: cascades, coincident muon, counts before cleaning, pulses by origin).

The true direction (zenith/azimuth and J2000 RA/Dec), energy and vertex go to a SEPARATE truth
JSON next to each event; the event file the scanner reads carries no truth.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, SkyScanError
from ..events.geometry import icecube86
from ..events.model import Event, Pulses
from ..recos._pandel import C_VACUUM_M_PER_NS, H2, perpendicular_basis, travel_direction
from . import _sim_physics as _ph
from . import _sim_realistic as _real
from ._sim_realistic import RealisticSettings

F64 = npt.NDArray[np.float64]

# the reco's H2 ice model (recos._pandel), so the ``pandel`` ice mode cannot drift from it
C_M_PER_NS = C_VACUUM_M_PER_NS
N_PHASE = H2.n_phase
N_GROUP = H2.n_group
THETA_C = H2.theta_c_rad
K_PERP = H2.k_perp
TAU_NS = H2.tau_ns
H2_SCATTERING_M = H2.scattering_m
H2_ABSORPTION_M = H2.absorption_m
YIELD_PE = 900.0  # PE x m at 100 TeV, see module docstring
PMT_JITTER_NS = 3.0
PULSE_BIN_NS = 25.0
T0_NS = 10000.0
NOISE_WINDOW_NS = 20000.0
ICE_SURFACE_Z_M = 1948.07  # IceCube z = 1948.07 m - depth
ICE_MODES = ("pandel", "depth", "realistic")
SPECTRA = ("log-uniform", "E-2")
MJD_RANGE = (58849.0, 61041.0)  # 2020-01-01 .. 2026-01-01


@dataclass(frozen=True)
class Truth:
    """What was simulated: direction (rad and deg), muon energy (GeV), vertex (m, ns)."""

    zenith_rad: float
    azimuth_rad: float
    ra_rad: float
    dec_rad: float
    ra_deg: float
    dec_deg: float
    energy_gev: float
    x_m: float
    y_m: float
    z_m: float
    t_ns: float
    ice: str
    mjd: float
    run_id: int
    event_id: int
    n_hit_doms: int
    n_pulses: int
    qtot_pe: float
    seed: int | None = None
    settings: dict[str, Any] | None = None  # realistic mode: every setting and constant
    details: dict[str, Any] | None = None  # realistic mode: losses, coincident muon, counts


def ice_table() -> tuple[F64, F64, F64]:
    """(z in m ascending, effective scattering length m, absorption length m) of the ice table."""
    return _ph.ice_table()


def path_lengths(z_from_m: F64, z_to_m: F64, ice: str, n_samples: int = 9) -> tuple[F64, F64]:
    """Effective (scattering, absorption) lengths in m along straight paths between depths.

    ``pandel``: the H2 constants. ``depth``: 1 / mean(1 / lambda) over ``n_samples`` points on
    each path (outside the table the nearest row is used).
    """
    if ice == "pandel":
        shape = np.shape(z_from_m)
        return np.full(shape, H2_SCATTERING_M), np.full(shape, H2_ABSORPTION_M)
    return _ph.path_averaged_lengths(z_from_m, z_to_m, n_samples)


def comes_from_unit(zenith_rad: float, azimuth_rad: float) -> F64:
    s = math.sin(zenith_rad)
    return np.array([s * math.cos(azimuth_rad), s * math.sin(azimuth_rad), math.cos(zenith_rad)])


def _hlc_flags(string: npt.NDArray[np.int64], om: npt.NDArray[np.int64], t: F64) -> npt.NDArray[np.bool_]:
    """True where a pulse on the same string, 1 or 2 OMs away, is within 1000 ns."""
    return _ph.hlc_flags(string, om, t, 1000.0)


def simulate_track(
    rng: np.random.Generator,
    *,
    zenith_rad: float,
    azimuth_rad: float,
    energy_gev: float,
    impact_m: tuple[float, float] = (0.0, 0.0),
    ice: str = "pandel",
    noise_rate_hz: float = 500.0,
    run_id: int = 1,
    event_id: int = 1,
    mjd: float = 60000.0,
    seed: int | None = None,
    settings: RealisticSettings | None = None,
    delay_model: _ph.DelayModel | None = None,
    s_start_m: float | None = None,
) -> tuple[Event, Truth]:
    """One muon track and its pulses; ``impact_m`` offsets the track from the origin (m, perp. plane).

    ``ice="realistic"`` runs the realistic mode (:mod:`._sim_realistic`) with ``settings`` (default
    :class:`RealisticSettings`, whose ``noise_rate_hz`` replaces the argument here), an optional
    ``delay_model`` callable ``(rng, d_m, scat_eff_m, abs_m) -> delays_ns``, and ``s_start_m``: where the
    muon starts, m along the track from its closest approach to the origin (None: through-going).
    """
    if ice not in ICE_MODES:
        raise ConfigError(f"unknown ice mode {ice!r} (known: {', '.join(ICE_MODES)})")
    if ice == "realistic":
        return _realistic_track(
            rng, zenith_rad=zenith_rad, azimuth_rad=azimuth_rad, energy_gev=energy_gev, impact_m=impact_m,
            settings=settings or RealisticSettings(), delay_model=delay_model, s_start_m=s_start_m,
            run_id=run_id, event_id=event_id, mjd=mjd, seed=seed)
    geo = icecube86()
    ok = np.isfinite(geo.x_m)
    strings, oms = np.nonzero(ok)
    pos = np.stack([geo.x_m[ok], geo.y_m[ok], geo.z_m[ok]], axis=1)
    rde = geo.rde[ok]
    travel = travel_direction(zenith_rad, azimuth_rad)
    e1, e2 = perpendicular_basis(travel)
    vertex = impact_m[0] * e1 + impact_m[1] * e2  # closest approach to the origin
    rel = pos - vertex
    along = rel @ travel
    perp = rel - along[:, None] * travel
    rho = np.maximum(np.linalg.norm(perp, axis=1), 0.5)
    path = rho / math.sin(THETA_C)
    # photons leave the track at the Cherenkov angle, from this point
    z_emit = vertex[2] + (along - rho / math.tan(THETA_C)) * travel[2]
    lam_s, lam_a = path_lengths(z_emit, pos[:, 2], ice)
    mu = YIELD_PE * (energy_gev / 1e5) * rde * np.exp(-path / lam_a) / path
    n_ph = rng.poisson(mu)
    hit = np.flatnonzero(n_ph > 0)
    dom_idx = np.repeat(hit, n_ph[hit])
    t_direct = T0_NS + (along + K_PERP * rho) / C_M_PER_NS
    rate = 1.0 / TAU_NS + C_M_PER_NS / N_GROUP / lam_a
    delay = rng.gamma(shape=(path / lam_s)[dom_idx], scale=1.0 / rate[dom_idx])
    t_ph = t_direct[dom_idx] + delay + rng.normal(0.0, PMT_JITTER_NS, dom_idx.size)
    # group photons into pulses: bins of PULSE_BIN_NS after each DOM's first photon
    order = np.lexsort((t_ph, dom_idx))
    dom_idx, t_ph = dom_idx[order], t_ph[order]
    first_t = np.full(pos.shape[0], np.inf)
    np.minimum.at(first_t, dom_idx, t_ph)
    bin_no = np.floor((t_ph - first_t[dom_idx]) / PULSE_BIN_NS).astype(np.int64)
    pulse_key = dom_idx.astype(np.int64) * 1_000_000 + bin_no
    keys, start, counts = np.unique(pulse_key, return_index=True, return_counts=True)
    p_dom = dom_idx[start]
    p_t = t_ph[start]
    p_q = np.maximum(counts + rng.normal(0.0, 0.3 * np.sqrt(counts)), 0.25)
    # noise: uniform over a window around the trigger
    n_noise = rng.poisson(noise_rate_hz * NOISE_WINDOW_NS * 1e-9, pos.shape[0])
    n_dom = np.repeat(np.arange(pos.shape[0]), n_noise)
    n_t = T0_NS - NOISE_WINDOW_NS / 2 + rng.uniform(0.0, NOISE_WINDOW_NS, n_dom.size)
    n_q = np.maximum(rng.normal(1.0, 0.3, n_dom.size), 0.25)
    all_dom = np.r_[p_dom, n_dom]
    all_t = np.r_[p_t, n_t]
    all_q = np.r_[p_q, n_q]
    s = strings[all_dom] + 1
    o = oms[all_dom] + 1
    lc = _hlc_flags(s, o, all_t)
    pulses = Pulses.build(s, o, all_t, np.round(all_q, 3), lc, pos[all_dom, 0], pos[all_dom, 1], pos[all_dom, 2])
    event = Event(run_id=run_id, event_id=event_id, event_type="simulated", mjd=mjd,
                  is_real_event=False, pulses=pulses, source="<simulated>")
    from ..coords import local_to_equatorial

    ra, dec = local_to_equatorial(zenith_rad, azimuth_rad, mjd)
    truth = Truth(
        zenith_rad=float(zenith_rad), azimuth_rad=float(azimuth_rad), ra_rad=float(ra), dec_rad=float(dec),
        ra_deg=math.degrees(float(ra)), dec_deg=math.degrees(float(dec)), energy_gev=float(energy_gev),
        x_m=float(vertex[0]), y_m=float(vertex[1]), z_m=float(vertex[2]), t_ns=T0_NS, ice=ice, mjd=float(mjd),
        run_id=run_id, event_id=event_id, n_hit_doms=pulses.n_doms, n_pulses=len(pulses),
        qtot_pe=pulses.qtot_pe, seed=seed,
        settings={"noise_rate_hz": noise_rate_hz, "yield_pe_m_at_100tev": YIELD_PE, "pmt_jitter_ns": PMT_JITTER_NS,
                  "pulse_bin_ns": PULSE_BIN_NS, "noise_window_ns": NOISE_WINDOW_NS, "online_cleaning": False},
    )
    return event, truth


def _realistic_track(
    rng: np.random.Generator, *, zenith_rad: float, azimuth_rad: float, energy_gev: float,
    impact_m: tuple[float, float], settings: RealisticSettings, delay_model: _ph.DelayModel | None,
    s_start_m: float | None, run_id: int, event_id: int, mjd: float, seed: int | None,
) -> tuple[Event, Truth]:
    travel = travel_direction(zenith_rad, azimuth_rad)
    e1, e2 = perpendicular_basis(travel)
    vertex = impact_m[0] * e1 + impact_m[1] * e2
    start = -math.inf if s_start_m is None else float(s_start_m)
    muon = _real.Muon(travel, vertex, T0_NS, float(energy_gev), start)
    sim = _real.simulate(rng, muon, settings, delay_model)
    event = Event(run_id=run_id, event_id=event_id, event_type="simulated", mjd=mjd,
                  is_real_event=False, pulses=sim.pulses, source="<simulated>")
    from ..coords import local_to_equatorial

    ra, dec = local_to_equatorial(zenith_rad, azimuth_rad, mjd)
    provenance = settings.to_dict()
    if delay_model is not None:
        provenance["delay_model"] = getattr(delay_model, "__qualname__", repr(delay_model))
    p = sim.pulses
    truth = Truth(
        zenith_rad=float(zenith_rad), azimuth_rad=float(azimuth_rad), ra_rad=float(ra), dec_rad=float(dec),
        ra_deg=math.degrees(float(ra)), dec_deg=math.degrees(float(dec)), energy_gev=float(energy_gev),
        x_m=float(vertex[0]), y_m=float(vertex[1]), z_m=float(vertex[2]), t_ns=T0_NS, ice="realistic",
        mjd=float(mjd), run_id=run_id, event_id=event_id, n_hit_doms=p.n_doms, n_pulses=len(p),
        qtot_pe=round(p.qtot_pe, 3), seed=seed, settings=provenance, details=sim.details,
    )
    return event, truth


def draw_energy(rng: np.random.Generator, energy_range_gev: tuple[float, float], spectrum: str) -> float:
    """A muon energy (GeV): ``log-uniform`` or ``E-2`` (dN/dE ~ E^-2) over the range."""
    lo, hi = energy_range_gev
    if spectrum == "log-uniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if spectrum == "E-2":
        return 1.0 / (1.0 / lo - rng.uniform() * (1.0 / lo - 1.0 / hi))
    raise ConfigError(f"unknown spectrum {spectrum!r} (known: {', '.join(SPECTRA)})")


def draw_start(rng: np.random.Generator, settings: RealisticSettings, impact_m: float) -> float | None:
    """Where a realistic track starts (m along it from its closest approach), or None (through-going):
    with probability ``starting_fraction``, 0-300 m before it enters a sphere of radius
    ``_sim_realistic.DETECTOR_RADIUS_M`` (so at a vertex outside the instrumented volume)."""
    if rng.uniform() >= settings.starting_fraction:
        return None
    half = math.sqrt(max(_real.DETECTOR_RADIUS_M**2 - impact_m**2, 0.0))
    return -half - rng.uniform(0.0, 300.0)


# realistic-mode defaults of random_track (the other modes keep their historic defaults)
REALISTIC_ENERGY_RANGE_GEV = (3e4, 5e6)
REALISTIC_IMPACT_MAX_M = 500.0
REALISTIC_SPECTRUM = "E-2"
REALISTIC_MIN_DOMS = 20


def random_track(
    rng: np.random.Generator,
    *,
    energy_range_gev: tuple[float, float] | None = None,
    impact_max_m: float | None = None,
    ice: str = "pandel",
    noise_rate_hz: float = 500.0,
    run_id: int = 1,
    event_id: int = 1,
    min_doms: int | None = None,
    seed: int | None = None,
    spectrum: str | None = None,
    settings: RealisticSettings | None = None,
    delay_model: _ph.DelayModel | None = None,
    min_qtot_pe: float = 0.0,
) -> tuple[Event, Truth]:
    """A track with isotropic direction (whole sky), energy from ``spectrum``, impact uniform on a
    disc; redrawn until at least ``min_doms`` DOMs have a pulse and qtot >= ``min_qtot_pe``.

    Defaults: ``pandel``/``depth``: 30 TeV-1 PeV log-uniform, impact <= 400 m, min_doms 10.
    ``realistic``: 30 TeV-5 PeV E^-2, impact <= 500 m, min_doms 20 (after online cleaning), a
    fraction ``settings.starting_fraction`` of tracks starting outside the detector.
    """
    real = ice == "realistic"
    e_range = energy_range_gev or (REALISTIC_ENERGY_RANGE_GEV if real else (3e4, 1e6))
    b_max = impact_max_m if impact_max_m is not None else (REALISTIC_IMPACT_MAX_M if real else 400.0)
    spec = spectrum or (REALISTIC_SPECTRUM if real else "log-uniform")
    n_min = min_doms if min_doms is not None else (REALISTIC_MIN_DOMS if real else 10)
    cfg = settings or RealisticSettings()
    for _ in range(1000):
        zen = math.acos(rng.uniform(-1.0, 1.0))
        azi = rng.uniform(0.0, 2 * math.pi)
        energy = draw_energy(rng, e_range, spec)
        r = b_max * math.sqrt(rng.uniform())
        phi = rng.uniform(0.0, 2 * math.pi)
        mjd = rng.uniform(*MJD_RANGE)
        extra: dict[str, Any] = {}
        if real:
            extra = {"settings": cfg, "delay_model": delay_model, "s_start_m": draw_start(rng, cfg, r)}
        event, truth = simulate_track(
            rng, zenith_rad=zen, azimuth_rad=azi, energy_gev=energy,
            impact_m=(r * math.cos(phi), r * math.sin(phi)), ice=ice, noise_rate_hz=noise_rate_hz,
            run_id=run_id, event_id=event_id, mjd=mjd, seed=seed, **extra,
        )
        if truth.n_hit_doms >= n_min and truth.qtot_pe >= min_qtot_pe:
            return event, truth
    raise SkyScanError(f"could not simulate a track with >= {n_min} hit DOMs in 1000 tries")


def truth_to_dict(truth: Truth) -> dict[str, object]:
    """The truth file's content (``details`` only where the mode records them)."""
    d = asdict(truth)
    if d["details"] is None:
        del d["details"]
    return {"format": "skymap-scanner-truth/1", **d}


def _with_mjd(event: Event, truth: Truth, mjd: float) -> tuple[Event, Truth]:
    """The same track observed at another time (the local direction is unchanged)."""
    from dataclasses import replace

    from ..coords import local_to_equatorial

    ra, dec = local_to_equatorial(truth.zenith_rad, truth.azimuth_rad, mjd)
    return replace(event, mjd=mjd), replace(
        truth, mjd=mjd, ra_rad=float(ra), dec_rad=float(dec),
        ra_deg=math.degrees(float(ra)), dec_deg=math.degrees(float(dec)))


def main(argv: list[str] | None = None) -> int:
    """The command line moved to :mod:`skymap_scanner.cli.simulate`; this name keeps working."""
    from ..cli.simulate import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())

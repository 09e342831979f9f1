"""Physics of the ``realistic`` simulator mode: pure numpy functions, no I/O.

Everything here is deliberately NOT the reconstruction's model (``recos._pandel``), so a fit
quoted on these events meets light it does not describe exactly. Units: m, ns, GeV, PE.

Light production (per source, expected photons at a DOM)
---------------------------------------------------------
* EM light yield ``PHOTONS_PER_GEV`` = 1.2e5 Cherenkov photons per GeV of cascade energy:
  an EM cascade's total charged track length is ~4.9 m/GeV (Raedel & Wiebusch, Astropart.
  Phys. 38 (2012) 53), times ~250 photons/cm (Frank-Tamm in ice, 300-500 nm).
* Muon energy loss ``dE/dx = a + b E`` with ``b = MUON_B_PER_M`` = 3.3e-4 /m (radiative losses
  in ice, Chirkin & Rhode, hep-ph/0407075). The radiative part is split: losses with a fraction
  ``v = eps / E`` above ``V_MIN`` = 1e-3 are point-like stochastic cascades, Poisson in number, with
  ``dN/dv ~ v^-2`` (equal energy per decade of v, roughly the pair + bremsstrahlung shape); they
  carry ``STOCHASTIC_FRACTION`` = 0.6 of ``b E`` (= ln(1e3) / ln(1e5): v spans 1e-5..1 and equal
  energy per decade). The rest, plus the bare muon and its knock-on electrons
  (``BARE_MUON_GEV_PER_M`` = 0.25 GeV/m equivalent), is continuous light along the track. That gives
  ~2.9 cascades per 100 m, each of mean energy ~0.7% of E. E is held constant over the ~1 km in view
  (a 30 TeV-5 PeV muon loses <= 30% of its energy over 1 km).
* Propagation: time-integrated diffusion in the path-averaged ice with effective scattering
  length ``le`` and absorption length ``la`` (m): photon fluence (photons/m^2) of a point source of
  S photons ``S exp(-r/L) / (4 pi D r)`` and of a line source of s photons/m
  ``s K0(rho/L) / (2 pi D)``, with ``D = le / 3`` and the attenuation length ``L = sqrt(la le / 3)``.
  Distances are regularised with ``R_REG_M`` (the source's few-metre extent).
* Cascade emission is peaked at the Cherenkov angle to the shower axis (Gaussian in cos, width
  ``CASCADE_COS_SIGMA`` = 0.35) for its unscattered fraction ``exp(-r / le)``, isotropic otherwise.

Detection
---------
* DOM effective area ``DOM_AREA_M2`` (m^2, head-on) times the angular acceptance, rde and a per-DOM
  efficiency spread. ``DOM_AREA_M2`` = 0.004 m^2 is of the order of the 10" PMT's photocathode
  (0.055 m^2) x quantum efficiency (~25%) x glass/gel transmission (~0.3 averaged over the Cherenkov
  spectrum); it is the one normalisation tuned, so that a ~100 TeV muon crossing the detector gives
  roughly what the shared real track alerts record (qtot 850-2200 PE over 130-350 DOMs).
* Angular acceptance: the PMT looks down (-z). For a photon arriving from direction with cosine
  ``c`` to the PMT axis, ``a(c) = A_BACK + (1 - A_BACK) ((1 + c) / 2)^2``: 1 head-on, ``A_BACK`` = 0.05
  from straight above (the photocathode is a downward hemisphere; light from behind reaches it only
  through the refrozen hole ice). Unscattered light (fraction ``exp(-d / le)``) arrives from the
  source direction; diffuse light has the P1 (diffusion) radiance ``1 + k cos`` around the source
  direction with ``k = min(1, le (1/r + 1/L))``, whose average acceptance is
  ``A_BACK + (1 - A_BACK) (1/3 + k c0 / 6)``.

Photon delay (pluggable)
------------------------
``diffusion_delays``: a fraction ``exp(-d / le)`` of photons is quasi-direct (small-angle scattered,
delay exponential with mean ``QUASI_DIRECT_PATH_FRACTION`` x d / c_ice); the rest follow the 3-D
diffusion Green's function with absorption in retarded time t (after the direct light),
``p(t) ~ t^-3/2 exp(-d^2 / (4 Dt t)) exp(-c_ice t / la)`` with ``Dt = c_ice le / 3`` (m^2/ns): an
inverse Gaussian with shape ``d^2 / (2 Dt)`` and mean ``sqrt(shape la / (2 c_ice))``. Pandel is a
Gamma with shape d / lambda_s and an empirical tau = 557 ns; this has a t^-3/2 tail, a shape law in
d^2 / le and no tau. Any ``DelayModel`` ``(rng, d_m, scat_eff_m, abs_m) -> delays_ns`` may be used.

PMT and DAQ
-----------
* single-PE charge: Gaussian(1, 0.3) (85%) + exponential of mean 0.25 PE (15%, the low-charge
  shoulder of the IceCube PMT, Abbasi et al., NIM A 618 (2010) 139); discriminator 0.25 PE.
* transit-time jitter: Gaussian, ``TTS_NS`` = 2.0 ns (R7081 TTS ~2 ns sigma, same paper).
* afterpulses: ``AFTERPULSE_PROB`` = 0.06 per photoelectron, delayed by 0.6 us (sd 0.1), 2 us
  (sd 0.3) or 8 us (sd 1.0) with weights 0.3 / 0.5 / 0.2, one single-PE charge each (same paper:
  ~0.06 per PE with peaks near 0.6, 2 and 8 us).
* saturation: a DOM's charge Q above ``SAT_KNEE_PE`` = 2000 PE is compressed towards
  ``SAT_MAX_PE`` = 5000 PE, ``Q' = K + (M - K)(1 - exp(-(Q - K)/(M - K)))``, all its pulses scaled
  alike (the PMT/ADC saturate at a few thousand PE per launch; IceCube's own fits drop such DOMs).
* photons of a DOM within ``PULSE_BIN_NS`` = 25 ns of a pulse's first photon form one pulse;
  SuperDST digitisation: time floored to 1 ns, charge ``0.05 q + 0.025`` PE (the alert format).
* dark noise: uncorrelated, ``NOISE_RATE_HZ`` = 650 Hz per DOM (IceCube DOMs: 500-800 Hz) over the
  readout window (``READOUT_BEFORE_NS`` = 4 us before the first and ``READOUT_AFTER_NS`` = 6 us after
  the last of the primary muon's light, IceCube's SMT8 readout).
* HLC: a pulse has a partner on the same string 1 or 2 OMs away within 1 us.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from importlib import resources

import numpy as np
import numpy.typing as npt
from scipy import special

from ..recos._pandel import C_VACUUM_M_PER_NS, H2

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DelayModel = Callable[[np.random.Generator, F64, F64, F64], F64]

N_GROUP = H2.n_group
THETA_C = H2.theta_c_rad
C_ICE_M_PER_NS = C_VACUUM_M_PER_NS / N_GROUP
ICE_SURFACE_Z_M = 1948.07  # IceCube z = 1948.07 m - depth

PHOTONS_PER_GEV = 1.2e5
MUON_B_PER_M = 3.3e-4
BARE_MUON_GEV_PER_M = 0.25
V_MIN = 1e-3
STOCHASTIC_FRACTION = 0.6
R_REG_M = 2.0
CASCADE_COS_SIGMA = 0.35
DOM_AREA_M2 = 0.004
A_BACK = 0.05
QUASI_DIRECT_PATH_FRACTION = 0.05

SPE_SIGMA = 0.3
SPE_LOW_FRACTION = 0.15
SPE_LOW_MEAN = 0.25
DISCRIMINATOR_PE = 0.25
TTS_NS = 2.0
AFTERPULSE_PROB = 0.06
AFTERPULSE_GROUPS_NS = ((600.0, 100.0, 0.3), (2000.0, 300.0, 0.5), (8000.0, 1000.0, 0.2))
SAT_KNEE_PE = 2000.0
SAT_MAX_PE = 5000.0
PULSE_BIN_NS = 25.0
NOISE_RATE_HZ = 650.0
READOUT_BEFORE_NS = 4000.0
READOUT_AFTER_NS = 6000.0
HLC_WINDOW_NS = 1000.0


# ---------------------------------------------------------------- ice

@functools.lru_cache(maxsize=1)
def ice_table() -> tuple[F64, F64, F64]:
    """(z in m ascending, effective scattering length m, absorption length m) of the ice table."""
    text = resources.files("skymap_scanner.data").joinpath("ice_transparency.csv").read_text()
    tab = np.loadtxt(text.splitlines(), delimiter=",", skiprows=1)
    z = ICE_SURFACE_Z_M - tab[:, 0]
    order = np.argsort(z)
    return z[order], tab[order, 1], tab[order, 2]


def path_averaged_lengths(z_from_m: F64, z_to_m: F64, n_samples: int = 9) -> tuple[F64, F64]:
    """Effective (scattering, absorption) lengths in m along straight paths between depths:
    1 / mean(1 / lambda) over ``n_samples`` points (outside the table the nearest row is used)."""
    z_tab, sca, absn = ice_table()
    a = np.asarray(z_from_m, dtype=np.float64)
    b = np.asarray(z_to_m, dtype=np.float64)
    f = np.linspace(0.0, 1.0, n_samples)
    z = a[..., None] + (b - a)[..., None] * f
    inv_s = np.interp(z, z_tab, 1.0 / sca).mean(axis=-1)
    inv_a = np.interp(z, z_tab, 1.0 / absn).mean(axis=-1)
    return 1.0 / inv_s, 1.0 / inv_a


def attenuation_length(le: F64, la: F64) -> F64:
    """Diffusion attenuation length sqrt(la le / 3), m."""
    return np.sqrt(la * le / 3.0)


def point_fluence(photons: F64 | float, r_m: F64, le: F64, la: F64) -> F64:
    """Photons/m^2 at distance r of an isotropic point source (time-integrated diffusion)."""
    r = np.hypot(r_m, R_REG_M)
    return photons * np.exp(-r / attenuation_length(le, la)) / (4.0 * math.pi * (le / 3.0) * r)


def line_fluence(photons_per_m: F64 | float, rho_m: F64, le: F64, la: F64) -> F64:
    """Photons/m^2 at perpendicular distance rho of an infinite line source (time-integrated diffusion)."""
    rho = np.hypot(rho_m, R_REG_M)
    return photons_per_m * special.k0(rho / attenuation_length(le, la)) / (2.0 * math.pi * (le / 3.0))


# ---------------------------------------------------------------- detection

def acceptance(cos_eta: F64) -> F64:
    """DOM angular acceptance (1 head-on); ``cos_eta`` = cosine between the direction light comes
    from and the PMT axis (-z)."""
    x = 0.5 * (1.0 + np.asarray(cos_eta, dtype=np.float64))
    return A_BACK + (1.0 - A_BACK) * x * x


def effective_acceptance(cos_src: F64, r_m: F64, le: F64, la: F64) -> F64:
    """Acceptance for light of a source seen at ``cos_src`` (cos of the direction DOM->source to -z):
    unscattered fraction exp(-r/le) from the source direction, the rest P1-diffuse (see module doc)."""
    w = np.exp(-r_m / le)
    k = np.minimum(1.0, le * (1.0 / np.maximum(r_m, R_REG_M) + 1.0 / attenuation_length(le, la)))
    diffuse = A_BACK + (1.0 - A_BACK) * (1.0 / 3.0 + k * cos_src / 6.0)
    return w * acceptance(cos_src) + (1.0 - w) * diffuse


@functools.lru_cache(maxsize=1)
def _cascade_profile_norm() -> float:
    c = np.linspace(-1.0, 1.0, 4001)
    g = np.exp(-0.5 * ((c - math.cos(THETA_C)) / CASCADE_COS_SIGMA) ** 2)
    return float(g.mean())  # uniform grid on [-1, 1]: the mean over the sphere


def cascade_emission(cos_alpha: F64, r_m: F64, le: F64) -> F64:
    """Relative cascade emission (mean 1 over the sphere) towards a DOM at angle alpha to the axis."""
    g = np.exp(-0.5 * ((cos_alpha - math.cos(THETA_C)) / CASCADE_COS_SIGMA) ** 2) / _cascade_profile_norm()
    w = np.exp(-r_m / le)
    return w * g + (1.0 - w)


# ---------------------------------------------------------------- delays

def diffusion_delays(rng: np.random.Generator, d_m: F64, scat_eff_m: F64, abs_m: F64) -> F64:
    """Photon delays (ns) after the direct light: quasi-direct + retarded-diffusion mixture (module doc)."""
    d = np.maximum(np.asarray(d_m, dtype=np.float64), 0.1)
    le = np.asarray(scat_eff_m, dtype=np.float64)
    la = np.asarray(abs_m, dtype=np.float64)
    direct = rng.random(d.size) < np.exp(-d / le)
    out = np.empty(d.size)
    nd = int(direct.sum())
    out[direct] = rng.exponential(1.0, nd) * QUASI_DIRECT_PATH_FRACTION * d[direct] / C_ICE_M_PER_NS
    diff = ~direct
    dt = C_ICE_M_PER_NS * le[diff] / 3.0
    shape = d[diff] ** 2 / (2.0 * dt)
    mean = np.sqrt(shape * la[diff] / (2.0 * C_ICE_M_PER_NS))
    out[diff] = rng.wald(mean, shape)
    return out


def _icemc_delays(rng: np.random.Generator, d_m: F64, scat_eff_m: F64, abs_m: F64) -> F64:
    from ..recos import _icemc  # type: ignore[attr-defined]  # the lead's photon Monte Carlo, when present

    return np.asarray(_icemc.sample_delays_ns(rng, d_m, scat_eff_m, abs_m), dtype=np.float64)  # type: ignore[attr-defined]


DELAY_MODELS: dict[str, DelayModel] = {"diffusion": diffusion_delays, "icemc": _icemc_delays}


def icemc_available() -> bool:
    """True when ``skymap_scanner.recos._icemc.sample_delays_ns`` exists."""
    try:
        from ..recos import _icemc  # type: ignore[attr-defined]
    except ImportError:
        return False
    return callable(getattr(_icemc, "sample_delays_ns", None))


# ---------------------------------------------------------------- muon losses

def muon_continuous_gev_per_m(energy_gev: float) -> float:
    """Continuous light of a muon as equivalent cascade energy per m."""
    return BARE_MUON_GEV_PER_M + (1.0 - STOCHASTIC_FRACTION) * MUON_B_PER_M * energy_gev


def stochastic_rate_per_m() -> float:
    """Mean number of stochastic cascades (v > V_MIN) per metre, independent of E."""
    mean_v = math.log(1.0 / V_MIN) / (1.0 / V_MIN - 1.0)
    return STOCHASTIC_FRACTION * MUON_B_PER_M / mean_v


def sample_losses(rng: np.random.Generator, energy_gev: float, length_m: float) -> tuple[F64, F64]:
    """(positions in [0, length) m, energies GeV) of the stochastic cascades along a track piece."""
    n = int(rng.poisson(stochastic_rate_per_m() * max(length_m, 0.0)))
    s = rng.uniform(0.0, max(length_m, 0.0), n)
    u = rng.random(n)
    v = 1.0 / (1.0 / V_MIN - u * (1.0 / V_MIN - 1.0))  # dN/dv ~ v^-2 on [V_MIN, 1]
    return s, v * energy_gev


# ---------------------------------------------------------------- PMT / DAQ

def spe_charges(rng: np.random.Generator, n: int) -> F64:
    """Single-photoelectron charges (PE): Gaussian(1, SPE_SIGMA) plus a low-charge exponential."""
    low = rng.random(n) < SPE_LOW_FRACTION
    q = np.where(low, rng.exponential(SPE_LOW_MEAN, n), rng.normal(1.0, SPE_SIGMA, n))
    return np.maximum(q, 0.0)


def afterpulse_delays(rng: np.random.Generator, n: int) -> F64:
    """Afterpulse delays (ns) from the three groups of ``AFTERPULSE_GROUPS_NS``."""
    mu = np.array([g[0] for g in AFTERPULSE_GROUPS_NS])
    sd = np.array([g[1] for g in AFTERPULSE_GROUPS_NS])
    w = np.array([g[2] for g in AFTERPULSE_GROUPS_NS])
    k = rng.choice(mu.size, size=n, p=w / w.sum())
    return np.maximum(rng.normal(mu[k], sd[k]), 100.0)


def saturate(q_dom: F64, knee_pe: float = SAT_KNEE_PE, max_pe: float = SAT_MAX_PE) -> F64:
    """Observed DOM charge for true charge ``q_dom``: linear to the knee, then compressed to ``max_pe``."""
    q = np.asarray(q_dom, dtype=np.float64)
    span = max_pe - knee_pe
    over = np.maximum(q - knee_pe, 0.0)
    return np.where(q > knee_pe, knee_pe + span * (1.0 - np.exp(-over / span)), q)


def make_pulses(dom: I64, t_ns: F64, q_pe: F64, n_doms: int,
                bin_ns: float = PULSE_BIN_NS) -> tuple[I64, F64, F64, I64]:
    """Group photoelectrons of each DOM into pulses: ``bin_ns`` bins after a DOM's first one.

    Returns (dom, time of the bin's first photoelectron, summed charge, index of that first
    photoelectron in the inputs), one row per pulse.
    """
    if dom.size == 0:
        return dom[:0], t_ns[:0], q_pe[:0], np.zeros(0, dtype=np.int64)
    order = np.lexsort((t_ns, dom))
    d, t, q = dom[order], t_ns[order], q_pe[order]
    first = np.full(n_doms, np.inf)
    np.minimum.at(first, d, t)
    bin_no = np.floor((t - first[d]) / bin_ns).astype(np.int64)
    key = d.astype(np.int64) * (int(bin_no.max()) + 1) + bin_no
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return d[start], t[start], np.add.reduceat(q, start), order[start]


def hlc_flags(string: I64, om: I64, t_ns: F64, window_ns: float = HLC_WINDOW_NS) -> npt.NDArray[np.bool_]:
    """True where a pulse on the same string, 1 or 2 OMs away, is within ``window_ns``."""
    t = np.asarray(t_ns, dtype=np.float64)
    if t.size == 0:
        return np.zeros(0, dtype=bool)
    key = np.asarray(string, dtype=np.int64) * 100 + np.asarray(om, dtype=np.int64)
    t0 = t - t.min()
    stride = float(2.0 ** math.ceil(math.log2(float(t0.max()) + 4.0 * window_ns + 1.0)))
    comp = np.sort(key * stride + t0)
    flags = np.zeros(t.size, dtype=bool)
    for dk in (-2, -1, 1, 2):
        base = (key + dk) * stride + t0
        lo = np.searchsorted(comp, base - window_ns, side="left")
        hi = np.searchsorted(comp, base + window_ns, side="right")
        flags |= hi > lo
    return flags


def superdst_digitise(t_ns: F64, q_pe: F64) -> tuple[F64, F64]:
    """Time floored to 1 ns; charge to the SuperDST linear code 0.05 q + 0.025 PE."""
    code = np.maximum(np.round((q_pe - 0.025) / 0.05), 0.0)
    return np.floor(t_ns), np.round(code * 0.05 + 0.025, 3)

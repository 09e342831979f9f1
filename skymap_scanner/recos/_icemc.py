"""A small photon Monte Carlo: arrival-time delays of Cherenkov light from an infinite muon track.

Why it exists: the Pandel function's parameters (``lambda_p``, ``tau``) are effective numbers, not
the ice's optical lengths. To put the real, depth-dependent ice (effective scattering length
``lambda_e`` and absorption length ``lambda_a`` per depth, ``ice_transparency.csv``) into the fit, we
need the map (lambda_e, lambda_a) -> Pandel parameters. This module derives it from first
principles instead of fitting it to events:

* photons leave an infinite track (along +z, speed c) at the Cherenkov angle (phase index), travel
  at the group velocity, scatter with a Henyey-Greenstein phase function of mean cosine ``g``
  (geometric scattering length ``lambda_e * (1 - g)``), and are tallied every time they cross a
  cylinder of radius rho around the track (a fluence estimator, weight 1 / |cos| to the cylinder's
  normal, clipped);
* the delay of a crossing is its arrival time minus the direct-light time at that point of the
  cylinder; by translation symmetry along the track one emission point suffices;
* absorption is applied afterwards as the weight exp(-delay / lambda_a), delay counted as extra path:
  the direct path's absorption is common to every photon at that radius and cancels in the shape;
* everything is in units of ``lambda_e`` (lengths) and ``lambda_e / c_group`` (times): the delay
  distribution of homogeneous ice depends on rho / lambda_e and lambda_a / lambda_e only.

Fitting the Pandel form to the tallies (:func:`fit_pandel_scaling`) gives lambda_p / lambda_e and
tau * c_group / lambda_e; the results are frozen in :mod:`._ice` (re-derive them with
``python benchmarks/derive_pandel_ice.py``). The DOM's angular acceptance is not modelled here (the
fit has no DOM orientation term either). Pure numpy, no I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

F64 = npt.NDArray[np.float64]

C_VACUUM_M_PER_NS = 0.299792458
N_PHASE = 1.3195
N_GROUP = 1.35634
THETA_C_RAD = math.acos(1.0 / N_PHASE)
K_PERP = N_GROUP / math.sin(THETA_C_RAD) - 1.0 / math.tan(THETA_C_RAD)
G_MEAN_COS = 0.9  # Mie scattering in South Pole ice (SPICE: g = 0.9)


@dataclass(frozen=True)
class Tally:
    """Weighted delays (units of lambda_e, i.e. lambda_e / c_group in time) at one cylinder radius."""

    rho: float  # in lambda_e
    delay: F64
    weight: F64


def _hg_cos(rng: np.random.Generator, g: float, n: int) -> F64:
    """Cosines of Henyey-Greenstein scattering angles with mean cosine g."""
    u = rng.random(n)
    s = (1.0 - g * g) / (1.0 - g + 2.0 * g * u)
    return np.clip((1.0 + g * g - s * s) / (2.0 * g), -1.0, 1.0)


def _rotate(u: F64, cos_t: F64, rng: np.random.Generator) -> F64:
    """Turn unit vectors ``u`` by polar angles acos(cos_t) around a random azimuth."""
    sin_t = np.sqrt(np.maximum(1.0 - cos_t * cos_t, 0.0))
    phi = rng.random(u.shape[0]) * (2.0 * math.pi)
    helper = np.where(np.abs(u[:, 2:3]) < 0.9, np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]]))
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1, axis=1)[:, None]
    e2 = np.cross(u, e1)
    return np.asarray(cos_t[:, None] * u + sin_t[:, None] * (np.cos(phi)[:, None] * e1 + np.sin(phi)[:, None] * e2))


def propagate(
    rng: np.random.Generator, n_photons: int, radii: tuple[float, ...], g: float = G_MEAN_COS,
    max_path: float = 60.0,
) -> list[Tally]:
    """Propagate ``n_photons`` from the track and tally crossings of cylinders at ``radii`` (lambda_e).

    Photons are followed until their path exceeds ``max_path`` lambda_e (with lambda_a ~ 3.4 lambda_e
    the weight there is < 1e-7, so the cut costs nothing).
    """
    ls = 1.0 - g
    phi = rng.random(n_photons) * (2.0 * math.pi)
    st, ct = math.sin(THETA_C_RAD), math.cos(THETA_C_RAD)
    u = np.stack([st * np.cos(phi), st * np.sin(phi), np.full(n_photons, ct)], axis=1)
    p = np.zeros((n_photons, 3))
    path = np.zeros(n_photons)
    delays: list[list[F64]] = [[] for _ in radii]
    weights: list[list[F64]] = [[] for _ in radii]
    alive = np.arange(n_photons)
    while alive.size:
        step = rng.exponential(ls, alive.size)
        pa, ua = p[alive], u[alive]
        a = np.maximum(ua[:, 0] ** 2 + ua[:, 1] ** 2, 1e-12)
        b = 2.0 * (pa[:, 0] * ua[:, 0] + pa[:, 1] * ua[:, 1])
        c0 = pa[:, 0] ** 2 + pa[:, 1] ** 2
        for k, r in enumerate(radii):
            disc = b * b - 4.0 * a * (c0 - r * r)
            ok = disc > 0.0
            sq = np.sqrt(np.where(ok, disc, 0.0))
            for sign in (-1.0, 1.0):
                s = (-b + sign * sq) / (2.0 * a)
                hit = np.flatnonzero(ok & (s > 0.0) & (s <= step))
                if hit.size == 0:
                    continue
                sh = s[hit]
                z_cross = pa[hit, 2] + sh * ua[hit, 2]
                length = path[alive[hit]] + sh
                # c_group * (t - t_direct): emission at z = 0, t = 0
                delays[k].append(length - (z_cross + K_PERP * r) / N_GROUP)
                xy = pa[hit, :2] + sh[:, None] * ua[hit, :2]
                cos_n = np.abs((xy * ua[hit, :2]).sum(axis=1)) / r
                weights[k].append(1.0 / np.maximum(cos_n, 0.05))
        p[alive] = pa + step[:, None] * ua
        path[alive] += step
        u[alive] = _rotate(ua, _hg_cos(rng, g, alive.size), rng)
        keep = (path[alive] < max_path) & (np.hypot(p[alive, 0], p[alive, 1]) < radii[-1] + max_path)
        alive = alive[keep]
    return [
        Tally(r, np.maximum(np.concatenate(d), 0.0) if d else np.zeros(0), np.concatenate(w) if w else np.zeros(0))
        for r, d, w in zip(radii, delays, weights, strict=True)
    ]


def fit_pandel_scaling(tallies: list[Tally], abs_over_eff: float) -> tuple[float, float]:
    """Maximum-likelihood Pandel fit to the tallies with absorption lambda_a = abs_over_eff * lambda_e.

    Returns (lambda_p / lambda_e, tau * c_group / lambda_e): the Pandel delay density at distance
    d = rho / sin(theta_c) is Gamma(d / lambda_p, 1 / tau + c_group / lambda_a). Each radius
    weighs the same.
    """
    sin_c = math.sin(THETA_C_RAD)

    def nll(x: F64) -> float:
        lam_p, total_scale = np.exp(x)
        out = 0.0
        for t in tallies:
            w = t.weight * np.exp(-t.delay / abs_over_eff)
            r = np.maximum(t.delay, 1e-6)
            xi = t.rho / sin_c / lam_p
            logp = -xi * math.log(total_scale) + (xi - 1.0) * np.log(r) - r / total_scale - special.gammaln(xi)
            out -= float((w * logp).sum() / w.sum())
        return out

    res = optimize.minimize(nll, np.array([0.5, 0.5]), method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6})
    lam_p, total_scale = (float(v) for v in np.exp(res.x))
    tau = 1.0 / (1.0 / total_scale - 1.0 / abs_over_eff)
    return lam_p, tau


# -- a shipped histogram of the Monte Carlo, for simulators --------------------------------------------------

DELAY_TABLE_FORMAT = "skymap-scanner-photon-delays/1"
TABLE_RADII = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
TABLE_EDGES = np.concatenate([[0.0], np.geomspace(1e-3, 60.0, 160)])  # delay bins, units of lambda_e


def delay_histograms(tallies: list[Tally]) -> F64:
    """Unabsorbed, fluence-weighted delay histograms (rows: radii, columns: TABLE_EDGES bins), each summing to 1."""
    rows = []
    for t in tallies:
        h, _ = np.histogram(t.delay, bins=TABLE_EDGES, weights=t.weight)
        rows.append(h / max(float(h.sum()), 1e-300))
    return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True)
class DelayTable:
    """The photon MC's delay histograms (``data/photon_delays.json``), made by benchmarks/derive_pandel_ice.py."""

    radii: F64  # in lambda_e
    edges: F64  # in lambda_e
    hist: F64  # (radii, bins)
    n_photons: int
    g: float


@functools.lru_cache(maxsize=1)
def load_delay_table() -> DelayTable:
    """Read the shipped histograms (checked: format, shapes, finite non-negative rows)."""
    import json
    from importlib import resources

    doc = json.loads(resources.files("skymap_scanner.data").joinpath("photon_delays.json").read_text())
    if not isinstance(doc, dict) or doc.get("format") != DELAY_TABLE_FORMAT:
        raise ValueError(f"photon_delays.json is not {DELAY_TABLE_FORMAT}")
    radii = np.asarray(doc["radii"], dtype=np.float64)
    edges = np.asarray(doc["edges"], dtype=np.float64)
    hist = np.asarray(doc["hist"], dtype=np.float64)
    if hist.shape != (radii.size, edges.size - 1) or not np.all(np.isfinite(hist)) or np.any(hist < 0):
        raise ValueError("photon_delays.json: histogram shape or values are wrong")
    return DelayTable(radii, edges, hist, int(doc["n_photons"]), float(doc["g"]))


def sample_delays_ns(rng: np.random.Generator, d_m: npt.ArrayLike, scat_eff_m: npt.ArrayLike,
                     abs_m: npt.ArrayLike) -> F64:
    """Photon delays (ns) after the direct light, drawn from the shipped photon-MC histograms.

    ``d_m`` is the Cherenkov photon path (m; rho = d sin(theta_c) picks the tallied cylinder, nearest in
    log rho), ``scat_eff_m`` / ``abs_m`` the lengths along the path. Each histogram bin is weighted by the
    absorption of its extra path, exp(-delay / lambda_a), and a delay drawn uniformly inside the chosen bin.
    For simulators: no Pandel form anywhere.
    """
    tab = load_delay_table()
    d = np.asarray(d_m, dtype=np.float64).ravel()
    le = np.broadcast_to(np.asarray(scat_eff_m, dtype=np.float64), d.shape)
    la = np.broadcast_to(np.asarray(abs_m, dtype=np.float64), d.shape)
    rho_eff = np.maximum(d * math.sin(THETA_C_RAD) / le, 1e-3)
    k = np.abs(np.log(rho_eff)[:, None] - np.log(tab.radii)[None, :]).argmin(axis=1)
    mid = 0.5 * (tab.edges[:-1] + tab.edges[1:])
    ratio = la / le
    out = np.empty(d.size)
    # group by (radius, absorption ratio to 0.1): a handful of groups, vectorised inside each
    key = k * 100000 + np.round(ratio * 10).astype(np.int64)
    for kk in np.unique(key):
        sel = np.flatnonzero(key == kk)
        r = int(kk // 100000)
        w = tab.hist[r] * np.exp(-mid / max(float(kk % 100000) / 10.0, 0.1))
        cdf = np.cumsum(w)
        pick = np.minimum(np.searchsorted(cdf, rng.random(sel.size) * cdf[-1], side="right"), w.size - 1)
        lo, hi = tab.edges[pick], tab.edges[pick + 1]
        out[sel] = (lo + rng.random(sel.size) * (hi - lo)) * le[sel]
    return out / (C_VACUUM_M_PER_NS / N_GROUP)


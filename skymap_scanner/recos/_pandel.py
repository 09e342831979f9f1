"""The Pandel photon arrival-time model: closed forms, jitter-convolved tables, MPE likelihood.

Physics (Ahrens et al., NIM A 524 (2004) 169; van Eijndhoven et al., Astropart. Phys. 28
(2007) 456). A photon emitted by a muon at the Cherenkov angle reaches a DOM at perpendicular
distance ``rho`` (m) with a delay ``t`` (ns) after the direct-light time ``t_geo`` distributed as

    p(t) = rate**xi * t**(xi - 1) * exp(-rate * t) / Gamma(xi),   t > 0,

with shape ``xi = d / lambda_s`` (``d = rho / sin(theta_c)`` the photon path, ``lambda_s`` the
effective scattering length) and ``rate = 1/tau + c_ice / lambda_a``. Gaussian jitter (sigma ns)
is folded in numerically, which keeps negative residuals finite. The hot path reads log p and
log S (survival) from a table over (sqrt(xi), asinh(t / T_SCALE_NS)) by bilinear interpolation,
with tabulated partial derivatives, so one vectorised pass gives the likelihood and its gradient.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special

F64 = npt.NDArray[np.float64]

C_VACUUM_M_PER_NS = 0.299792458

T_SCALE_NS = 20.0  # t-axis of the tables is uniform in asinh(t / T_SCALE_NS)


@dataclass(frozen=True)
class IceModel:
    """Homogeneous ice for the Pandel model (IceCube's "H2" defaults); lengths in m, times in ns."""

    tau_ns: float = 557.0
    scattering_m: float = 33.3
    absorption_m: float = 98.0
    n_phase: float = 1.3195
    n_group: float = 1.35634
    jitter_ns: float = 15.0

    @property
    def theta_c_rad(self) -> float:
        """Cherenkov angle, acos(1 / n_phase)."""
        return math.acos(1.0 / self.n_phase)

    @property
    def rate_per_ns(self) -> float:
        """Pandel rate 1/tau + c_ice / lambda_a (1/ns), c_ice the group speed of light in ice."""
        return 1.0 / self.tau_ns + C_VACUUM_M_PER_NS / self.n_group / self.absorption_m

    @property
    def k_perp(self) -> float:
        """Dimensionless n_g / sin(theta_c) - 1 / tan(theta_c): t_geo = t0 + (l + k_perp * rho) / c."""
        th = self.theta_c_rad
        return self.n_group / math.sin(th) - 1.0 / math.tan(th)

    @property
    def inv_sl(self) -> float:
        """1 / (sin(theta_c) lambda_s) in 1/m: xi = rho * inv_sl."""
        return 1.0 / (math.sin(self.theta_c_rad) * self.scattering_m)


H2 = IceModel()


def t_geo_ns(
    vertex_m: F64, t0_ns: float, direction: F64, dom_m: F64, ice: IceModel = H2
) -> tuple[F64, F64]:
    """Direct-light arrival time (ns) and perpendicular distance (m) at DOMs ``dom_m`` (n, 3).

    ``direction`` is the unit vector the muon travels along; the muon passes ``vertex_m`` at t0.
    """
    v = np.asarray(dom_m, dtype=np.float64) - np.asarray(vertex_m, dtype=np.float64)
    along = v @ direction
    rho = np.sqrt(np.maximum(np.einsum("ij,ij->i", v, v) - along**2, 0.0))
    return t0_ns + (along + ice.k_perp * rho) / C_VACUUM_M_PER_NS, rho


def pandel_pdf(t_ns: npt.ArrayLike, xi: npt.ArrayLike, rate_per_ns: float) -> F64:
    """The plain (unconvolved) Pandel pdf in 1/ns: a Gamma(xi, rate) density, 0 for t <= 0."""
    t = np.asarray(t_ns, dtype=np.float64)
    x = np.asarray(xi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = x * math.log(rate_per_ns) + (x - 1) * np.log(t) - rate_per_ns * t - special.gammaln(x)
    return np.where(t > 0, np.exp(logp), 0.0)


def convolved_pdf_closed_form(
    t_ns: npt.ArrayLike, xi: npt.ArrayLike, rate_per_ns: float, sigma_ns: float
) -> F64:
    """Gaussian-convolved Pandel pdf (1/ns) in closed form, via the parabolic cylinder function.

    p(t) = rate^xi sigma^(xi-1) / sqrt(2 pi) * exp(-t^2 / (2 sigma^2) + eta^2 / 4) * D_{-xi}(eta),
    eta = rate * sigma - t / sigma. Accurate while exp(eta^2 / 4) does not overflow (t <~ 25 sigma);
    used to check the tables, not in the hot path.
    """
    t = np.asarray(t_ns, dtype=np.float64)
    x = np.asarray(xi, dtype=np.float64)
    eta = rate_per_ns * sigma_ns - t / sigma_ns
    d, _ = special.pbdv(-x, eta)
    log_pref = x * math.log(rate_per_ns * sigma_ns) - math.log(sigma_ns) - 0.5 * math.log(2 * math.pi)
    return np.asarray(np.exp(log_pref - t**2 / (2 * sigma_ns**2) + eta**2 / 4) * d, dtype=np.float64)


@dataclass(frozen=True)
class PandelTable:
    """log p and log S of the jitter-convolved Pandel model on a (sqrt(xi), asinh(t/T)) grid.

    ``values[i, j, :]`` = (log p, log S, d log p/du, d log S/du, d log p/dv, d log S/dv) with
    v = sqrt(xi), u = asinh(t / T_SCALE_NS); p in 1/ns.
    """

    v0: float
    dv: float
    nv: int
    u0: float
    du: float
    nu: int
    sigma_ns: float
    values: F64  # (nv * nu, 6)

    @property
    def t_min_ns(self) -> float:
        return T_SCALE_NS * math.sinh(self.u0)

    @property
    def t_max_ns(self) -> float:
        return T_SCALE_NS * math.sinh(self.u0 + (self.nu - 1) * self.du)

    @property
    def v_max(self) -> float:
        return self.v0 + (self.nv - 1) * self.dv

    def lookup(self, v: F64, t_ns: F64) -> tuple[F64, F64, F64, F64, F64, F64]:
        """Bilinear lookup: (log p, log S, dlogp/dt, dlogS/dt, dlogp/dv, dlogS/dv) at (v, t).

        Outside the grid: clamped in v (zero v-derivative); for t above the grid the values
        are clamped; for t below it log p continues as a Gaussian tail and log S = 0.
        """
        fi = np.clip((v - self.v0) / self.dv, 0.0, self.nv - 1.000001)
        i = fi.astype(np.int64)
        wi = fi - i
        u = np.arcsinh(t_ns / T_SCALE_NS)
        fj = np.clip((u - self.u0) / self.du, 0.0, self.nu - 1.000001)
        j = fj.astype(np.int64)
        wj = fj - j
        k = i * self.nu + j
        tab = self.values
        a = tab[k]
        b = tab[k + 1]
        c = tab[k + self.nu]
        d = tab[k + self.nu + 1]
        wj_ = wj[:, None]
        wi_ = wi[:, None]
        val = (1 - wi_) * ((1 - wj_) * a + wj_ * b) + wi_ * ((1 - wj_) * c + wj_ * d)
        dudt = 1.0 / np.sqrt(t_ns**2 + T_SCALE_NS**2)
        logp = val[:, 0]
        logs = val[:, 1]
        dlogp_dt = val[:, 2] * dudt
        dlogs_dt = val[:, 3] * dudt
        inside_v = (v >= self.v0) & (v <= self.v_max)
        dlogp_dv = np.where(inside_v, val[:, 4], 0.0)
        dlogs_dv = np.where(inside_v, val[:, 5], 0.0)
        low = t_ns < self.t_min_ns
        if low.any():
            tl = self.t_min_ns
            s2 = self.sigma_ns**2
            logp = np.where(low, logp - (t_ns**2 - tl**2) / (2 * s2), logp)
            dlogp_dt = np.where(low, -t_ns / s2, dlogp_dt)
            dlogs_dt = np.where(low, 0.0, dlogs_dt)
        high = u > self.u0 + (self.nu - 1) * self.du
        if high.any():
            dlogp_dt = np.where(high, 0.0, dlogp_dt)
            dlogs_dt = np.where(high, 0.0, dlogs_dt)
        return logp, logs, dlogp_dt, dlogs_dt, dlogp_dv, dlogs_dv


@functools.lru_cache(maxsize=64)
def build_table(
    rate_per_ns: float,
    sigma_ns: float,
    xi_max: float = 20.0,
    nv: int = 72,
    t_lo_sigma: float = 8.0,
    t_max_ns: float = 12000.0,
    nu: int = 520,
) -> PandelTable:
    """Tabulate the jitter-convolved Pandel log pdf and log survival (once per process and rate, ~50 ms).

    Up to ``t_near`` (40 jitter widths, at least 400 ns) the Gamma delay is discretised into bins of
    exact probability mass (regularised incomplete gamma) on a uniform grid finer than the jitter,
    so the t^(xi-1) singularity at 0 for xi < 1 costs no accuracy, and the masses are smeared by the
    Gaussian exactly. Beyond it the jitter changes the smooth density by < 1% (about
    (sigma * rate)^2 / 2 relative) and the plain Pandel density and survival are used.
    """
    v_grid = np.linspace(0.0, math.sqrt(xi_max), nv)
    u0 = math.asinh(-t_lo_sigma * sigma_ns / T_SCALE_NS)
    u1 = math.asinh(t_max_ns / T_SCALE_NS)
    u_grid = np.linspace(u0, u1, nu)
    t_grid = T_SCALE_NS * np.sinh(u_grid)
    xi = v_grid**2
    xi_pos = np.maximum(xi, 1e-12)[:, None]
    # near part: exact smearing of fine bins
    h = min(1.0, sigma_ns / 8.0)
    t_near = max(40.0 * sigma_ns, 400.0)
    # geometric bins below h keep the mass of the t^(xi-1) spike at the right place
    edges = np.concatenate([[0.0], h * np.logspace(-5, 0, 30)[:-1], np.arange(h, t_near + 12.0 * sigma_ns + h, h)])
    cdf = special.gammainc(xi_pos, rate_per_ns * edges[None, :])
    cdf[xi == 0.0] = 1.0
    mass = np.diff(cdf, axis=1)
    tail = 1.0 - cdf[:, -1]
    centre = 0.5 * (edges[:-1] + edges[1:])
    near = t_grid <= t_near
    z = (t_grid[near][:, None] - centre[None, :]) / sigma_ns
    dens = np.exp(-0.5 * z * z) / (sigma_ns * math.sqrt(2 * math.pi))
    surv = 0.5 * special.erfc(z / math.sqrt(2))
    p = np.empty((nv, nu))
    s = np.empty((nv, nu))
    p[:, near] = mass @ dens.T
    s[:, near] = mass @ surv.T + tail[:, None]
    # far part: the plain Pandel density and survival
    far_t = t_grid[~near][None, :]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        logp_far = (xi_pos * math.log(rate_per_ns) + (xi_pos - 1) * np.log(far_t) - rate_per_ns * far_t
                    - special.gammaln(xi_pos))
    p[:, ~near] = np.exp(logp_far)
    s[:, ~near] = special.gammaincc(xi_pos, rate_per_ns * far_t)
    if (xi == 0.0).any():  # exact Gaussian for the point mass
        i0 = np.flatnonzero(xi == 0.0)
        p[i0] = np.exp(-0.5 * (t_grid / sigma_ns) ** 2) / (sigma_ns * math.sqrt(2 * math.pi))
        s[i0] = 0.5 * special.erfc(t_grid / (sigma_ns * math.sqrt(2)))
    logp = np.log(np.maximum(p, 1e-300))
    logs = np.minimum.accumulate(np.log(np.clip(s, 1e-300, 1.0)), axis=1)
    dv = float(v_grid[1] - v_grid[0])
    du = float(u_grid[1] - u_grid[0])
    dlogp_du = np.gradient(logp, du, axis=1)
    dlogs_du = np.gradient(logs, du, axis=1)
    dlogp_dv = np.gradient(logp, dv, axis=0)
    dlogs_dv = np.gradient(logs, dv, axis=0)
    values = np.stack([logp, logs, dlogp_du, dlogs_du, dlogp_dv, dlogs_dv], axis=-1).reshape(nv * nu, 6)
    values = np.ascontiguousarray(values)
    values.setflags(write=False)
    return PandelTable(0.0, dv, nv, u0, du, nu, sigma_ns, values)


def table_for(ice: IceModel) -> PandelTable:
    """The (cached) table for an ice model."""
    return build_table(round(ice.rate_per_ns, 12), float(ice.jitter_ns))


@dataclass(frozen=True)
class DirectionFrame:
    """Per-direction projections of the DOMs (relative to the reference point), in m.

    ``along`` is the coordinate along the muon's travel direction, ``p1``/``p2`` the
    coordinates in the perpendicular plane along ``e1``/``e2``.
    """

    e1: F64
    e2: F64
    along: F64
    p1: F64
    p2: F64
    along_ns: F64  # along / c (ns)


def travel_direction(zenith_rad: float, azimuth_rad: float) -> F64:
    """Unit vector the muon travels along: minus the (zenith, azimuth) it comes from."""
    s = math.sin(zenith_rad)
    return -np.array([s * math.cos(azimuth_rad), s * math.sin(azimuth_rad), math.cos(zenith_rad)])


def perpendicular_basis(direction: F64) -> tuple[F64, F64]:
    """Unit vectors (e1, e2) perpendicular to ``direction``: e1 is horizontal unless the track is
    vertical (then +x); e2 completes a right-handed frame."""
    e1 = np.cross([0.0, 0.0, 1.0], direction)
    n = float(np.linalg.norm(e1))
    e1 = np.array([1.0, 0.0, 0.0]) if n < 1e-9 else e1 / n
    return e1, np.cross(direction, e1)


def direction_frame(zenith_rad: float, azimuth_rad: float, dom_rel_m: F64) -> DirectionFrame:
    """Project DOM positions (relative to the reference point) on the track frame."""
    d = travel_direction(zenith_rad, azimuth_rad)
    e1, e2 = perpendicular_basis(d)
    # explicit products, not matmul: BLAS threads would oversubscribe the CPUs of a worker pool
    x, y, z = dom_rel_m[:, 0], dom_rel_m[:, 1], dom_rel_m[:, 2]
    along = x * d[0] + y * d[1] + z * d[2]
    p1 = x * e1[0] + y * e1[1] + z * e1[2]
    p2 = x * e2[0] + y * e2[1] + z * e2[2]
    return DirectionFrame(e1, e2, along, p1, p2, along * (1.0 / C_VACUUM_M_PER_NS))


@dataclass(frozen=True)
class MPEData:
    """Per-DOM inputs of the MPE likelihood: first-pulse time (ns), charge (PE) and the DOM's ice.

    ``inv_sl`` is 1 / (sin(theta_c) lambda_p) in 1/m (xi = rho * inv_sl) and ``cell_offset`` the
    start of the DOM's likelihood table in the stacked cell table (one table per absorption rate).
    """

    t1_ns: F64
    n_pe: F64  # >= 1
    log_n: F64
    n_minus_1: F64
    inv_sl: F64
    cell_offset: npt.NDArray[np.intp]


def mpe_data(
    t1_ns: F64, charge_pe: F64, inv_sl: npt.ArrayLike | None = None,
    cell_offset: npt.ArrayLike | None = None,
) -> MPEData:
    """Per-DOM MPE inputs; without ``inv_sl`` / ``cell_offset`` every DOM has H2 ice and table 0."""
    t1 = np.asarray(t1_ns, dtype=np.float64)
    n = np.maximum(np.asarray(charge_pe, dtype=np.float64), 1.0)
    isl = np.broadcast_to(np.asarray(H2.inv_sl if inv_sl is None else inv_sl, dtype=np.float64), t1.shape).copy()
    off = np.broadcast_to(np.asarray(0 if cell_offset is None else cell_offset, dtype=np.intp), t1.shape).copy()
    return MPEData(t1, n, np.log(n), n - 1.0, isl, off)


SOFT_RHO_M = 1.0  # softening of the perpendicular distance, keeps the gradient finite on a DOM


@dataclass(frozen=True)
class CellTable:
    """Per-cell bilinear coefficients of (log p, log S): f = c0 + c1 wi + c2 wj + c3 wi wj.

    ``coef[k]`` holds the 4 coefficients of log p then the 4 of log S for cell k = i * (nu-1) + j,
    so one gather per DOM gives the value and its exact gradient within the cell.
    """

    table: PandelTable
    coef: F64  # ((nv - 1) * (nu - 1), 8)


def _cells(table: PandelTable) -> CellTable:
    vals = table.values.reshape(table.nv, table.nu, 6)[:, :, :2]
    f00 = vals[:-1, :-1]
    f10 = vals[1:, :-1]
    f01 = vals[:-1, 1:]
    f11 = vals[1:, 1:]
    c = np.stack([f00, f10 - f00, f01 - f00, f11 - f10 - f01 + f00], axis=-2)  # (nv-1, nu-1, 4, 2)
    coef = np.ascontiguousarray(np.moveaxis(c, -1, -2).reshape(-1, 8))
    coef.setflags(write=False)
    return CellTable(table, coef)


@functools.lru_cache(maxsize=64)
def _cell_table(rate_per_ns: float, sigma_ns: float) -> CellTable:
    return _cells(build_table(rate_per_ns, sigma_ns))


def cell_table_for(ice: IceModel) -> CellTable:
    """The (cached) per-cell table for an ice model."""
    return _cell_table(round(ice.rate_per_ns, 12), float(ice.jitter_ns))


@functools.lru_cache(maxsize=8)
def stacked_cell_table(rates_per_ns: tuple[float, ...], sigma_ns: float) -> CellTable:
    """Cell tables for several absorption rates stacked in one array (same grid); table k starts
    at row ``k * cells_per_table(table)``."""
    parts = [_cell_table(round(r, 12), sigma_ns) for r in rates_per_ns]
    coef = np.ascontiguousarray(np.concatenate([c.coef for c in parts], axis=0))
    coef.setflags(write=False)
    return CellTable(parts[0].table, coef)


def cells_per_table(table: PandelTable) -> int:
    """Number of bilinear cells in one table."""
    return (table.nv - 1) * (table.nu - 1)


def mpe_nll_and_grad(
    params: F64,
    frame: DirectionFrame,
    data: MPEData,
    cells: CellTable,
    ice: IceModel,
    log_floor: float,
) -> tuple[float, F64]:
    """MPE negative log-likelihood and gradient in (a m, b m, t0 ns), in one vectorised pass.

    The track passes the reference point shifted by a*e1 + b*e2 at t0. Per DOM
    L = N p(t1) S(t1)^(N-1) + floor (the noise floor, a density in 1/ns); p and S are read
    from the jitter-convolved table by bilinear interpolation in (sqrt(xi), asinh(t/T)).
    Below the table's t range log p continues as a Gaussian tail (log S = 0); above it and
    beyond its xi range the values are held constant.
    """
    tab = cells.table
    a, b, t0 = float(params[0]), float(params[1]), float(params[2])
    u1 = frame.p1 - a
    u2 = frame.p2 - b
    rho = np.sqrt(u1 * u1 + u2 * u2 + SOFT_RHO_M * SOFT_RHO_M)
    k_c = ice.k_perp / C_VACUUM_M_PER_NS
    tres = data.t1_ns - frame.along_ns - t0 - k_c * rho
    v = np.sqrt(rho * data.inv_sl)
    # cell indices and in-cell weights
    fi = v * (1.0 / tab.dv)
    fi_c = np.minimum(fi, tab.nv - 1.000001)
    i = fi_c.astype(np.intp)
    wi = fi_c - i
    u = np.arcsinh(tres * (1.0 / T_SCALE_NS))
    fj = (u - tab.u0) * (1.0 / tab.du)
    fj_c = np.clip(fj, 0.0, tab.nu - 1.000001)
    j = fj_c.astype(np.intp)
    wj = fj_c - j
    g = cells.coef[data.cell_offset + i * (tab.nu - 1) + j]
    h = g[:, :4] + data.n_minus_1[:, None] * g[:, 4:]
    h3wj = h[:, 3] * wj
    big_a = data.log_n + h[:, 0] + (h[:, 1] + h3wj) * wi + h[:, 2] * wj
    da_dwi = np.where(fi < tab.nv - 1.000001, h[:, 1] + h3wj, 0.0)
    da_dwj = np.where(fj == fj_c, h[:, 2] + h[:, 3] * wi, 0.0)
    da_dt = da_dwj * ((1.0 / tab.du) / np.sqrt(tres * tres + T_SCALE_NS * T_SCALE_NS))
    low = fj < 0.0
    if low.any():
        tl = tab.t_min_ns
        s2 = tab.sigma_ns * tab.sigma_ns
        big_a = np.where(low, big_a - (tres * tres - tl * tl) / (2.0 * s2), big_a)
        da_dt = np.where(low, -tres / s2, da_dt)
    f = np.logaddexp(big_a, log_floor)
    w = np.exp(big_a - f)
    # dA/drho: through t_res (dt/drho = -k_c) and v (dv/drho = v / (2 rho))
    g_rho = w * (da_dwi * (v / (2.0 * tab.dv * rho)) - k_c * da_dt)
    g_rho_over = g_rho / rho
    grad = np.array([
        float((g_rho_over * u1).sum()),
        float((g_rho_over * u2).sum()),
        float((w * da_dt).sum()),
    ])
    return -float(f.sum()), grad



def bfgs_minimise(
    fun: Callable[[F64], tuple[float, F64]],
    x0: F64,
    lower: F64,
    upper: F64,
    scale: F64,
    max_iter: int = 50,
    f_tol: float = 1e-3,
) -> tuple[F64, float, int]:
    """Small box-bounded BFGS with Armijo backtracking, for the 3-parameter vertex fit.

    Written out with elementwise numpy (no matmul/BLAS): scipy's L-BFGS-B calls BLAS, whose
    spinning threads in every worker process of a pool slowed a scan down ten-fold.
    ``scale`` is the typical size of each parameter (sets the first step). Stops when an
    iteration gains less than ``f_tol`` (absolute) twice in a row. Returns (x, f, evaluations).
    """
    x = np.clip(np.asarray(x0, dtype=np.float64), lower, upper)
    f, g = fun(x)
    n_eval = 1
    h_inv = np.diag(scale * scale / max(float(np.sqrt((g * g * scale * scale).sum())), 1e-12))
    small_gains = 0
    for _ in range(max_iter):
        p = -(h_inv * g[None, :]).sum(axis=1)
        slope = float((g * p).sum())
        if not slope < 0.0:  # lost descent: restart from a scaled gradient step
            h_inv = np.diag(scale * scale / max(float(np.sqrt((g * g * scale * scale).sum())), 1e-12))
            p = -(h_inv * g[None, :]).sum(axis=1)
            slope = float((g * p).sum())
            if not slope < 0.0:
                break
        alpha = 1.0
        accepted = False
        for _ in range(20):
            x_new = np.clip(x + alpha * p, lower, upper)
            f_new, g_new = fun(x_new)
            n_eval += 1
            if f_new <= f + 1e-4 * float((g * (x_new - x)).sum()) and math.isfinite(f_new):
                accepted = True
                break
            alpha *= 0.3
        if not accepted:
            break
        s = x_new - x
        y = g_new - g
        sy = float((s * y).sum())
        gain = f - f_new
        x, f, g = x_new, f_new, g_new
        if sy > 1e-12:
            rho = 1.0 / sy
            hy = (h_inv * y[None, :]).sum(axis=1)
            yhy = float((y * hy).sum())
            h_inv = (h_inv - rho * (np.outer(s, hy) + np.outer(hy, s))
                     + (rho * rho * yhy + rho) * np.outer(s, s))
        small_gains = small_gains + 1 if gain < f_tol else 0
        if small_gains >= 2:
            break
    return x, f, n_eval

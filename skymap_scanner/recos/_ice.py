"""Depth-dependent South Pole ice for the Pandel fit: per-DOM Pandel parameters from the ice table.

The shipped table (``data/ice_transparency.csv``, arXiv:1301.5361) gives the effective scattering
length ``lambda_e`` and the absorption length ``lambda_a`` (m) every 10 m of depth; IceCube
z = 1948.07 m - depth. For each DOM the two lengths are averaged as inverse lengths (i.e. as
scattering / absorption *rates*) over a window of +-``window_m`` around its depth: the light a DOM
sees has crossed tens of metres of ice, and a rate average is what attenuation sums over a path.

Pandel parameters follow from the lengths by the photon Monte Carlo of :mod:`._icemc` (HG
scattering, g = 0.9), whose Pandel fit gives the scaling laws

    lambda_p = LAMBDA_P_PER_EFF * lambda_e,     tau = TAU_PER_EFF * lambda_e / c_group,

with absorption entering the rate as usual: rate = 1 / tau + c_group / lambda_a. The constants were
derived at lambda_a / lambda_e = 3.4, the table's median (its 10-90% range is 3.1-3.7; the
scaling moves by < 4% over it). ``python benchmarks/derive_pandel_ice.py`` re-derives them.
Nothing here was fitted to events. Pure; the table is read once through importlib.resources.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

from . import _icemc

F64 = npt.NDArray[np.float64]

C_GROUP_M_PER_NS = _icemc.C_VACUUM_M_PER_NS / _icemc.N_GROUP
ICE_SURFACE_Z_M = 1948.07  # IceCube z = 1948.07 m - depth
LAMBDA_P_PER_EFF = 2.20  # Pandel lambda / effective scattering length (photon MC, g = 0.9)
TAU_PER_EFF = 4.15  # Pandel tau * c_group / effective scattering length (photon MC, g = 0.9)
DEFAULT_WINDOW_M = 30.0


@dataclass(frozen=True)
class IceTable:
    """The depth table: depth (m below the surface, ascending), lambda_e and lambda_a (m)."""

    depth_m: F64
    scattering_eff_m: F64
    absorption_m: F64

    def lengths_at_z(self, z_m: npt.ArrayLike, window_m: float = DEFAULT_WINDOW_M) -> tuple[F64, F64]:
        """(lambda_e, lambda_a) in m at detector depths ``z_m``, rate-averaged over +-``window_m``.

        Outside the table the nearest row holds (``np.interp`` clamps).
        """
        depth = ICE_SURFACE_Z_M - np.asarray(z_m, dtype=np.float64)
        offsets = np.linspace(-window_m, window_m, 13) if window_m > 0 else np.zeros(1)
        d = depth[..., None] + offsets
        inv_e = np.interp(d, self.depth_m, 1.0 / self.scattering_eff_m).mean(axis=-1)
        inv_a = np.interp(d, self.depth_m, 1.0 / self.absorption_m).mean(axis=-1)
        return 1.0 / inv_e, 1.0 / inv_a


@functools.lru_cache(maxsize=1)
def ice_table() -> IceTable:
    """The shipped South Pole ice table (read once)."""
    text = resources.files("skymap_scanner.data").joinpath("ice_transparency.csv").read_text()
    rows = np.loadtxt(text.splitlines()[1:], delimiter=",", dtype=np.float64, ndmin=2)
    order = np.argsort(rows[:, 0])
    rows = rows[order]
    for col in (rows[:, 1], rows[:, 2]):
        if not (np.all(np.isfinite(col)) and np.all(col > 0)):
            raise ValueError("ice_transparency.csv: lengths must be finite and > 0")
    return IceTable(rows[:, 0], rows[:, 1], rows[:, 2])


@dataclass(frozen=True)
class PandelIce:
    """Per-DOM Pandel parameters: ``inv_sl`` = 1 / (sin(theta_c) lambda_p) in 1/m, ``rate_per_ns``."""

    inv_sl: F64
    rate_per_ns: F64


def pandel_from_lengths(scattering_eff_m: npt.ArrayLike, absorption_m: npt.ArrayLike) -> PandelIce:
    """Pandel parameters for effective scattering / absorption lengths (m), by the MC scaling laws."""
    le = np.asarray(scattering_eff_m, dtype=np.float64)
    la = np.asarray(absorption_m, dtype=np.float64)
    lam_p = LAMBDA_P_PER_EFF * le
    tau_ns = TAU_PER_EFF * le / C_GROUP_M_PER_NS
    rate = 1.0 / tau_ns + C_GROUP_M_PER_NS / la
    return PandelIce(1.0 / (math.sin(_icemc.THETA_C_RAD) * lam_p), rate)


def depth_pandel(z_m: npt.ArrayLike, window_m: float = DEFAULT_WINDOW_M) -> PandelIce:
    """Per-DOM Pandel parameters at detector depths ``z_m`` (m) from the shipped ice table."""
    le, la = ice_table().lengths_at_z(z_m, window_m)
    return pandel_from_lengths(le, la)


def snap_rates(rate_per_ns: F64, log_step: float) -> tuple[F64, npt.NDArray[np.intp]]:
    """Group per-DOM rates on a log grid of step ``log_step``: (distinct rates, index per DOM).

    One likelihood table is built per distinct rate; a step of 0.04 keeps the rate within 2%.
    """
    k = np.round(np.log(rate_per_ns) / log_step).astype(np.int64)
    uniq, inv = np.unique(k, return_inverse=True)
    return np.exp(uniq * log_step), inv.reshape(-1).astype(np.intp)

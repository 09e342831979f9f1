"""IceCube-86 in-ice geometry: DOM positions by (string, om).

Positions are in metres in IceCube coordinates (x = grid East, y = grid North,
z up, origin at the detector centre). The table ships as package data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import numpy.typing as npt

N_STRINGS = 86
N_OMS = 60


@dataclass(frozen=True)
class Geometry:
    """DOM positions indexed by ``[string - 1, om - 1]`` (NaN where no DOM)."""

    name: str
    x_m: npt.NDArray[np.float64]  # shape (86, 60)
    y_m: npt.NDArray[np.float64]
    z_m: npt.NDArray[np.float64]
    rde: npt.NDArray[np.float64]  # relative quantum efficiency

    def has_dom(self, string: npt.ArrayLike, om: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """True where (string, om) is a DOM of this geometry."""
        s = np.asarray(string)
        o = np.asarray(om)
        ok = (s >= 1) & (s <= N_STRINGS) & (o >= 1) & (o <= N_OMS)
        out = np.zeros(s.shape, dtype=bool)
        out[ok] = np.isfinite(self.x_m[s[ok] - 1, o[ok] - 1])
        return out

    def positions(
        self, string: npt.ArrayLike, om: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(x, y, z) in m of each (string, om); caller must check :meth:`has_dom` first."""
        s = np.asarray(string) - 1
        o = np.asarray(om) - 1
        return self.x_m[s, o], self.y_m[s, o], self.z_m[s, o]


@functools.cache
def icecube86() -> Geometry:
    """The IceCube-86 in-ice geometry (5160 DOMs), read once per process."""
    text = resources.files("skymap_scanner.data").joinpath("icecube86_inice_geometry.csv").read_text()
    table = np.loadtxt(text.splitlines(), delimiter=",", skiprows=1)
    string = table[:, 1].astype(int)
    om = table[:, 2].astype(int)
    arrays = []
    for col in (3, 4, 5, 6):
        a = np.full((N_STRINGS, N_OMS), np.nan)
        a[string - 1, om - 1] = table[:, col]
        a.setflags(write=False)
        arrays.append(a)
    return Geometry("icecube86", *arrays)


GEOMETRIES = {"icecube86": icecube86}


def get_geometry(name: str) -> Geometry:
    """Look up a geometry by name; raises KeyError for unknown names."""
    return GEOMETRIES[name]()

"""Synthetic scans with a known analytic llh, for tests and benchmarks.

The llh is a split 2-D Gaussian in local coordinates around (ra0, dec0):
x = wrap(ra - ra0) * cos(dec) (east), y = dec - dec0 (north), all deg, and
llh = llh0 + x**2 / (2 sx**2) + y**2 / (2 sy**2) with sy = sy_plus for y > 0 and sy_minus below.
With ``isotropic=True`` it is llh0 + d**2 / (2 sx**2) with d the angular distance from the centre.
The scan refines like the server: nside progression with each finer nside covering a disc
around the centre, so the finest pixels cover the regions of interest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import numpy.typing as npt

from skymap_scanner.collector import RESULT_DTYPE
from skymap_scanner.results import RESULT_VERSION


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """Analytic llh around (ra0, dec0) deg with widths in deg (see module docstring)."""

    ra0: float
    dec0: float
    sx: float = 1.0
    sy_plus: float = 1.0
    sy_minus: float = 1.0
    isotropic: bool = False
    llh0: float = 1000.0

    def __call__(self, ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> npt.NDArray[np.float64]:
        ra = np.asarray(ra_deg, dtype=float)
        dec = np.asarray(dec_deg, dtype=float)
        if self.isotropic:
            v0 = hp.ang2vec(np.radians(90.0 - self.dec0), np.radians(self.ra0))
            v = hp.ang2vec(np.radians(90.0 - dec), np.radians(ra))
            d = np.degrees(np.arccos(np.clip(v @ v0, -1.0, 1.0)))
            return self.llh0 + d**2 / (2.0 * self.sx**2)
        x = (np.mod(ra - self.ra0 + 180.0, 360.0) - 180.0) * np.cos(np.radians(dec))
        y = dec - self.dec0
        sy = np.where(y > 0, self.sy_plus, self.sy_minus)
        return self.llh0 + x**2 / (2.0 * self.sx**2) + y**2 / (2.0 * sy**2)


def snap_to_pixel(ra_deg: float, dec_deg: float, nside: int) -> tuple[float, float]:
    """Centre (RA, Dec) deg of the RING pixel of ``nside`` containing the point."""
    pix = hp.ang2pix(nside, np.radians(90.0 - dec_deg), np.radians(ra_deg))
    theta, phi = hp.pix2ang(nside, pix)
    return float(np.degrees(phi)), float(90.0 - np.degrees(theta))


def gaussian_scan(
    g: Gaussian,
    nsides: Sequence[int] = (8, 64, 512),
    radii_deg: Sequence[float] = (180.0, 15.0, 5.0),
) -> dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]:
    """``{nside: (ring_index, llh)}``: full sky at the first nside, then discs of ``radii_deg``."""
    out = {}
    vec = hp.ang2vec(np.radians(90.0 - g.dec0), np.radians(g.ra0))
    for nside, radius in zip(nsides, radii_deg, strict=True):
        if radius >= 180.0:
            idx = np.arange(hp.nside2npix(nside), dtype=np.int64)
        else:
            idx = np.sort(hp.query_disc(nside, vec, np.radians(radius), inclusive=True)).astype(np.int64)
        theta, phi = hp.pix2ang(nside, idx)
        out[nside] = (idx, g(np.degrees(phi), 90.0 - np.degrees(theta)))
    return out


def write_result_npz(
    path: Path,
    arrays: dict[int, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    *,
    header: dict[str, Any] | None = None,
) -> Path:
    """Write ``arrays`` as a result .npz (fields index, llh, E_in, E_tot, X, Y, Z, T; optional header rows)."""
    data: dict[str, Any] = {}
    for nside, (idx, llh) in arrays.items():
        a = np.zeros(idx.size, dtype=RESULT_DTYPE)
        a["index"], a["llh"] = idx, llh
        data[f"nside-{nside}"] = a
    if header is not None:
        cols = [("nside", "i8"), ("complete", "?"), ("run_id", "i8"), ("event_id", "i8"),
                ("event_type", "U16"), ("mjd", "f8"), ("is_real_event", "?"), ("version", "i8")]
        rows = [
            (n, header.get("complete", True), header["run_id"], header["event_id"], header["event_type"],
             header["mjd"], header.get("is_real_event", False), RESULT_VERSION)
            for n in arrays
        ]
        data["header"] = np.array(rows, dtype=cols)
    with open(path, "wb") as f:
        np.savez(f, **data)
    return Path(path)

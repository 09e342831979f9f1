"""Probability map and HEALPix FITS files (multi-order NUNIQ, and single-resolution llh).

The probability density is P proportional to exp(-(llh - llh_min)) per steradian, normalised so that
sum(P * pixel_area) = 1 over the sky; never-scanned sky gets P = 0. The multi-order file follows the
HEALPix multi-order convention used by ligo.skymap and GCN (columns UNIQ, PROBDENSITY [sr-1];
ORDERING = NUNIQ, COORDSYS = C). Building the HDUs is pure; only :func:`write_hdul` does I/O.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from skymap_scanner import __version__
from skymap_scanner.products.multires import MultiResMap
from skymap_scanner.products.regions import BestFit
from skymap_scanner.products.scan import EventInfo
from skymap_scanner.products.summary import mjd_to_iso
from skymap_scanner.utils.atomic import atomic_write


def probability_density(m: MultiResMap, llh_min: float | None = None) -> npt.NDArray[np.float64]:
    """Per-leaf probability density (sr-1): exp(-Delta-llh), normalised over the sky."""
    llh_min = m.llh_min if llh_min is None else llh_min
    w = np.exp(-(m.llh - llh_min))
    w = np.where(np.isfinite(w), w, 0.0)
    total = float(np.sum(w * m.area_sr))
    if not total > 0.0:
        raise ValueError("probability map is zero everywhere (no finite llh)")
    return w / total


@dataclasses.dataclass(frozen=True)
class Meta:
    """What goes into the FITS headers (None values are left out)."""

    event: EventInfo
    fit: BestFit
    reco: str | None = None
    nsides: tuple[int, ...] = ()


# One table drives the metadata keys of both FITS files: (FITS key, comment, getter).
FITS_META: tuple[tuple[str, str, Callable[[Meta], Any]], ...] = (
    ("OBJECT", "Unique identifier for this event",
     lambda x: None if x.event.run_id is None and x.event.event_id is None
     else f"IceCube-{x.event.run_id}-{x.event.event_id}"),
    ("RUNID", "IceCube run number", lambda x: x.event.run_id),
    ("EVENTID", "IceCube event number", lambda x: x.event.event_id),
    ("EVTTYPE", "Alert stream / event type", lambda x: x.event.event_type),
    ("REALEVT", "Real (not simulated) event", lambda x: x.event.is_real_event),
    ("DATE-OBS", "UTC date of the event", lambda x: mjd_to_iso(x.event.mjd)),
    ("MJD-OBS", "Modified Julian date of the event (UTC)", lambda x: x.event.mjd),
    ("RA", "[deg] Best-fit right ascension (J2000)", lambda x: x.fit.ra_deg),
    ("DEC", "[deg] Best-fit declination (J2000)", lambda x: x.fit.dec_deg),
    ("LLHMIN", "Lowest negative log-likelihood of the scan", lambda x: x.fit.llh),
    ("RECO", "Reconstruction used for the scan", lambda x: x.reco),
    ("NSIDES", "Scanned nside progression", lambda x: " ".join(map(str, x.nsides)) or None),
    ("CREATOR", "Program that created this file", lambda x: "skymap_scanner"),
    ("SWVER", "Version of the program", lambda x: __version__),
    ("DATE", "UTC date of file creation",
     lambda x: datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")),
)


def _add_meta(header: fits.Header, meta: Meta) -> None:
    for key, comment, get in FITS_META:
        value = get(meta)
        if value is not None:
            header[key] = (value, comment)


def moc_hdul(m: MultiResMap, meta: Meta) -> fits.HDUList:
    """Multi-order probability map (rows sorted by UNIQ)."""
    uniq = m.uniq
    prob = probability_density(m, meta.fit.llh)
    srt = np.argsort(uniq)
    cols = [
        fits.Column(name="UNIQ", format="K", array=uniq[srt]),
        fits.Column(name="PROBDENSITY", format="D", unit="sr-1", array=prob[srt]),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="PROBDENSITY")
    h = hdu.header
    h["PIXTYPE"] = ("HEALPIX", "HEALPIX pixelisation")
    h["ORDERING"] = ("NUNIQ", "Pixel ordering scheme: RING, NESTED, or NUNIQ")
    h["COORDSYS"] = ("C", "Ecliptic, Galactic or Celestial (equatorial)")
    h["MOCORDER"] = (m.max_order, "MOC resolution (best order)")
    h["INDXSCHM"] = ("EXPLICIT", "Indexing: IMPLICIT or EXPLICIT")
    _add_meta(h, meta)
    return fits.HDUList([fits.PrimaryHDU(), hdu])


def llh_hdul(m: MultiResMap, meta: Meta) -> fits.HDUList:
    """Single-resolution llh map at the finest scanned nside (UNSEEN if never scanned).

    NESTED ordering (declared in the header; healpy.read_map converts to RING by default): the
    multi-resolution map rasterises to NESTED directly, and reordering 3M pixels would cost more than
    everything else in the FITS products.
    """
    import healpy as hp

    order = m.max_order
    nside = 1 << order
    llh = m.rasterize()
    llh = np.where(np.isfinite(llh), llh, hp.UNSEEN)
    hdu = fits.BinTableHDU.from_columns([fits.Column(name="LLH", format="D", array=llh)], name="LLH")
    h = hdu.header
    h["PIXTYPE"] = ("HEALPIX", "HEALPIX pixelisation")
    h["ORDERING"] = ("NESTED", "Pixel ordering scheme, either RING or NESTED")
    h["COORDSYS"] = ("C", "Ecliptic, Galactic or Celestial (equatorial)")
    h["NSIDE"] = (nside, "Resolution parameter of HEALPIX")
    h["FIRSTPIX"] = (0, "First pixel # (0 based)")
    h["LASTPIX"] = (llh.size - 1, "Last pixel # (0 based)")
    h["INDXSCHM"] = ("IMPLICIT", "Indexing: IMPLICIT or EXPLICIT")
    h["BAD_DATA"] = (hp.UNSEEN, "Sentinel value for never-scanned pixels")
    _add_meta(h, meta)
    h["OBJECT"] = ("FULLSKY", "Sky coverage")
    h["COMMENT"] = "LLH: negative log-likelihood of the finest scanned pixel containing each pixel"
    return fits.HDUList([fits.PrimaryHDU(), hdu])


def write_hdul(hdul: fits.HDUList, path: Path, *, checksum: bool = True) -> Path:
    """Write atomically (a reader never sees half a file); ``checksum`` adds CHECKSUM/DATASUM keys."""
    return atomic_write(Path(path), lambda f: hdul.writeto(f, checksum=checksum))

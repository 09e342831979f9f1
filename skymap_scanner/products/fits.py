"""Probability map and HEALPix FITS files (multi-order NUNIQ, and single-resolution llh).

The probability map of a calibrated scan (:mod:`skymap_scanner.calibration`) is built so that its
50% and 90% credible regions are the calibrated regions (the probability inside 2*Delta-llh <= T is
the calibrated containment of T at those levels; how: :mod:`skymap_scanner.products.density`).
Without a calibration the density is exp(-(llh - llh_min)), the likelihood read as a posterior,
which for pandel_mpe is far too confident (labelled so in the header). Either way it is per
steradian, sums to 1 over the sky, and never-scanned sky gets 0. The multi-order file follows the
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
from skymap_scanner.calibration import EventCalibration
from skymap_scanner.products.density import calibrated_density as density_from_levels
from skymap_scanner.products.multires import MultiResMap
from skymap_scanner.products.regions import BestFit, Region, delta2, headline_for, headline_regions
from skymap_scanner.products.summary import mjd_to_iso
from skymap_scanner.results import EventMeta
from skymap_scanner.utils.atomic import atomic_write


def probability_density(m: MultiResMap, llh_min: float | None = None,
                        calibration: EventCalibration | None = None) -> npt.NDArray[np.float64]:
    """Per-leaf probability density (sr-1), normalised over the sky: calibrated if a calibration is
    given, else exp(-Delta-llh) (see the module docstring)."""
    llh_min = m.llh_min if llh_min is None else llh_min
    if calibration is not None:
        return calibrated_density(m, llh_min, calibration)
    w = np.exp(-(m.llh - llh_min))
    w = np.where(np.isfinite(w), w, 0.0)
    total = float(np.sum(w * m.area_sr))
    if not total > 0.0:
        raise ValueError("probability map is zero everywhere (no finite llh)")
    return w / total


def calibrated_density(m: MultiResMap, llh_min: float, calibration: EventCalibration) -> npt.NDArray[np.float64]:
    """Density whose credible region of probability C(T) is the region 2*Delta-llh <= T (see
    :mod:`skymap_scanner.products.density`)."""
    return density_from_levels(delta2(m, llh_min), m.area_sr, calibration)


@dataclasses.dataclass(frozen=True)
class Meta:
    """What goes into the FITS headers (None values are left out)."""

    event: EventMeta
    fit: BestFit
    reco: str | None = None
    nsides: tuple[int, ...] = ()
    regions: tuple[Region, ...] = ()
    complete: bool | None = None
    calibration: EventCalibration | None = None

    def headline(self) -> tuple[Region, Region] | None:
        try:
            return headline_regions(self.regions)
        except KeyError:
            return None


def _err(which: int, axis: str, side: int) -> Callable[[Meta], Any]:
    """Getter of one asymmetric error (deg, >= 0) of the headline region ``which`` (0: 50%, 1: 90%)."""

    def get(x: Meta) -> Any:
        h = x.headline()
        if h is None:
            return None
        r = h[which]
        return round((r.ra_err_deg if axis == "ra" else r.dec_err_deg)[side], 4)

    return get


def _area(which: int) -> Callable[[Meta], Any]:
    def get(x: Meta) -> Any:
        h = x.headline()
        return None if h is None else round(h[which].area_deg2, 4)

    return get


# The cards follow-up tools read, named as icecube-skyreader writes them (errors are positive
# extents around RA/DEC; keys longer than 8 characters are HIERARCH cards), then our own.
GCN_CARDS: tuple[tuple[str, str, Callable[[Meta], Any]], ...] = (
    ("RUNID", "IceCube run number", lambda x: x.event.run_id),
    ("EVENTID", "IceCube event number", lambda x: x.event.event_id),
    ("SENDER", "Origin", lambda x: "IceCube Collaboration (skymap_scanner draft)"),
    ("DATE-OBS", "UTC date of the observation", lambda x: mjd_to_iso(x.event.mjd)),
    ("MJD-OBS", "Modified Julian date of the observation (UTC)", lambda x: x.event.mjd),
    ("EVENT-TYPE", "Event type / alert stream", lambda x: x.event.event_type),
    ("RA", "[deg] Best-fit right ascension (J2000)", lambda x: x.fit.ra_deg),
    ("DEC", "[deg] Best-fit declination (J2000)", lambda x: x.fit.dec_deg),
    ("RA_ERR_PLUS_50", "[deg] 50% containment error high", _err(0, "ra", 1)),
    ("RA_ERR_MINUS_50", "[deg] 50% containment error low", _err(0, "ra", 0)),
    ("DEC_ERR_PLUS_50", "[deg] 50% containment error high", _err(0, "dec", 1)),
    ("DEC_ERR_MINUS_50", "[deg] 50% containment error low", _err(0, "dec", 0)),
    ("RA_ERR_PLUS_90", "[deg] 90% containment error high", _err(1, "ra", 1)),
    ("RA_ERR_MINUS_90", "[deg] 90% containment error low", _err(1, "ra", 0)),
    ("DEC_ERR_PLUS_90", "[deg] 90% containment error high", _err(1, "dec", 1)),
    ("DEC_ERR_MINUS_90", "[deg] 90% containment error low", _err(1, "dec", 0)),
    ("CONTOUR_AREA_50", "[deg2] 50% contour area", _area(0)),
    ("CONTOUR_AREA_90", "[deg2] 90% contour area", _area(1)),
)

# One table drives the metadata keys of both FITS files: (FITS key, comment, getter).
FITS_META: tuple[tuple[str, str, Callable[[Meta], Any]], ...] = GCN_CARDS + (
    ("OBJECT", "Unique identifier for this event",
     lambda x: None if x.event.run_id is None and x.event.event_id is None
     else f"IceCube-{x.event.run_id}-{x.event.event_id}"),
    ("REALEVT", "Real (not simulated) event", lambda x: x.event.is_real_event),
    ("COMPLETE", "All nsides finished (F: partial)", lambda x: x.complete),
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
            header[f"HIERARCH {key}" if len(key) > 8 else key] = (value, comment)
    if meta.headline() is not None:
        h = headline_for(r.name for r in meta.regions)
        header["COMMENT"] = "50% and 90% regions (RA/DEC_ERR_*, CONTOUR_AREA_*): " + h.description
        for r in meta.regions:  # every region's level, so a reader can redraw any of them
            key = f"HIERARCH LEVEL_{r.name.upper()}"
            header[key] = (round(r.level, 4), "2*Delta-llh level of this region")
    if meta.complete is False:
        header["COMMENT"] = "INCOMPLETE scan: a partial result; regions may be cut by never-scanned sky"


def moc_hdul(m: MultiResMap, meta: Meta) -> fits.HDUList:
    """Multi-order probability map (rows sorted by UNIQ)."""
    uniq = m.uniq
    prob = probability_density(m, meta.fit.llh, meta.calibration)
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
    cal = meta.calibration
    if cal is not None:
        h["PROBMETH"] = ("CALIBRATED", "from the calibrated containment")
        h["HIERARCH CALIB_VERSION"] = (cal.version, "region calibration")
        h["COMMENT"] = ("PROBDENSITY: the probability inside 2*Delta-llh <= T is the calibrated containment "
                        "of T (measured on realistic simulated tracks), so this map's 50%/90% credible regions "
                        "are the calibrated_50/90 regions; shaped between those levels by the calibration")
    else:
        h["PROBMETH"] = ("EXP_DLLH", "exp(-Delta-llh), not calibrated")
        h["COMMENT"] = ("PROBDENSITY: exp(-(llh - llh_min)), the likelihood read as a posterior; no calibration "
                        "applies to this scan, so its credible regions are not calibrated (likely too small)")
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

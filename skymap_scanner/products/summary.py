"""The GCN-notice-like summary (``summary.json``): event, best fit, error regions, provenance (pure)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Sequence
from typing import Any

from astropy.time import Time

from skymap_scanner import __version__
from skymap_scanner.products.regions import BestFit, Region
from skymap_scanner.products.scan import EventInfo

SUMMARY_FORMAT = "skymap-scanner-summary/1"


def mjd_to_iso(mjd: float | None) -> str | None:
    """UTC ISO-8601 time (microseconds) of an MJD, or None."""
    if mjd is None:
        return None
    return str(Time(mjd, format="mjd", scale="utc").isot)


def _r(x: float, nd: int = 4) -> float:
    return round(float(x), nd)


def region_dict(region: Region) -> dict[str, Any]:
    """One ``regions`` entry."""
    return {
        "name": region.name,
        "level": _r(region.level, 4),
        "containment": region.containment,
        "area_deg2": _r(region.area_deg2, 4),
        "ra_err_deg": [_r(region.ra_err_deg[0]), _r(region.ra_err_deg[1])],
        "dec_err_deg": [_r(region.dec_err_deg[0]), _r(region.dec_err_deg[1])],
        "contains_pole": region.contains_pole,
    }


def build_summary(
    event: EventInfo,
    fit: BestFit,
    regions: Sequence[Region],
    *,
    nsides: Sequence[int],
    nside_progression: str | None,
    reco: str | None,
    result_name: str,
    result_sha256: str,
    complete: bool | None,
    legacy_dec_sign: bool,
    products: Sequence[str] = (),
) -> dict[str, Any]:
    """The summary as a JSON-ready dict."""
    ev = dataclasses.asdict(event)
    ev["time_utc"] = mjd_to_iso(event.mjd)
    return {
        "format": SUMMARY_FORMAT,
        "event": ev,
        "best_fit": {
            "ra_deg": _r(fit.ra_deg, 5),
            "dec_deg": _r(fit.dec_deg, 5),
            "llh": fit.llh,
            "nside": fit.nside,
            "pixel_ring": fit.index,
        },
        "regions": [region_dict(r) for r in regions],
        "coordinates": "equatorial J2000, degrees; errors are [minus, plus] extents of each region around the best fit",
        "scan_complete": complete,
        "provenance": {
            "scanner_version": __version__,
            "reco": reco,
            "nside_progression": nside_progression,
            "nsides": list(nsides),
            "result_file": result_name,
            "result_sha256": result_sha256,
            "dec_sign": "legacy file mirrored (dec = theta - pi/2 on disk)" if legacy_dec_sign else "dec = pi/2 - theta",
            "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "products": list(products),
        },
    }

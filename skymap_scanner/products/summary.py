"""The GCN-notice-like summary (``summary.json``): event, best fit, error regions, provenance (pure)."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from astropy.time import Time

from skymap_scanner import __version__
from skymap_scanner.calibration import EventCalibration
from skymap_scanner.products.regions import BestFit, Region, headline_for
from skymap_scanner.results import EventMeta

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
        "touches_unscanned_sky": region.touches_unscanned,
        "pixel_limited": region.pixel_limited,
    }


def pointing_dict(pointing: Mapping[str, Any] | None, regions: Sequence[Region]) -> dict[str, Any] | None:
    """The pointed-scan entry: where the first nside was restricted to, and whether the headline
    90% region reaches the disc's edge (then the disc was too small and the region is cut)."""
    if not pointing:
        return None
    r90_name = headline_for(r.name for r in regions).r90
    r90 = next((r for r in regions if r.name == r90_name), None)
    return {**dict(pointing), "region_touches_edge": bool(r90 is not None and r90.touches_unscanned)}


def build_summary(
    event: EventMeta,
    fit: BestFit,
    regions: Sequence[Region],
    *,
    nsides: Sequence[int],
    nside_progression: str | None,
    reco: str | None,
    result_name: str | None,
    result_sha256: str | None,
    complete: bool | None,
    legacy_dec_sign: bool,
    products: Sequence[str] = (),
    scan_provenance: Mapping[str, Any] | None = None,
    fraction_scanned: float | None = None,
    calibration: EventCalibration | None = None,
) -> dict[str, Any]:
    """The summary as a JSON-ready dict. ``scan_provenance`` is what the result's header says made
    it (reco options, the scanner version that scanned, pointing, ...)."""
    ev = dataclasses.asdict(event)
    ev["time_utc"] = mjd_to_iso(event.mjd)
    scan_prov = dict(scan_provenance or {})
    pointing = pointing_dict(scan_prov.get("pointing"), regions)
    headline = headline_for(r.name for r in regions)
    out: dict[str, Any] = {
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
        "headline_regions": {"50": headline.r50, "90": headline.r90, "description": headline.description,
                             "systematic_included": headline.systematic_included},
        "calibration": None if calibration is None else {
            "version": calibration.version,
            "feature": calibration.feature,
            "feature_value": calibration.feature_value,
            "outside_calibrated_range": calibration.extrapolated,
            "levels": {f"{c:g}": _r(t, 4) for c, t in zip(calibration.containment, calibration.level, strict=True)},
        },
        "coordinates": "equatorial J2000, degrees; errors are [minus, plus] extents of each region around the best fit",
        "scan_complete": complete,
        "fraction_of_sky_scanned": None if fraction_scanned is None else _r(fraction_scanned, 6),
        "pointed": pointing,
        "provenance": {
            "scanner_version": __version__,
            "scanned_with_version": scan_prov.get("scanner_version"),
            "reco": reco,
            "reco_options": scan_prov.get("reco_options"),
            "nside_progression": nside_progression,
            "nsides": list(nsides),
            "scan_id": scan_prov.get("scan_id"),
            "result_file": result_name,
            "result_sha256": result_sha256,
            "dec_sign": "legacy file mirrored (dec = theta - pi/2 on disk)" if legacy_dec_sign else "dec = pi/2 - theta",
            "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "products": list(products),
        },
    }
    return out

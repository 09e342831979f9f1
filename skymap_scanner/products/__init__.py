"""Sky-map products of a scan: best fit, error regions, probability map (FITS), plots, summary JSON.

The server calls :func:`make_products` at the end of every scan with the result it holds in memory
(the result file is written once, by the server); the command line is
``python -m skymap_scanner.utils.products RESULT.npz --output-dir OUT``. The pure pieces live in
``llh_maps`` (the scan's llh maps, from memory or a file), ``multires`` (the multi-resolution map),
``regions`` (best fit, areas, errors, the headline regions), ``fits``, ``plots``, ``summary`` and
``alert`` (the gcn_notice.json and circular.txt drafts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from skymap_scanner.calibration import EventCalibration
from skymap_scanner.errors import ConfigError
from skymap_scanner.products.llh_maps import Scan, read_scan, scan_from_arrays, scan_from_result, sha256_file
from skymap_scanner.products.multires import MultiResMap, build_multires
from skymap_scanner.products.regions import (
    HEADLINE,
    LEVEL_SETS,
    PLOT_FAMILIES,
    BestFit,
    LevelSet,
    Region,
    best_fit,
    headline_for,
    headline_regions,
    level_sets_for,
    make_region,
    plot_level_sets,
)
from skymap_scanner.products.summary import build_summary, mjd_to_iso
from skymap_scanner.results import EventMeta, ScanResult
from skymap_scanner.utils.atomic import atomic_write_text

__all__ = [
    "HEADLINE",
    "BestFit",
    "EventMeta",
    "LEVEL_SETS",
    "MultiResMap",
    "Region",
    "Scan",
    "best_fit",
    "build_multires",
    "make_products",
    "make_region",
    "headline_for",
    "headline_regions",
    "scan_calibration",
    "read_scan",
    "scan_from_arrays",
    "scan_from_result",
]

#: Output file names (keys of the dict returned by make_products).
FILENAMES = {
    "summary": "summary.json",
    "moc_fits": "skymap.multiorder.fits",
    "llh_fits": "llh.fits",
    "fullsky_png": "skymap_fullsky.png",
    "fullsky_pdf": "skymap_fullsky.pdf",
    "zoom_png": "skymap_zoom.png",
    "zoom_pdf": "skymap_zoom.pdf",
    "gcn_notice": "gcn_notice.json",
    "circular": "circular.txt",
}


def make_products(
    result: Path | ScanResult,
    output_dir: Path,
    *,
    result_path: Path | None = None,
    reco: str | None = None,
    nsides: str | None = None,
    legacy_dec_sign: bool = False,
    event_overrides: Mapping[str, Any] | None = None,
    contours: str = "all",
    plots: bool = True,
) -> dict[str, Path]:
    """Write every product of a result into ``output_dir``; returns {product: path}.

    ``result`` is a result .npz to read, or the :class:`ScanResult` in memory (then ``result_path``
    names the file it was written to, for the summary's provenance). ``reco`` and ``nsides`` default
    to what the result's header records (the nside progression string, e.g. ``"8:0 64:12 512:24"``;
    for old files, the nsides found). ``contours`` picks the level sets drawn on the plots
    (``all``, ``headline``, ``calibrated``, ``wilks``, ``icecube`` or ``both`` = Wilks and IceCube); the
    summary always has all of them. The calibrated regions exist when the result's header carries the
    calibration the scan applied (:func:`scan_calibration`). The FITS files are written
    first and ``summary.json`` (and the drafts) even when plotting fails (the error is re-raised).
    """
    from skymap_scanner.products import fits as pfits

    if contours not in PLOT_FAMILIES:
        raise ConfigError(f"contours must be one of {', '.join(PLOT_FAMILIES)}, not {contours!r}")
    output_dir = Path(output_dir)
    if isinstance(result, ScanResult):
        scan = scan_from_result(result, legacy_dec_sign=legacy_dec_sign, event_overrides=event_overrides)
    else:
        result_path = Path(result)
        scan = read_scan(result_path, legacy_dec_sign=legacy_dec_sign, event_overrides=event_overrides)
    reco = reco if reco is not None else scan.provenance.get("reco")
    nsides = nsides if nsides is not None else scan.provenance.get("nside_progression")
    mres = build_multires(scan)
    fit = best_fit(scan)
    calibration = scan_calibration(scan)
    level_sets = level_sets_for(calibration)
    regions = [make_region(mres, ls, fit) for ls in level_sets]
    output_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    meta = pfits.Meta(scan.event, fit, reco, scan.nsides, tuple(regions), scan.complete, calibration)
    out["moc_fits"] = pfits.write_hdul(pfits.moc_hdul(mres, meta), output_dir / FILENAMES["moc_fits"])
    # no checksum on the big single-resolution map: it doubles the time to write it
    out["llh_fits"] = pfits.write_hdul(
        pfits.llh_hdul(mres, meta), output_dir / FILENAMES["llh_fits"], checksum=False
    )
    try:
        if plots:
            levels = plot_level_sets(contours, level_sets)
            out.update(_plots(scan, mres, fit, regions, levels, output_dir, reco))
    finally:
        from skymap_scanner.products import alert

        names = sorted([p.name for p in out.values()] + [FILENAMES["gcn_notice"], FILENAMES["circular"]])
        summary = build_summary(
            scan.event,
            fit,
            regions,
            nsides=scan.nsides,
            nside_progression=nsides if nsides is not None else " ".join(map(str, scan.nsides)),
            reco=reco,
            result_name=result_path.name if result_path is not None else None,
            result_sha256=sha256_file(result_path) if result_path is not None else None,
            complete=scan.complete,
            legacy_dec_sign=scan.legacy_dec_sign,
            products=names,
            scan_provenance=scan.provenance,
            fraction_scanned=mres.fraction_scanned,
            calibration=calibration,
        )
        out["summary"] = atomic_write_text(output_dir / FILENAMES["summary"], json.dumps(summary, indent=2) + "\n")
        notice = alert.gcn_notice(summary, FILENAMES["moc_fits"])
        out["gcn_notice"] = atomic_write_text(output_dir / FILENAMES["gcn_notice"], json.dumps(notice, indent=2) + "\n")
        out["circular"] = atomic_write_text(output_dir / FILENAMES["circular"], alert.circular(summary))
    return out


def _plots(
    scan: Scan,
    mres: MultiResMap,
    fit: BestFit,
    regions: list[Region],
    levels: tuple[LevelSet, ...],
    output_dir: Path,
    reco: str | None,
) -> dict[str, Path]:
    from skymap_scanner.products import plots

    decor = plot_decor(scan, mres, reco)
    out: dict[str, Path] = {}
    full = plots.fullsky_figure(scan, mres, fit, levels, regions, decor)
    out["fullsky_png"], out["fullsky_pdf"] = plots.save_figure(
        full, output_dir / FILENAMES["fullsky_png"], output_dir / FILENAMES["fullsky_pdf"]
    )
    zoom = plots.zoom_figure(scan, mres, fit, levels, regions, decor)
    out["zoom_png"], out["zoom_pdf"] = plots.save_figure(
        zoom, output_dir / FILENAMES["zoom_png"], output_dir / FILENAMES["zoom_pdf"]
    )
    return out


def scan_calibration(scan: Scan) -> EventCalibration | None:
    """The calibration the scan applied (its result header's ``calibration``), if any."""
    d = scan.provenance.get("calibration")
    if not isinstance(d, dict):
        return None
    return EventCalibration.from_dict(d)


def plot_decor(scan: Scan, mres: MultiResMap, reco: str | None) -> Any:
    """The plots' title, online fits, INCOMPLETE banner and pointing, from the scan and its provenance."""
    from skymap_scanner.products.plots import Decor

    extra = ", ".join(
        x for x in (f"reco {reco}" if reco else "", "nsides " + "/".join(map(str, scan.nsides))) if x
    )
    pointing = scan.provenance.get("pointing")
    if pointing:
        extra += f"; pointed: {pointing.get('radius_deg')}° around {pointing.get('name')}"
    online = {str(k): (float(v[0]), float(v[1])) for k, v in (scan.provenance.get("online_fits") or {}).items()}
    incomplete = None
    if scan.complete is False:
        first = scan.maps[0]
        pct = 100.0 * first.index.size / (12 * first.nside**2)
        incomplete = (f"INCOMPLETE - {pct:.0f}% of nside-{first.nside} pixels" if pct < 100.0
                      else "INCOMPLETE - refinement unfinished")
    return Decor(scan.event.label(), _short_time(mjd_to_iso(scan.event.mjd)), extra, online, incomplete, pointing)


def _short_time(iso: str | None) -> str | None:
    """'2022-05-24T07:41:32.185352' -> '2022-05-24 07:41:32.18' (truncated)."""
    if iso is None:
        return None
    date, _, clock = iso.partition("T")
    if "." in clock:
        hms, frac = clock.split(".")
        clock = f"{hms}.{frac[:2]}"
    return f"{date} {clock}"

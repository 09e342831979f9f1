"""Does the probability map agree with the calibrated regions? (issue 11: within +-20% in area)

    python benchmarks/bench_calibrated_map.py RESULTS_DIR [RESULTS_DIR ...] [--calibration FILE]

Reads every result ``.npz`` below the given directories (e.g. the ``--save-dir`` of
``bench_pandel_accuracy.py`` or ``bench_real_alerts.py``), applies the calibration (default: the shipped
one for the scan's reco) to the event's calibration feature stored in the result's provenance, and
compares, at 50% and 90%: the area (deg^2) of the calibrated region (2*Delta-llh <= the event's level)
with the area of the multi-order map's credible region of that probability (the smallest set of leaves,
densest first, holding it). Printed per result and as a summary: the ratio map/region, and how many
lie within +-20%. Pure post-processing: nothing is re-scanned.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SR_TO_DEG2 = (180.0 / np.pi) ** 2


def credible_area_deg2(density: np.ndarray, area_sr: np.ndarray, probability: float) -> float:
    """Area of the densest leaves that together hold ``probability``."""
    order = np.argsort(-density, kind="stable")
    mass = np.cumsum(density[order] * area_sr[order])
    k = int(np.searchsorted(mass, (probability - 1e-9) * mass[-1], side="left"))  # float round-off
    return float(np.sum(area_sr[order[: k + 1]]) * SR_TO_DEG2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--calibration", help="a calibration file (default: the shipped one for the scan's reco)")
    args = p.parse_args()

    from skymap_scanner.calibration import load_calibration, shipped_calibration
    from skymap_scanner.products.fits import probability_density
    from skymap_scanner.products.llh_maps import read_scan
    from skymap_scanner.products.multires import build_multires
    from skymap_scanner.products.regions import region_area_deg2

    given = load_calibration(args.calibration) if args.calibration else None
    paths = sorted(f for d in args.dirs for f in d.rglob("*.npz") if not f.name.endswith(".partial.npz"))
    ratios: dict[float, list[float]] = {0.5: [], 0.9: []}
    skipped = 0
    for path in paths:
        scan = read_scan(path)
        stored = scan.provenance.get("calibration")
        reco = str(scan.provenance.get("reco", "pandel_mpe"))
        cal = given or shipped_calibration(reco)
        if cal is None or not isinstance(stored, dict) or "feature_value" not in stored:
            skipped += 1
            continue
        ev_cal = cal.for_event(float(stored["feature_value"]))
        m = build_multires(scan)
        density = probability_density(m, calibration=ev_cal)
        cells = []
        for c in (0.5, 0.9):
            region = region_area_deg2(m, ev_cal.level_for(c))
            credible = credible_area_deg2(density, m.area_sr, c)
            ratio = credible / region if region > 0 else float("nan")
            ratios[c].append(ratio)
            cells.append(f"{round(100 * c)}%: region {region:7.2f} map {credible:7.2f} deg2 (x{ratio:.2f})")
        print(f"{path.parent.name[:40]:40s} " + " | ".join(cells), flush=True)
    if not any(ratios.values()):
        print(f"no calibrated results found ({skipped} without a calibration feature)", file=sys.stderr)
        return 1
    for c, r in ratios.items():
        a = np.array(r)
        within = int(np.sum(np.abs(a - 1.0) <= 0.2))
        print(f"== {round(100 * c)}%: {a.size} results; credible area / calibrated region area median {np.nanmedian(a):.3f}, "
              f"range {np.nanmin(a):.3f}-{np.nanmax(a):.3f}; within +-20%: {within}/{a.size}")
    if skipped:
        print(f"({skipped} results skipped: no calibration feature in their provenance)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Contour-driven vs classic refinement on the same events: pixels scanned, wall time, and whether the
90%-level region is fully resolved at the finest nside.

    python benchmarks/bench_refinement.py [--n-events 24] [--seed 11] [--local-workers 2]
        [--classic "8:0 64:12 512:24"] [--contour "8:0 64:c 512:c"] [--real [--events DIR]] [--out rows.jsonl]

Two sets of events, each scanned embedded (``scan_event``) once per progression:

* dummy (always): ``--n-events`` random elliptical landscapes of the ``dummy`` reco: the sample event with
  other event ids (so other planted directions), ``llh_scale`` log-uniform in 1000-30000 (2*Delta-llh ~=
  llh_scale * psi**2, psi in rad), ``axis_ratio`` uniform in 1-3, ``position_angle_deg`` uniform. The
  90% level is the contour default (``DEFAULT_CONTOUR_LEVEL``, 11.3): the dummy has no calibration. Its
  region is an ellipse of area pi * level / (llh_scale * axis_ratio) sr, printed as ``true``.
* real (``--real``): the track alerts (SplineMPE fit, not HESE) in ``--events`` with ``pandel_mpe``; the
  90% level is the event's calibrated one (the shipped calibration) when it applies, else the default.
  The contour scan follows that same level. This takes CPU hours on 2 cores.

Per event and progression: pixels scanned (all nsides), fits, wall time (s), the region's area (deg^2)
resolved at the finest nside and at coarser nsides, and ``resolved`` = all of it at the finest nside
(:func:`skymap_scanner.contour.region_area_by_nside`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
SR_TO_DEG2 = (180.0 / math.pi) ** 2


def scan_row(event: Any, reco: str, options: dict[str, str], nsides: str, level: float, workers: int,
             contour_level: float | None) -> dict[str, Any]:
    """Scan once; what was scanned and how much of the region at ``level`` lies at the finest nside."""
    from skymap_scanner.contour import fully_resolved, region_area_by_nside
    from skymap_scanner.scan import scan_event

    t0 = time.monotonic()
    res = scan_event(event, reco, nsides=nsides, local_workers=workers, reco_options=options, calibration="none",
                     contour_level=contour_level)
    wall = time.monotonic() - t0
    finest = max(res.maps)
    area = region_area_by_nside(res.maps, level)
    n_posvar = int(options.get("n_posvar", 2)) if reco == "dummy" else None
    pixels = sum(int(a.size) for a in res.maps.values())
    return {"nsides": nsides, "pixels": pixels, "fits": None if n_posvar is None else pixels * n_posvar,
            "wall_s": round(wall, 2), "area_finest_deg2": round(area[finest], 3),
            "area_coarser_deg2": round(sum(a for n, a in area.items() if n != finest), 3),
            "resolved": fully_resolved(area, finest)}


def dummy_events(n: int, seed: int) -> list[tuple[Any, dict[str, str], float]]:
    """(event, dummy options, true area deg^2 of the 90%-level ellipse) for ``n`` random landscapes."""
    from skymap_scanner.contour import DEFAULT_CONTOUR_LEVEL
    from skymap_scanner.events import load_event

    base = load_event(SAMPLE)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        scale = float(np.exp(rng.uniform(np.log(1000.0), np.log(30000.0))))
        q = float(rng.uniform(1.0, 3.0))
        pa = float(rng.uniform(0.0, 180.0))
        event = dataclasses.replace(base, event_id=base.event_id + 1000 * seed + i)
        opts = {"llh_scale": f"{scale:.1f}", "axis_ratio": f"{q:.3f}", "position_angle_deg": f"{pa:.1f}",
                "n_posvar": "1"}
        out.append((event, opts, math.pi * DEFAULT_CONTOUR_LEVEL / (scale * q) * SR_TO_DEG2))
    return out


def real_events(directory: Path) -> list[tuple[Any, float]]:
    """(event, its 90% level) for each track alert in ``directory``."""
    from skymap_scanner.contour import DEFAULT_CONTOUR_LEVEL
    from skymap_scanner.events import load_event
    from skymap_scanner.recos import make_reco
    from skymap_scanner.scan import event_calibration

    out = []
    for path in sorted(directory.iterdir()):
        if path.suffix not in (".json", ".pkl"):
            continue
        try:
            event = load_event(path)
        except Exception as e:  # noqa: BLE001 - a benchmark lists what it cannot read
            print(f"{path.name}: not an event ({e}), skipped")
            continue
        if "SplineMPE" not in event.online_fits or event.event_type.upper().startswith("HESE"):
            print(f"{path.name}: not a through-going track alert, skipped")
            continue
        cal = event_calibration("auto", "pandel_mpe", {}, make_reco("pandel_mpe", {}), event)
        out.append((event, DEFAULT_CONTOUR_LEVEL if cal is None else cal.level_for(0.9)))
    return out


def print_table(rows: list[dict[str, Any]], modes: tuple[str, str]) -> None:
    head = f"{'event':>22s} {'true':>7s} |" + "|".join(
        f" {m:>7s}: {'pixels':>6s} {'wall':>6s} {'finest':>7s} {'coarser':>7s} {'ok':>3s} " for m in modes)
    print(head)
    for r in rows:
        cells = []
        for m in modes:
            x = r[m]
            cells.append(f" {'':>7s}  {x['pixels']:6d} {x['wall_s']:6.1f} {x['area_finest_deg2']:7.2f} "
                         f"{x['area_coarser_deg2']:7.2f} {'yes' if x['resolved'] else 'no':>3s} ")
        true = r.get("true_area_deg2")
        print(f"{r['event']:>22s} {'' if true is None else f'{true:7.2f}':>7s} |" + "|".join(cells))
    for m in modes:
        px = np.array([r[m]["pixels"] for r in rows])
        wall = np.array([r[m]["wall_s"] for r in rows])
        ok = sum(r[m]["resolved"] for r in rows)
        print(f"{m:>8s}: pixels median {np.median(px):.0f} (total {px.sum()}), wall median {np.median(wall):.1f} s "
              f"(total {wall.sum():.0f} s), 90%-level region fully resolved at the finest nside in {ok}/{len(rows)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-events", type=int, default=24, help="dummy landscapes (default 24)")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--local-workers", type=int, default=2)
    p.add_argument("--classic", default="8:0 64:12 512:24", help="the classic progression")
    p.add_argument("--contour", default="8:0 64:c 512:c", help="the contour progression")
    p.add_argument("--real", action="store_true", help="also the real track alerts with pandel_mpe (CPU hours)")
    p.add_argument("--no-dummy", action="store_true", help="skip the dummy landscapes")
    p.add_argument("--events", type=Path, default=REPO.parent / "shared" / "data" / "events")
    p.add_argument("--out", type=Path, default=None, help="append every row as JSON lines")
    args = p.parse_args()
    modes = ("classic", "contour")
    sets: list[tuple[str, list[dict[str, Any]]]] = []
    if not args.no_dummy:
        from skymap_scanner.contour import DEFAULT_CONTOUR_LEVEL

        rows = []
        for event, opts, true_area in dummy_events(args.n_events, args.seed):
            row: dict[str, Any] = {"set": "dummy", "event": f"{event.run_id}:{event.event_id}", "options": opts,
                                   "level": DEFAULT_CONTOUR_LEVEL, "true_area_deg2": round(true_area, 3)}
            for mode, prog in zip(modes, (args.classic, args.contour), strict=True):
                row[mode] = scan_row(event, "dummy", opts, prog, DEFAULT_CONTOUR_LEVEL, args.local_workers, None)
            rows.append(row)
            print(json.dumps(row), flush=True)
        sets.append(("dummy elliptical landscapes", rows))
    if args.real:
        rows = []
        for event, level in real_events(args.events):
            row = {"set": "real", "event": event.name, "level": round(level, 3)}
            for mode, prog in zip(modes, (args.classic, args.contour), strict=True):
                row[mode] = scan_row(event, "pandel_mpe", {}, prog, level, args.local_workers, level)
            rows.append(row)
            print(json.dumps(row), flush=True)
        sets.append(("real track alerts, pandel_mpe", rows))
    for name, rows in sets:
        if args.out is not None:
            with args.out.open("a") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
        print(f"\n== {name}: {len(rows)} events; classic {args.classic!r}, contour {args.contour!r}; areas deg^2 "
              "(true = analytic ellipse; finest / coarser = the region resolved at / above the finest nside)")
        print_table(rows, modes)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate a reco's error regions on simulated tracks: ``python -m skymap_scanner.utils.calibrate``.

Three steps, each a sub-command (also ``skymap-scanner calibrate STEP``):

``run``     simulate tracks with the realistic simulator mode (its ice and detector differ from the
            fit's: stochastic losses, noise, coincident muons, PMT effects) over the whole sky and an
            energy range, scan each like an alert (embedded by default; over the broker when
            ``SKYSCAN_BROKER_ADDRESS`` is set and ``--broker`` is given, so a big calibration runs on
            many clients), and append one JSON line per event: the truth, the reco's calibration
            feature, the best fit, 2*Delta-llh at the true direction and the region area as a function
            of the level. Resumable: events already in the output are skipped.
``derive``  rows -> a calibration file (``skymap-scanner-calibration/1``, with its provenance) and a
            plot of coverage vs threshold; prints in-sample and k-fold cross-validated coverage.
``check``   a calibration file against rows NOT used to derive it: coverage of the 50% / 90% levels
            per energy band and per brightness band, and the areas of the calibrated regions.

``enrich`` adds the feature and area columns to rows written by ``benchmarks/bench_pandel_accuracy.py``
(which saves each result; the events are re-simulated from their seed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SkyScanError
from ..pixels import DEFAULT_PROGRESSION

ROW_FORMAT = "skymap-scanner-calibration-row/1"
#: 2*Delta-llh levels at which each event's region area is recorded (log-spaced)
AREA_LEVELS = tuple(float(x) for x in np.geomspace(0.25, 2000.0, 64))
#: energy bands (GeV) coverage is reported in
ENERGY_BANDS_GEV = ((3e4, 6e4), (6e4, 1.5e5), (1.5e5, 5e6))


# -- one event ---------------------------------------------------------------------------------
def angle_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    c = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def truth_llh(reco: Any, prep: Any, zenith_rad: float, azimuth_rad: float, seed_vertex: Any) -> float:
    """The reco's best llh with the direction fixed at the truth: every variation, plus the scan's
    best vertex as seed (so the truth is fitted at least as well as the scan's best pixel was)."""
    llhs = [reco.fit(prep, zenith_rad, azimuth_rad, pv, None).llh for pv in range(reco.n_posvar)]
    llhs += [reco.fit(prep, zenith_rad, azimuth_rad, pv, seed_vertex).llh for pv in range(min(2, reco.n_posvar))]
    finite = [x for x in llhs if math.isfinite(x)]
    return min(finite) if finite else float("nan")


def area_curve(result: Any) -> list[float]:
    """Area (deg2) of 2*Delta-llh <= level at each of AREA_LEVELS, on the scan's multi-resolution map."""
    from ..products import build_multires, scan_from_result
    from ..products.regions import region_area_deg2

    scan = scan_from_result(result)
    m = build_multires(scan)
    return [round(region_area_deg2(m, lv), 5) for lv in AREA_LEVELS]


def measure(event: Any, truth: Any, result: Any, reco: Any) -> dict[str, Any]:
    """The calibration row of one scanned simulated event (without its identifiers)."""
    from ..pixels import pixel_radec
    from ..recos.base import Vertex

    nside, pixel, llh_best = result.best()
    ra, dec = pixel_radec(nside, [pixel])
    row_best = result.maps[nside][result.maps[nside]["index"] == pixel][0]
    seed = Vertex(float(row_best["X"]), float(row_best["Y"]), float(row_best["Z"]), float(row_best["T"]))
    prep = reco.prepare(event)
    llh_true = truth_llh(reco, prep, truth.zenith_rad, truth.azimuth_rad, seed)
    details = truth.details or {}
    return {
        "energy_gev": truth.energy_gev, "zenith_rad": truth.zenith_rad, "azimuth_rad": truth.azimuth_rad,
        "ra_rad": truth.ra_rad, "dec_rad": truth.dec_rad, "n_hit_doms": truth.n_hit_doms,
        "qtot_pe": truth.qtot_pe, "coincident": details.get("coincident") is not None,
        "feature": reco.calibration_feature(event),
        "best_nside": int(nside), "best_pixel": int(pixel), "llh_best": float(llh_best), "llh_true": llh_true,
        "miss_deg": angle_deg(float(ra[0]), float(dec[0]), truth.ra_rad, truth.dec_rad),
        "two_delta_llh": 2.0 * (llh_true - min(float(llh_best), llh_true)),
        "area_levels": [round(x, 5) for x in AREA_LEVELS], "area_deg2": area_curve(result),
    }


# -- rows ----------------------------------------------------------------------------------------
def read_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
        for k, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{k}: not a JSON line ({e.msg})") from None
            if not isinstance(row, dict) or "two_delta_llh" not in row:
                raise ConfigError(f"{path}:{k}: not a calibration row (no two_delta_llh)")
            rows.append(row)
    return rows


def usable(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows with a finite 2*Delta-llh and a feature value."""
    return [r for r in rows if r.get("feature") is not None and math.isfinite(float(r["two_delta_llh"]))]


def arrays(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(2*Delta-llh at the truth, feature, energy GeV)."""
    d = np.array([float(r["two_delta_llh"]) for r in rows])
    n = np.array([float(r["feature"]) for r in rows])
    e = np.array([float(r["energy_gev"]) for r in rows])
    return d, n, e


def area_at(row: Mapping[str, Any], level: float) -> float:
    """The event's region area (deg2) at ``level``, interpolated in log-log on its area curve."""
    a = np.asarray(row["area_deg2"], dtype=float)
    lv = np.asarray(row.get("area_levels") or AREA_LEVELS, dtype=float)
    pos = a > 0
    if not pos.any():
        return 0.0
    return float(np.exp(np.interp(math.log(level), np.log(lv[pos]), np.log(a[pos]))))


# -- reports ---------------------------------------------------------------------------------------
def band_lines(rows: Sequence[Mapping[str, Any]], cal: Any, title: str) -> list[str]:
    """Coverage of the calibrated 50% / 90% levels overall, per energy band and per brightness tercile."""
    from ..calibration import coverage

    d, n, e = arrays(rows)
    t50 = np.array([cal.for_event(x).level_for(0.5) for x in n])
    t90 = np.array([cal.for_event(x).level_for(0.9) for x in n])
    out = [f"{title}: {d.size} events"]

    def line(label: str, sel: np.ndarray) -> str:
        k = int(sel.sum())
        if k == 0:
            return f"  {label:28s}   0 events"
        c50, c90 = coverage(d[sel], t50[sel]), coverage(d[sel], t90[sel])
        e50, e90 = math.sqrt(0.25 / k), math.sqrt(0.09 / k)
        return (f"  {label:28s} {k:4d} events: calibrated 50% covers {c50:6.1%} (+-{e50:.1%}), "
                f"90% covers {c90:6.1%} (+-{e90:.1%})")

    out.append(line("all", np.ones(d.size, bool)))
    for lo, hi in ENERGY_BANDS_GEV:
        out.append(line(f"E {lo / 1e3:g}-{hi / 1e3:g} TeV", (e >= lo) & (e < hi)))
    if d.size >= 9:
        q = np.quantile(n, [1 / 3, 2 / 3])
        for lab, sel in ((f"{cal.feature} < {q[0]:.0f}", n < q[0]),
                         (f"{cal.feature} {q[0]:.0f}-{q[1]:.0f}", (n >= q[0]) & (n < q[1])),
                         (f"{cal.feature} >= {q[1]:.0f}", n >= q[1])):
            out.append(line(lab, sel))
    with_area = [r for r in rows if r.get("area_deg2")]
    if with_area:
        for c in (0.5, 0.9):
            areas = np.array([area_at(r, cal.for_event(float(r["feature"])).level_for(c)) for r in with_area])
            out.append(f"  calibrated {c:.0%} area: median {np.median(areas):.2f} deg2, 90th percentile "
                       f"{np.percentile(areas, 90):.2f} deg2 ({areas.size} events)")
    return out


def cross_validated(rows: Sequence[Mapping[str, Any]], folds: int, exponent: float | None,
                    reco: str, reco_options: Mapping[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold levels: every event's 50% / 90% levels from a calibration derived without it."""
    from ..calibration import derive

    d, n, _ = arrays(rows)
    idx = np.arange(d.size)
    t50, t90 = np.full(d.size, np.nan), np.full(d.size, np.nan)
    for k in range(folds):
        test = idx % folds == k
        cal = derive(d[~test], n[~test], reco=reco, reco_options=reco_options, exponent=exponent)
        t50[test] = [cal.for_event(x).level_for(0.5) for x in n[test]]
        t90[test] = [cal.for_event(x).level_for(0.9) for x in n[test]]
    return d, t50, t90


def coverage_plot(rows: Sequence[Mapping[str, Any]], cal: Any, path: Path) -> Path:
    """Coverage vs threshold: the fraction of events with 2*Delta-llh(true) <= T, as raw 2*Delta-llh and
    scaled by the calibration's brightness model, with the Wilks curve and the calibrated levels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_write

    d, n, _ = arrays(rows)
    scale = np.array([cal.scale(x) for x in n])
    t = np.geomspace(0.05, max(1000.0, float(np.max(d)) * 1.2), 400)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(t, [(d <= x).mean() for x in t], label="2ΔLLH(true) of simulated events", color="0.3")
    ax.plot(t, [(d / scale <= x).mean() for x in t], label=f"scaled by ({cal.feature}/{cal.reference:.0f})"
            f"^{cal.exponent:.2f}", color="#006d2c")
    ax.plot(t, 1 - np.exp(-t / 2), ls="--", color="#c51b8a", label="Wilks (2 dof)")
    for c, q in zip(cal.containment, cal.scaled_level, strict=True):
        if c in (0.5, 0.9):
            ax.axvline(q, color="#006d2c", ls=":", lw=1)
            ax.axhline(c, color="0.7", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("threshold T on 2ΔLLH (scaled: at the reference brightness)")
    ax.set_ylabel("fraction of events with the truth inside")
    ax.set_title(f"{cal.reco} calibration {cal.version}: {d.size} realistic simulated tracks")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(Path(path), lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return Path(path)


# -- sub-commands ----------------------------------------------------------------------------------
def _reco_options(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--reco-option {p!r}: expected NAME=VALUE")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _done_ids(path: Path) -> set[tuple[int, int]]:
    if not path.exists():
        return set()
    return {(int(r["seed"]), int(r["track"])) for r in read_rows([path])}


def _events(seed: int, n: int, e_range: tuple[float, float]) -> Iterator[tuple[int, Any, Any]]:
    from ..utils.simulate import random_track

    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        event, truth = random_track(rng, ice="realistic", energy_range_gev=e_range, event_id=i, run_id=seed)
        yield i, event, truth


def cmd_run(args: argparse.Namespace) -> int:
    from ..recos import make_reco
    from ..scan import scan_event

    options = _reco_options(args.reco_option)
    reco = make_reco(args.reco, options)
    out = Path(args.out)
    done = _done_ids(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    backend = None if args.broker else "embedded"
    t_all = time.perf_counter()
    with out.open("a") as f:
        for i, event, truth in _events(args.seed, args.n_events, (args.energy_min_gev, args.energy_max_gev)):
            if (args.seed, i) in done:
                continue
            t = time.perf_counter()
            result = scan_event(event, args.reco, nsides=args.nsides, local_workers=args.local_workers,
                                reco_options=options, calibration="none", backend=backend)
            row = {"format": ROW_FORMAT, "seed": args.seed, "track": i, "reco": args.reco,
                   "reco_options": options, "nsides": args.nsides, **measure(event, truth, result, reco),
                   "scan_s": round(time.perf_counter() - t, 2)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(f"#{i:4d} E {truth.energy_gev:9.3g} GeV, {row['feature']:.0f} DOMs fitted: best fit "
                  f"{row['miss_deg']:.2f} deg from the truth, 2dllh(truth) {row['two_delta_llh']:.2f}, "
                  f"scan {row['scan_s']:.1f} s", flush=True)
    print(f"done in {(time.perf_counter() - t_all) / 60:.1f} min; rows in {out}")
    return 0


def cmd_enrich(args: argparse.Namespace) -> int:
    from ..recos import make_reco
    from ..results import load_result

    rows = read_rows(args.rows)
    by_seed: dict[int, dict[int, dict[str, Any]]] = {}
    for r in rows:
        by_seed.setdefault(int(r["seed"]), {})[int(r["track"])] = r
    out = Path(args.out)
    n_out = 0
    with out.open("w") as f:
        for seed, tracks in sorted(by_seed.items()):
            for i, event, truth in _events(seed, max(tracks), (3e4, 5e6)):
                if i not in tracks:
                    continue
                r = tracks[i]
                if abs(truth.energy_gev - float(r["energy_gev"])) > 1e-6 * truth.energy_gev:
                    raise SkyScanError(f"seed {seed} track {i}: the re-simulated event differs from the row "
                                       "(another simulator version?)")
                reco_ice = r.get("reco_ice", "depth")
                reco = make_reco("pandel_mpe", {"ice": reco_ice})
                found = sorted(Path(args.results_dir).glob(f"{r['ice']}-{reco_ice}-seed{seed}-{i:04d}/*.npz"))
                row = dict(r)
                row.update(format=ROW_FORMAT, reco="pandel_mpe", reco_options={"ice": reco_ice},
                           feature=reco.calibration_feature(event))
                if found:
                    row.update(area_levels=[round(x, 5) for x in AREA_LEVELS],
                               area_deg2=area_curve(load_result(found[0])))
                f.write(json.dumps(row) + "\n")
                n_out += 1
    print(f"{n_out} rows with features written to {out}")
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..atomic import atomic_write_text
    from ..calibration import coverage, derive

    rows = usable(read_rows(args.rows))
    if not rows:
        raise ConfigError("no usable rows (need two_delta_llh and feature)")
    recos = {str(r.get("reco", "pandel_mpe")) for r in rows}
    opts = {json.dumps(r.get("reco_options", {}), sort_keys=True) for r in rows}
    if len(recos) != 1 or len(opts) != 1:
        raise ConfigError(f"rows mix recos or reco options ({sorted(recos)}, {sorted(opts)}): derive one at a time")
    reco, reco_options = recos.pop(), json.loads(opts.pop())
    d, n, e = arrays(rows)
    exponent = None if args.exponent == "fit" else float(args.exponent)
    seeds = sorted({int(r["seed"]) for r in rows})
    provenance = {
        "simulator": {"mode": "realistic", "energy_range_gev": [float(e.min()), float(e.max())],
                      "spectrum": "E-2 (the realistic mode's default)", "sky": "isotropic"},
        "n_events": int(d.size), "seeds": seeds, "nside_progression": sorted({str(r.get("nsides")) for r in rows}),
        "code_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": "quantiles of 2*Delta-llh(true) / (n_doms / reference) ** exponent; exponent by zero "
                  "Spearman correlation with n_doms" if exponent is None else f"exponent fixed at {exponent}",
    }
    cal = derive(d, n, reco=reco, reco_options=reco_options, exponent=exponent, provenance=provenance,
                 version=args.version)
    flat = derive(d, n, reco=reco, reco_options=reco_options, exponent=0.0)
    for title, c in (("in-sample, fitted brightness model", cal), ("in-sample, one threshold for all (exponent 0)", flat)):
        print("\n".join(band_lines(rows, c, title)))
    for folds in args.cross_validate:
        if d.size // folds < 20:
            print(f"{folds}-fold cross-validation skipped: {d.size} events give folds under 20")
            continue
        for label, ex in (("fitted exponent", exponent), ("exponent 0", 0.0)):
            dd, t50, t90 = cross_validated(rows, folds, ex, reco, reco_options)
            print(f"{folds}-fold cross-validated ({label}): calibrated 50% covers {coverage(dd, t50):.1%}, "
                  f"90% covers {coverage(dd, t90):.1%} ({dd.size} events, each with levels derived without it)")
    print(f"exponent {cal.exponent:.3f}, reference {cal.reference:.0f} {cal.feature}, domain "
          f"{cal.domain[0]:.0f}-{cal.domain[1]:.0f}; at the reference: 50% -> {cal.for_event(cal.reference).level_for(0.5):.2f}, "
          f"90% -> {cal.for_event(cal.reference).level_for(0.9):.2f}")
    atomic_write_text(Path(args.out), json.dumps(cal.to_dict(), indent=1) + "\n")
    print(f"calibration written to {args.out}")
    if args.plot:
        print(f"coverage plot: {coverage_plot(rows, cal, Path(args.plot))}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..calibration import load_calibration

    cal = load_calibration(args.calibration)
    rows = usable(read_rows(args.rows))
    seeds = {int(r["seed"]) for r in rows}
    used = set(cal.provenance.get("seeds") or [])
    if seeds & used:
        print(f"warning: seeds {sorted(seeds & used)} were used to derive this calibration: "
              "this is not an independent check", file=sys.stderr)
    print("\n".join(band_lines(rows, cal, f"calibration {cal.version} on independent events (seeds {sorted(seeds)})")))
    if args.plot:
        print(f"coverage plot: {coverage_plot(rows, cal, Path(args.plot))}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m skymap_scanner.utils.calibrate",
                                description="Calibrate a reco's error regions on realistic simulated tracks.")
    sub = p.add_subparsers(dest="step", required=True)
    r = sub.add_parser("run", help="simulate and scan tracks; one JSON row per event")
    r.add_argument("--out", required=True, type=Path, help="rows (JSON lines), appended; resumable")
    r.add_argument("--n-events", type=int, default=100)
    r.add_argument("--seed", type=int, default=1, help="the simulation seed (events 1..N of it)")
    r.add_argument("--reco", default="pandel_mpe")
    r.add_argument("--reco-option", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--nsides", default=DEFAULT_PROGRESSION)
    r.add_argument("--energy-min-gev", type=float, default=3e4)
    r.add_argument("--energy-max-gev", type=float, default=5e6)
    r.add_argument("--local-workers", type=int, default=2)
    r.add_argument("--broker", action="store_true",
                   help="scan over the broker the environment configures (SKYSCAN_BROKER_ADDRESS) instead of "
                        "local workers; start clients with each scan's startup JSON")
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("derive", help="rows -> calibration file + coverage plot")
    d.add_argument("rows", nargs="+", type=Path)
    d.add_argument("--out", required=True, type=Path)
    d.add_argument("--version", default=datetime.date.today().isoformat(), help="the calibration's version")
    d.add_argument("--exponent", default="fit", help="brightness exponent: fit (default) or a number (0: none)")
    d.add_argument("--cross-validate", type=int, nargs="*", default=[2], metavar="K",
                   help="also print K-fold cross-validated coverage (default 2)")
    d.add_argument("--plot", type=Path, help="coverage-vs-threshold plot (PNG)")
    d.set_defaults(func=cmd_derive)
    c = sub.add_parser("check", help="coverage of a calibration on independent rows")
    c.add_argument("rows", nargs="+", type=Path)
    c.add_argument("--calibration", required=True, type=Path)
    c.add_argument("--plot", type=Path)
    c.set_defaults(func=cmd_check)
    e = sub.add_parser("enrich", help="add features and area curves to bench_pandel_accuracy rows")
    e.add_argument("rows", nargs="+", type=Path)
    e.add_argument("--results-dir", required=True, type=Path, help="the benchmark's --save-dir")
    e.add_argument("--out", required=True, type=Path)
    e.set_defaults(func=cmd_enrich)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SkyScanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Accuracy of pandel_mpe scans on simulated tracks (own ice and depth-dependent ice), and real alerts.

    python benchmarks/bench_pandel_accuracy.py [--n-tracks 50] [--ice pandel depth]
        [--nsides "8:0 64:12 256:12"] [--out results.jsonl]
    python benchmarks/bench_pandel_accuracy.py --real-events ../shared/data/events

Simulated: ``--n-tracks`` tracks per ice model (seeded; isotropic, log-uniform 30 TeV - 1 PeV,
impact <= ``--impact-max-m`` from the detector centre, 500 Hz noise), each scanned in embedded
mode with ``scan_event`` (2 local workers). Reported per ice model: angular distance of the
best pixel from the truth (median, 90th percentile) and the coverage of the Wilks 50% / 90%
contours, i.e. the fraction of tracks with 2 (llh(truth) - llh(best)) <= 1.386 / 4.605, where
llh(truth) is the pandel_mpe fit at the true direction (all variations, plus one seeded from the
best pixel's vertex) and llh(best) the smaller of that and the scan's best. The 50% / 90%
quantiles of 2 Delta-llh are printed too: those thresholds would have covered.

Real events: the two track alerts are scanned with the default progression and compared with
IceCube's recorded SPEFit2, MPEFit and SplineMPE directions (from ../shared/data/README.md); by
default without the online fits' vertices as seeds, so the comparison is independent of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from skymap_scanner.pixels import DEFAULT_PROGRESSION

WILKS_50 = 1.386
WILKS_90 = 4.605

# IceCube's online fits of the two track alerts, local (zenith, azimuth) in rad (shared/data/README.md)
RECORDED = {
    "run00136662-evt000035405932-BRONZE.pkl": {
        "SplineMPE": (1.51078, 0.66587), "SPEFit2": (1.51384, 0.70064), "MPEFit": (1.51121, 0.69551)},
    "138632_31747601.json": {
        "SplineMPE": (1.57163, 4.87687), "SPEFit2": (1.56891, 4.87688), "MPEFit": (1.5724, 4.87674)},
}


def angle_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    c = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def best_radec(result) -> tuple[int, int, float, float, float]:  # type: ignore[no-untyped-def]
    """(nside, pixel, llh, ra, dec) of the scan's best pixel; ra, dec in rad."""
    from skymap_scanner.pixels import pixel_radec

    nside, pixel, llh = result.best()
    ra, dec = pixel_radec(nside, pixel)
    return nside, pixel, llh, float(ra), float(dec)


def truth_llh(event, truth, best_row, options: dict[str, str]) -> float:  # type: ignore[no-untyped-def]
    """Best pandel_mpe llh at the true direction: every variation, plus the best pixel's vertex as seed."""
    from skymap_scanner.recos.base import Vertex
    from skymap_scanner.recos.pandel_mpe import PandelMPE

    reco = PandelMPE(options)
    prep = reco.prepare(event)
    llhs = [reco.fit(prep, truth.zenith_rad, truth.azimuth_rad, pv, None).llh for pv in range(reco.n_posvar)]
    seed = Vertex(float(best_row["X"]), float(best_row["Y"]), float(best_row["Z"]), float(best_row["T"]))
    llhs += [reco.fit(prep, truth.zenith_rad, truth.azimuth_rad, pv, seed).llh for pv in (0, 1)]
    return float(np.nanmin(llhs))


def run_simulated(args: argparse.Namespace) -> None:
    from skymap_scanner.scan import scan_event
    from skymap_scanner.utils.simulate import random_track

    out = open(args.out, "a") if args.out else None  # noqa: SIM115 - closed below
    try:
        for ice, reco_ice in [(i, r) for i in args.ice for r in args.reco_ice]:
            rng = np.random.default_rng(args.seed)  # the same tracks for every reco ice
            options = {"ice": reco_ice}
            label = f"{ice}/{reco_ice}"
            rows = []
            t_ice = time.perf_counter()
            for i in range(1, args.n_tracks + 1):
                impact = None if ice == "realistic" else args.impact_max_m
                event, truth = random_track(rng, ice=ice, impact_max_m=impact, event_id=i, run_id=args.seed)
                if i <= args.skip:
                    continue
                t = time.perf_counter()
                result = scan_event(event, "pandel_mpe", nsides=args.nsides, local_workers=args.local_workers,
                                    reco_options=options)
                wall = time.perf_counter() - t
                if args.save_dir:
                    d = Path(args.save_dir) / f"{ice}-{reco_ice}-seed{args.seed}-{i:04d}"
                    d.mkdir(parents=True, exist_ok=True)
                    result.write_npz(d)
                nside, pixel, llh_best, ra, dec = best_radec(result)
                miss = angle_deg(ra, dec, truth.ra_rad, truth.dec_rad)
                row_best = result.maps[nside][result.maps[nside]["index"] == pixel][0]
                llh_true = truth_llh(event, truth, row_best, options)
                two_dllh = 2.0 * (llh_true - min(llh_best, llh_true))
                details = truth.details or {}
                row = {"ice": ice, "reco_ice": reco_ice, "seed": args.seed, "track": i,
                       "energy_gev": truth.energy_gev, "n_hit_doms": truth.n_hit_doms,
                       "n_pulses": truth.n_pulses, "qtot_pe": truth.qtot_pe,
                       "zenith_rad": truth.zenith_rad, "azimuth_rad": truth.azimuth_rad,
                       "ra_rad": truth.ra_rad, "dec_rad": truth.dec_rad,
                       "coincident": details.get("coincident") is not None,
                       "starting": (details.get("primary") or {}).get("s_start_m") is not None,
                       "best_nside": nside, "best_pixel": pixel,
                       "miss_deg": miss, "two_delta_llh": two_dllh, "llh_best": llh_best, "llh_true": llh_true,
                       "scan_s": wall, "nsides": args.nsides}
                rows.append(row)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                print(f"{label:9s} #{i:3d} E {truth.energy_gev:9.3g} GeV {truth.n_hit_doms:4d} DOMs: best pixel "
                      f"{miss:6.2f} deg from truth, 2dllh(truth) {two_dllh:7.2f}, scan {wall:5.1f} s", flush=True)
            summarise(label, rows, time.perf_counter() - t_ice, args.nsides)
    finally:
        if out:
            out.close()


def summarise(ice: str, rows: list[dict[str, float]], wall: float, nsides: str) -> None:
    miss = np.array([r["miss_deg"] for r in rows])
    d = np.array([r["two_delta_llh"] for r in rows])
    print(f"== {ice} ice, {len(rows)} tracks, nsides {nsides!r}, {wall / 60:.1f} min: "
          f"median {np.median(miss):.2f} deg, 90th percentile {np.percentile(miss, 90):.2f} deg; "
          f"Wilks coverage 50%: {np.mean(d <= WILKS_50):.0%} (2dllh <= {WILKS_50}), "
          f"90%: {np.mean(d <= WILKS_90):.0%} (2dllh <= {WILKS_90}); thresholds that would cover: "
          f"50% -> {np.percentile(d, 50):.2f}, 90% -> {np.percentile(d, 90):.2f}", flush=True)


def run_real(args: argparse.Namespace) -> None:
    from skymap_scanner.coords import local_to_equatorial
    from skymap_scanner.events import load_event
    from skymap_scanner.scan import scan_event

    for name, fits in RECORDED.items():
        event = load_event(Path(args.real_events) / name)
        t = time.perf_counter()
        options = {"use_online_seeds": "true" if args.online_seeds else "false"}
        result = scan_event(event, "pandel_mpe", nsides=args.real_nsides, local_workers=args.local_workers,
                            reco_options=options)
        wall = time.perf_counter() - t
        nside, pixel, llh, ra, dec = best_radec(result)
        print(f"{name}: {event.pulses.n_doms} hit DOMs; scan {args.real_nsides!r} {wall:.1f} s; best pixel "
              f"nside {nside} #{pixel}: RA {math.degrees(ra):.3f} deg, Dec {math.degrees(dec):.3f} deg")
        for fit, (zen, azi) in fits.items():
            fra, fdec = local_to_equatorial(zen, azi, event.mjd)
            print(f"    {fit:9s} RA {math.degrees(float(fra)):8.3f} Dec {math.degrees(float(fdec)):7.3f}: "
                  f"{angle_deg(ra, dec, float(fra), float(fdec)):.2f} deg from our best pixel", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-tracks", type=int, default=50, help="tracks per ice model (default 50)")
    p.add_argument("--ice", nargs="+", default=["realistic", "depth"], choices=["pandel", "depth", "realistic"],
                   help="realistic = the simulator's realistic mode (its own delay model, stochastic losses, "
                        "coincident muons, PMT effects, noise, online cleaning; E^-2 30 TeV-5 PeV, impact <= 500 m)")
    p.add_argument("--reco-ice", nargs="+", default=["depth"], choices=["depth", "homogeneous"],
                   help="pandel_mpe's ice option(s); each scans the same tracks")
    p.add_argument("--nsides", default=DEFAULT_PROGRESSION, help="progression for the simulated tracks")
    p.add_argument("--skip", type=int, default=0, help="simulate but do not scan the first SKIP tracks (resume)")
    p.add_argument("--save-dir", help="write each track's result .npz under SAVE_DIR/<ice>-<reco_ice>-seed<S>-<n>/")
    p.add_argument("--impact-max-m", type=float, default=300.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--local-workers", type=int, default=2)
    p.add_argument("--out", help="append one JSON line per track here")
    p.add_argument("--real-events", help="directory with the real alerts; scan those instead")
    p.add_argument("--real-nsides", default=DEFAULT_PROGRESSION)
    p.add_argument("--online-seeds", action="store_true",
                   help="real events: let the reco seed vertices from the event's online fits (off by default, "
                        "so the comparison with those fits is independent)")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    if args.real_events:
        run_real(args)
    else:
        run_simulated(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

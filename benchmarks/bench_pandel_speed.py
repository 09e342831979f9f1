"""Speed of the pandel_mpe reco: fits per second per core, and a full default embedded scan.

    python benchmarks/bench_pandel_speed.py [--target-doms 250] [--skip-scan]

Simulates (seeded, H2 ice, 500 Hz noise) a track with about ``--target-doms`` hit DOMs after
cleaning, then
1. times single-process fits over random directions, as the first nside does (no seed, each
   minimised variation) and as refined nsides do (parent seed; variations >= 2 only evaluated);
2. runs the full default scan (8:0 64:12 512:24, all variations) with ``scan_event`` on 2 local
   workers and reports its wall time and how far the best pixel is from the truth.
The machine's load average is printed: the cores are shared, so figures move with it.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from bench_pandel_accuracy import angle_deg, best_radec  # sibling script (benchmarks/ is on sys.path)


def make_event(target_doms: int, seed: int):  # type: ignore[no-untyped-def]
    """The first simulated track (fixed geometry, energy scanned upwards) reaching target_doms."""
    from skymap_scanner.recos.pandel_mpe import PandelMPE
    from skymap_scanner.utils.simulate import simulate_track

    reco = PandelMPE()
    for energy in np.geomspace(2e4, 2e6, 60):
        rng = np.random.default_rng(seed)
        event, truth = simulate_track(rng, zenith_rad=1.9, azimuth_rad=0.8, energy_gev=float(energy),
                                      impact_m=(40.0, 25.0), ice="depth", mjd=60300.0)
        prep = reco.prepare(event)
        if prep.hits.t1_ns.size >= target_doms:
            return event, truth, prep
    raise RuntimeError("no energy gave enough DOMs")


def time_fits(prep, n_dirs: int, seed: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from skymap_scanner.recos.base import Vertex
    from skymap_scanner.recos.pandel_mpe import PandelMPE

    reco = PandelMPE()
    rng = np.random.default_rng(seed)
    dirs = [(math.acos(rng.uniform(-1, 1)), rng.uniform(0, 2 * math.pi)) for _ in range(n_dirs)]
    out: dict[str, float] = {}
    t = time.perf_counter()
    for zen, azi in dirs:
        for pv in range(reco.n_posvar):
            reco.fit(prep, zen, azi, pv, None)
    dt = time.perf_counter() - t
    out["first_nside_fits_per_s"] = n_dirs * reco.n_posvar / dt
    seeds = [reco.fit(prep, zen, azi, 0, None) for zen, azi in dirs]
    t = time.perf_counter()
    for (zen, azi), s in zip(dirs, seeds, strict=True):
        for pv in range(reco.n_posvar):
            reco.fit(prep, zen + 0.01, azi + 0.01, pv, Vertex(s.X, s.Y, s.Z, s.T))
    dt = time.perf_counter() - t
    out["refined_fits_per_s"] = n_dirs * reco.n_posvar / dt
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target-doms", type=int, default=250, help="hit DOMs after cleaning (default 250)")
    p.add_argument("--n-dirs", type=int, default=100, help="directions for the per-fit timing")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--nsides", default="8:0 64:12 512:24")
    p.add_argument("--local-workers", type=int, default=2)
    p.add_argument("--skip-scan", action="store_true", help="only the single-process fit timing")
    args = p.parse_args()

    event, truth, prep = make_event(args.target_doms, args.seed)
    print(f"event: {event.pulses.n_doms} hit DOMs ({len(event.pulses)} pulses, {event.pulses.qtot_pe:.0f} PE) "
          f"before cleaning, {prep.hits.t1_ns.size} after; E = {truth.energy_gev:.3g} GeV, depth ice")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rates = time_fits(prep, args.n_dirs, args.seed)
    print(f"single process: {rates['first_nside_fits_per_s']:.1f} fits/s at the first nside (all minimised), "
          f"{rates['refined_fits_per_s']:.1f} fits/s at refined nsides (parent seed)")
    if args.skip_scan:
        return 0
    from skymap_scanner.scan import scan_event

    t = time.perf_counter()
    result = scan_event(event, "pandel_mpe", nsides=args.nsides, local_workers=args.local_workers)
    wall = time.perf_counter() - t
    n_pix = {n: m.size for n, m in result.maps.items()}
    nside, pixel, llh, ra, dec = best_radec(result)
    miss = angle_deg(ra, dec, truth.ra_rad, truth.dec_rad)
    n_fits = sum(n_pix.values()) * 3
    print(f"full scan {args.nsides!r} on {args.local_workers} local workers: {wall:.1f} s wall, pixels {n_pix} "
          f"({n_fits} pixel-variation fits, {n_fits / wall:.1f} fits/s overall); best pixel nside {nside} "
          f"#{pixel} llh {llh:.2f}, {miss:.2f} deg from the truth")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

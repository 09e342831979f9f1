"""Scan-engine overhead: pixels/s and server memory per pixel with a (nearly) zero-cost reco.

Two measurements per progression:
* engine only: pixel generation + collection + refinement in one process (no workers);
* full embedded pipeline: the same ScanRunner loop the server uses, with N local worker
  processes running the ``dummy`` reco (one posvar, no sleep), messages as JSON.
Memory is the server process's peak RSS growth over its baseline, divided by the
number of pixels scanned (workers are separate processes and not counted).

Usage: python benchmarks/bench_engine.py [--progressions "8:0 64:12 512:24" "1024:0"] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import resource
import time

import healpy as hp
import numpy as np

from skymap_scanner.collector import FIT_FIELDS
from skymap_scanner.engine import ScanEngine
from skymap_scanner.events import native
from skymap_scanner.pixels import parse_progression, pixel_radec
from skymap_scanner.scan import ScanRunner, ScanSpec
from skymap_scanner.transport.embedded import EmbeddedTransport


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def engine_only(progression: str) -> tuple[int, float, float]:
    steps = parse_progression(progression)
    base = rss_mb()
    t0 = time.perf_counter()
    e = ScanEngine(steps, n_posvar=1)
    truth = hp.ang2vec(0.9, 2.0)
    peak = base
    while not e.done:
        w = e.pop_work(65536)
        assert w is not None
        ra, dec = pixel_radec(w.nside, w.pixels)
        llh = 100.0 * (1 - hp.ang2vec(np.pi / 2 - dec, ra) @ truth)
        fits = np.zeros((w.pixels.size, len(FIT_FIELDS)))
        fits[:, 0] = llh
        e.ingest(w.nside, w.pixels, w.posvars, fits)
        peak = max(peak, rss_mb())
    dt = time.perf_counter() - t0
    npix = sum(s.n_expected for s in e.stores)
    return npix, npix / dt, (peak - base) * 2**20 / npix


def pipeline(progression: str, workers: int, event_doc: dict) -> tuple[int, float, float, float]:
    event = native.from_dict(event_doc, "bench")
    spec = ScanSpec(event, "dummy", {"n_posvar": "1"}, progression, progress_interval_s=30.0,
                    result_interval_s=1e9)
    transport = EmbeddedTransport(event_doc, "dummy", {"n_posvar": "1"}, workers)
    transport.start()
    base = rss_mb()
    runner = ScanRunner(spec, transport)
    t0 = time.perf_counter()
    try:
        result = runner.run()
    finally:
        runner.close()
        transport.close()
    dt = time.perf_counter() - t0
    npix = sum(a.size for a in result.maps.values())
    return npix, npix / dt, (peak_rss_mb() - base) * 2**20 / npix, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--progressions", nargs="+", default=["8:0 64:12 512:24", "256:0", "1024:0"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-pipeline-above", type=int, default=10**9, help="skip the pipeline for more pixels")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    doc = native.to_dict(native.from_dict({
        "format": "skymap-scanner-event/1", "run_id": 1, "event_id": 1, "event_type": "bench", "mjd": 60000.0,
        "is_real_event": False, "geometry": "icecube86",
        "pulses": {"string": [36, 36], "om": [30, 31], "time": [0.0, 10.0], "charge": [1.0, 1.0], "lc": [True, True]},
    }, "bench"))
    print(f"{'progression':>22} {'pixels':>10} | {'engine px/s':>12} {'B/px':>7} | "
          f"{'pipeline px/s':>13} {'server B/px':>11} {'wall s':>7}")
    for prog in args.progressions:
        n, rate, bpp = engine_only(prog)
        line = f"{prog:>22} {n:>10} | {rate:>12.0f} {bpp:>7.1f} | "
        if n <= args.skip_pipeline_above:
            n2, rate2, bpp2, dt = pipeline(prog, args.workers, doc)
            line += f"{rate2:>13.0f} {bpp2:>11.1f} {dt:>7.1f}"
        else:
            line += f"{'skipped':>13}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

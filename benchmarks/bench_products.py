"""Time to make every sky-map product for a 3-nside scan (prints numbers; not a test).

    python benchmarks/bench_products.py [--repeat N] [--result FILE.npz [--legacy-dec-sign]]

Default input: a synthetic 8/64/512 scan (Gaussian llh, nside 64 within 15 deg and nside 512 within
5 deg of the best fit: 768 + ~850 + ~7,500 pixels). Reports the wall time of make_products (all
products: summary, MOC FITS, nside-512 llh FITS, two PNG and two PDF plots) and of its stages.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--result", type=Path)
    p.add_argument("--legacy-dec-sign", action="store_true")
    args = p.parse_args()

    t0 = time.perf_counter()
    from skymap_scanner.products import (
        LEVEL_SETS,
        best_fit,
        build_multires,
        make_products,
        make_region,
        plots,
        read_scan,
    )
    from skymap_scanner.products import fits as pfits
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # test support: synthetic scans
    from synthetic import Gaussian, gaussian_scan, snap_to_pixel, write_result_npz

    print(f"imports: {time.perf_counter() - t0:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        if args.result is None:
            ra, dec = snap_to_pixel(48.0, -3.5, 512)
            arrays = gaussian_scan(Gaussian(ra, dec, sx=1.0, sy_plus=0.6, sy_minus=0.8))
            result = write_result_npz(Path(tmp) / "synthetic.npz", arrays, header=dict(
                run_id=1, event_id=2, event_type="TEST", mjd=60000.5))
            print("input: synthetic 8/64/512 scan, pixels per nside:", {k: v[0].size for k, v in arrays.items()})
        else:
            result = args.result
            print(f"input: {result}")
        times, cpu = [], []
        for i in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            make_products(result, Path(tmp) / f"out{i}", legacy_dec_sign=args.legacy_dec_sign)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        print(f"load average (1 min) before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"make_products (all products), {args.repeat} runs: wall " + ", ".join(f"{x:.2f}" for x in times)
              + f" s (median {statistics.median(times):.2f} s); CPU " + ", ".join(f"{x:.2f}" for x in cpu)
              + f" s (median {statistics.median(cpu):.2f} s)")

        stages: dict[str, float] = {}

        def stage(name: str, t: float) -> None:
            stages[name] = time.perf_counter() - t

        t = time.perf_counter()
        scan = read_scan(result, legacy_dec_sign=args.legacy_dec_sign)
        stage("read npz", t)
        t = time.perf_counter()
        m = build_multires(scan)
        stage(f"multi-res map ({m.llh.size} leaves)", t)
        t = time.perf_counter()
        fit = best_fit(scan)
        regions = [make_region(m, ls, fit) for ls in LEVEL_SETS]
        stage("best fit + 4 regions (areas, errors)", t)
        meta = pfits.Meta(scan.event, fit, None, scan.nsides)
        t = time.perf_counter()
        pfits.write_hdul(pfits.moc_hdul(m, meta), Path(tmp) / "m.fits")
        stage("MOC FITS", t)
        t = time.perf_counter()
        pfits.write_hdul(pfits.llh_hdul(m, meta), Path(tmp) / "l.fits")
        stage("llh FITS (nside 512)", t)
        t = time.perf_counter()
        plots.save_figure(plots.fullsky_figure(scan, m, fit, LEVEL_SETS, regions), Path(tmp) / "f.png", Path(tmp) / "f.pdf")
        stage("full-sky plot (png+pdf)", t)
        t = time.perf_counter()
        plots.save_figure(plots.zoom_figure(scan, m, fit, LEVEL_SETS, regions), Path(tmp) / "z.png", Path(tmp) / "z.pdf")
        stage("zoom plot (png+pdf)", t)
        for name, sec in stages.items():
            print(f"  {name}: {sec:.3f} s")


if __name__ == "__main__":
    main()

"""Cost of the ``external`` reco's pipe: per-fit overhead against the in-process ``dummy``, and a
full default scan through it compared pixel for pixel with the in-process scan.

    python benchmarks/bench_external_reco.py [--fits 20000] [--skip-scan]

1. Times ``fit_batch`` over the same ``--fits`` random directions (seeds on two thirds) for the
   in-process ``dummy``, the Python reference child (``tests/external_children/dummy_child.py``,
   the dummy itself behind the pipe) and the C reference child (built here with gcc), with
   requests of 1, 8, 64 and 256 fits. Overhead = time per fit minus the in-process time per fit.
   Best of ``--repeat`` runs.
2. Runs the default scan (8:0 64:12 512:24, 2 local workers) of the sample Bronze alert with
   ``dummy``, then ``external`` with each child, and checks that every nside's pixels and all
   seven fields are identical.
The machine's load average is printed: the cores are shared, so figures move with it.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
CHILDREN = REPO / "tests" / "external_children"
BATCHES = (1, 8, 64, 256)


def build_c_child(workdir: Path) -> Path | None:
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    exe = workdir / "dummy_child"
    subprocess.run([gcc, "-O2", "-ffp-contract=off", "-o", str(exe), str(CHILDREN / "dummy_child.c"), "-lm"],
                   check=True)
    return exe


def commands(c_exe: Path | None) -> dict[str, str]:
    from skymap_scanner.events import load_event
    from skymap_scanner.recos.dummy import DummyReco

    out = {"python child": f"{shlex.quote(sys.executable)} {shlex.quote(str(CHILDREN / 'dummy_child.py'))}"}
    if c_exe is not None:
        prep = DummyReco().prepare(load_event(SAMPLE))
        v = prep.vertex
        nums = [*prep.planted_unit, prep.qtot_pe, v.x_m, v.y_m, v.z_m, v.t_ns]
        out["C child"] = " ".join([shlex.quote(str(c_exe)), *map(repr, nums), "2"])
    return out


def time_per_fit(reco, prepared, requests, batch: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = math.inf
    for _ in range(repeat):
        t = time.perf_counter()
        for i in range(0, len(requests), batch):
            reco.fit_batch(prepared, requests[i:i + batch])
        best = min(best, time.perf_counter() - t)
    return best / len(requests)


def overhead(n_fits: int, repeat: int, cmds: dict[str, str]) -> None:
    from skymap_scanner.events import load_event
    from skymap_scanner.recos import FitRequest, Vertex, make_reco

    rng = np.random.default_rng(1)
    reqs = [FitRequest(math.acos(rng.uniform(-1, 1)), rng.uniform(0, 2 * math.pi), i % 2,
                       Vertex(*rng.normal(0, 300, 4).tolist()) if i % 3 else None, 512, i) for i in range(n_fits)]
    event = load_event(SAMPLE)
    dummy = make_reco("dummy")
    dprep = dummy.prepare(event)
    base = {b: time_per_fit(dummy, dprep, reqs, b, repeat) for b in BATCHES}
    print(f"\n1. per-fit time over {n_fits} fits, best of {repeat} (ms per fit; overhead = minus in-process)")
    print(f"{'reco':<14}" + "".join(f"{'batch ' + str(b):>22}" for b in BATCHES))
    print(f"{'dummy':<14}" + "".join(f"{base[b] * 1e3:>22.4f}" for b in BATCHES))
    for name, cmd in cmds.items():
        reco = make_reco("external", {"command": cmd, "max_batch": str(max(BATCHES))})
        prep = reco.prepare(event)
        try:
            cells = []
            for b in BATCHES:
                t = time_per_fit(reco, prep, reqs, b, repeat)
                cells.append(f"{t * 1e3:.4f} (+{(t - base[b]) * 1e3:.4f})")
            assert reco.fit_batch(prep, reqs[:500]) == dummy.fit_batch(dprep, reqs[:500]), "answers differ"
        finally:
            reco.close()  # type: ignore[attr-defined]
        print(f"{name:<14}" + "".join(f"{c:>22}" for c in cells))


def run_scan(out: Path, reco_args: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE), *reco_args,
                           "--output-dir", str(out), "--local-workers", "2", "--no-products"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"scan failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t


def full_scan(workdir: Path, cmds: dict[str, str]) -> None:
    from skymap_scanner.results import load_result

    print("\n2. default scan 8:0 64:12 512:24, 2 local workers, sample Bronze alert")
    ref_dir = workdir / "dummy"
    wall = run_scan(ref_dir, ["--reco-algo", "dummy"])
    (ref_npz,) = ref_dir.glob("*.npz")
    ref = load_result(ref_npz).maps
    n = sum(a.size for a in ref.values())
    print(f"{'dummy':<14} {wall:6.1f} s wall, {n} pixels")
    for name, cmd in cmds.items():
        d = workdir / name.replace(" ", "_")
        wall = run_scan(d, ["--reco-algo", "external", "--reco-option", f"command={cmd}"])
        (npz,) = d.glob("*.npz")
        got = load_result(npz).maps
        same = sorted(got) == sorted(ref) and all(
            np.array_equal(got[k]["index"], ref[k]["index"])
            and all(np.array_equal(got[k][f], ref[k][f]) for f in ("llh", "E_in", "E_tot", "X", "Y", "Z", "T"))
            for k in ref)
        print(f"{name:<14} {wall:6.1f} s wall, {sum(a.size for a in got.values())} pixels, "
              f"identical to dummy pixel for pixel: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fits", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-scan", action="store_true")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        c_exe = build_c_child(Path(tmp))
        if c_exe is None:
            print("gcc not found: the C child is left out")
        cmds = commands(c_exe)
        overhead(args.fits, args.repeat, cmds)
        if not args.skip_scan:
            full_scan(Path(tmp), cmds)


if __name__ == "__main__":
    main()

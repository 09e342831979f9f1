"""Decode speed of IceCube realtime alerts: whole file -> cleaned Event, and where the time goes.

    python benchmarks/bench_decode.py [--repeat N] [FILES...]

Prints, per file, the median wall time (ms) of: load_event (all steps); frame
parsing with CRC-32C over all frames; SuperDST decoding; the online cleaning.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from skymap_scanner.events import load_event, read_document
from skymap_scanner.events.geometry import icecube86
from skymap_scanner.events.i3live import cleaning, decode_alert, envelope
from skymap_scanner.events.i3live.frame import parse_frame
from skymap_scanner.events.i3live.superdst import decode_superdst

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "events"


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _bench_file(path: Path, repeat: int) -> str:
    raw = path.read_bytes()
    doc, _ = read_document(path)
    env = envelope.parse_envelope(doc)
    payloads = [(stop, envelope.frame_payload(b64)) for stop, b64 in env.frames]
    alert = decode_alert(doc, str(path))
    q = [f for f in alert.frames if f.stop == "Q"][-1]
    sp = alert.split_pulses
    x, y, z = icecube86().positions(sp.string, sp.om)
    xyz = np.stack([x, y, z], axis=1)
    t_all = _median_ms(lambda: load_event(path), repeat)
    t_frames = _median_ms(lambda: [parse_frame(p, s) for s, p in payloads], repeat)
    slot = q.get("I3SuperDST")
    buf = slot.buf if slot is not None else b""
    t_dst = _median_ms(lambda: decode_superdst(buf), repeat) if slot is not None else float("nan")
    t_clean = _median_ms(lambda: cleaning.online_cleaning(sp.string, sp.om, sp.time_ns, sp.lc, xyz), repeat)
    return (f"{path.name:<42} {len(raw):>8} {sp.n_pulses:>6} {t_all:>11.1f} {t_frames:>11.1f} "
            f"{t_dst:>9.1f} {t_clean:>9.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args()
    files = args.files or sorted(DATA.iterdir())
    icecube86()  # geometry table is read once per process; keep it out of the numbers
    print(f"{'file':<42} {'bytes':>8} {'split':>6} {'load_event':>11} {'frames+crc':>11} "
          f"{'superdst':>9} {'cleaning':>9}   (median ms of {args.repeat})")
    for path in files:
        print(_bench_file(path, args.repeat))


if __name__ == "__main__":
    main()

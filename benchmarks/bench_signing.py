"""The cost of signing messages (prints numbers; no broker): encode + decode of a result message of
N fits, unsigned (issue 14's path) and in a signed envelope (seal, then verify, replay check and decode),
per message and per fit.

    python benchmarks/bench_signing.py [--items 8 64 256 1024] [--repeat 2000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from skymap_scanner.messages import ResultMessage, decode_result
from skymap_scanner.signing import Verifier, new_key, seal


def result(n: int) -> ResultMessage:
    rng = np.random.default_rng(1)
    return ResultMessage("bench-scan", 1, 64, np.arange(n, dtype=np.int64), np.zeros(n, np.int64),
                         rng.normal(size=(n, 7)), (None,) * n, rng.random(n), "bench-client")


def per_message_s(fn: object, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()  # type: ignore[operator]
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, nargs="+", default=[8, 64, 256, 1024])
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    key = new_key()
    print("fits/msg   unsigned us/msg   signed us/msg   extra   (encode -> wire JSON -> decode)")
    for n in args.items:
        msg = result(n)
        repeat = max(50, args.repeat * 8 // max(n, 8))

        def plain(msg: ResultMessage = msg) -> None:
            wire = json.dumps(msg.to_dict())  # what mqclient puts on the wire, and hands over decoded
            decode_result(json.loads(wire))

        verifier = Verifier(key, "result")  # replay memory off: each repeat sends the same bytes

        def signed(msg: ResultMessage = msg, verifier: Verifier = verifier) -> None:
            wire = json.dumps(seal(msg.to_dict(), "result", key))
            decode_result(verifier.open(json.loads(wire)))

        a, b = per_message_s(plain, repeat), per_message_s(signed, repeat)
        print(f"{n:8d}   {a * 1e6:15.0f}   {b * 1e6:13.0f}   {100 * (b - a) / a:+5.0f}%")


if __name__ == "__main__":
    main()

"""A reference external reco in Python: the ``dummy`` landscape behind ``skymap-scanner-reco/1``.

Run as ``python dummy_child.py``; it reads requests on stdin and answers on stdout (one JSON
object per line) and writes its own chatter to stderr. Options (all strings, given by the
scanner in its hello): ``sleep_s`` and ``n_posvar`` as for ``dummy``; ``batch`` (max_batch it
announces, default 256); and, for fault tests, ``crash_once`` / ``hang_once`` / ``garbage_once``
(a marker-file path: the fault happens once, at the first fit request while that file does not
exist, and creates it), ``crash_always`` (exit at every fit request), ``pid_dir`` (write
``<pid>.pid`` there) and ``protocol`` (announce another protocol version).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from skymap_scanner.events import event_from_json_dict
from skymap_scanner.recos import Vertex
from skymap_scanner.recos.dummy import DummyReco

PROTOCOL = "skymap-scanner-reco/1"
FAULTS = ("crash_once", "hang_once", "garbage_once", "crash_always", "pid_dir", "protocol", "batch")


def send(out: TextIO, kind: str, **fields: Any) -> None:
    out.write(json.dumps({"protocol": PROTOCOL, "type": kind, **fields}, separators=(",", ":")) + "\n")
    out.flush()


def first_time(marker: str) -> bool:
    """True once: when ``marker`` does not exist yet (it is created)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def main() -> int:
    out = sys.stdout
    sys.stdout = sys.stderr  # anything printed by accident must not corrupt the protocol
    print(f"dummy child {os.getpid()} starting", file=sys.stderr, flush=True)
    reco: DummyReco | None = None
    prepared = None
    opts: dict[str, str] = {}
    for line in sys.stdin:
        msg = json.loads(line)
        kind = msg.get("type")
        if msg.get("protocol") != PROTOCOL:
            send(out, "error", message=f"this child speaks {PROTOCOL} only")
            continue
        if kind == "hello":
            opts = dict(msg["options"])
            reco = DummyReco({k: v for k, v in opts.items() if k in DummyReco.OPTIONS})  # the scanner refuses others
            if "pid_dir" in opts:
                Path(opts["pid_dir"], f"{os.getpid()}.pid").write_text(str(os.getpid()))
            hello = {"protocol": opts.get("protocol", PROTOCOL), "type": "hello", "reco": "pydummy",
                     "n_posvar": reco.n_posvar, "max_batch": int(opts.get("batch", "256")),
                     "options_accepted": [*DummyReco.OPTIONS, *FAULTS]}
            out.write(json.dumps(hello) + "\n")
            out.flush()
        elif kind == "prepare":
            assert reco is not None
            prepared = reco.prepare(event_from_json_dict(msg["event"], "<prepare>"))
            frames = msg.get("realtime_frames") or []
            print(f"prepared event {msg['event']['run_id']}:{msg['event']['event_id']} with "
                  f"{len(frames)} realtime frames ({''.join(f['stop'] for f in frames)})", file=sys.stderr, flush=True)
            send(out, "prepared")
        elif kind == "fit":
            assert reco is not None and prepared is not None
            if opts.get("crash_always") == "true" or ("crash_once" in opts and first_time(opts["crash_once"])):
                print("crashing on purpose", file=sys.stderr, flush=True)
                os._exit(3)
            if "hang_once" in opts and first_time(opts["hang_once"]):
                print("hanging on purpose", file=sys.stderr, flush=True)
                time.sleep(3600)
            if "garbage_once" in opts and first_time(opts["garbage_once"]):
                out.write("this is not JSON {\n")
                out.flush()
                continue
            results = []
            for f in msg["fits"]:
                seed = f["seed"]
                r = reco.fit(prepared, f["zenith"], f["azimuth"], f["posvar"], Vertex(*seed) if seed else None)
                results.append({"llh": r.llh, "E_in": r.E_in, "E_tot": r.E_tot, "X": r.X, "Y": r.Y, "Z": r.Z,
                                "T": r.T})
            send(out, "result", id=msg["id"], results=results)
        elif kind == "bye":
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

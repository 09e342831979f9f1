"""Say what is in an event file: ids, time, frames and objects, pulse counts, online fits with RA/Dec.

    python -m skymap_scanner.cli.describe EVENT [--json]

``--json`` prints one JSON object (angles in rad, charge in PE); nch/npulses/qtot are
counted after IceCube's online cleaning, as the alert message records them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skymap_scanner.cli.describe",
        description="Print what an event file holds (IceCube realtime alert .json/.pkl, or skymap-scanner-event/1).",
    )
    p.add_argument("event", help="event file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return p


def _read(path: str) -> tuple[Any, Any]:
    """(Event, Alert or None): an i3live file keeps its decoded frames for the description."""
    from ..errors import EventError
    from ..events import i3live, native, read_document

    doc, pickled = read_document(path)
    if not pickled and isinstance(doc, dict) and "format" in doc:
        return native.from_dict(doc, path), None
    if not isinstance(doc, dict):
        raise EventError(path, "not an IceCube realtime message nor a skymap-scanner-event/1 document")
    alert = i3live.decode_alert(doc, path)
    return i3live.event_from_alert(alert, path), alert


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def describe(path: str) -> dict[str, Any]:
    """The description as a JSON-ready dict (angles in rad)."""
    import numpy as np

    from ..coords import local_to_equatorial
    from ..events.i3live import cleaning
    from ..events.native import windows_to_list
    from ..events.windows import mask_outside_windows

    event, alert = _read(path)
    p = event.pulses
    st = cleaning.stats(p.string, p.om, p.charge_pe)
    fits = list(event.online_fits.values())
    out: dict[str, Any] = {
        "source": path,
        "format": f"i3live {alert.layout}" if alert is not None else "skymap-scanner-event/1",
        "run_id": event.run_id, "event_id": event.event_id, "event_type": event.event_type,
        "name": event.name, "mjd": event.mjd, "is_real_event": event.is_real_event,
        "nch": st.nch, "npulses": st.npulses, "qtot": st.qtot,
        "online_fits": {},
        "calibration_errata": windows_to_list(event.calibration_errata),
        "saturation_windows": windows_to_list(event.saturation_windows),
        "pulses_in_errata": int((~mask_outside_windows(p, event.calibration_errata)).sum()),
    }
    if fits:
        ra, dec = local_to_equatorial([f.zenith_rad for f in fits], [f.azimuth_rad for f in fits], event.mjd)
        for f, r, d in zip(fits, np.atleast_1d(ra), np.atleast_1d(dec), strict=True):
            out["online_fits"][f.name] = {
                "zenith": f.zenith_rad, "azimuth": f.azimuth_rad, "ra": float(r), "dec": float(d),
                "x": _num(f.x_m), "y": _num(f.y_m), "z": _num(f.z_m), "time": _num(f.time_ns),
            }
    if alert is not None:
        sp = alert.split_pulses
        out["time_utc"] = alert.event_time
        out["split_pulses"] = {"key": alert.pulse_key, "npulses": sp.n_pulses, "nch": sp.n_keys,
                               "qtot": round(float(sp.charge_pe.astype(np.float64).sum()), 5)}
        out["recorded"] = {k: alert.recorded[k] for k in ("nch", "npulses", "qtot", "eventtime")
                           if k in alert.recorded}
        out["frames"] = [
            {"stop": f.stop, "version": f.version,
             "objects": [{"key": s.key, "type": s.type_name, "bytes": len(s.buf)} for s in f.slots]}
            for f in alert.frames
        ]
    return out


def _text(d: dict[str, Any]) -> str:
    import numpy as np

    lines = [
        f"{d['source']}: {d['format']}",
        f"  event     {d['name']}  (run {d['run_id']}, event {d['event_id']}, type {d['event_type']}, "
        f"{'real' if d['is_real_event'] else 'simulated'})",
        f"  time      MJD {d['mjd']:.8f} UTC" + (f"  ({d['time_utc']})" if "time_utc" in d else ""),
    ]
    if "split_pulses" in d:
        s = d["split_pulses"]
        lines.append(f"  split     {s['npulses']} pulses on {s['nch']} DOMs, {s['qtot']:.2f} PE ('{s['key']}')")
    rec = d.get("recorded", {})
    rec_txt = (f"  (message records nch {rec.get('nch')}, npulses {rec.get('npulses')}, qtot {rec.get('qtot')})"
               if "nch" in rec else "")
    lines.append(f"  cleaned   nch {d['nch']}, npulses {d['npulses']}, qtot {d['qtot']} PE{rec_txt}")
    if d["online_fits"]:
        lines.append("  online fits (zenith, azimuth -> J2000 RA, Dec; deg):")
        for name, f in d["online_fits"].items():
            z, a, r, de = (np.degrees(f[k]) for k in ("zenith", "azimuth", "ra", "dec"))
            lines.append(f"    {name:<26} {z:8.3f} {a:8.3f}  ->  RA {r:8.3f}  Dec {de:+8.3f}")
    for key, label in (("calibration_errata", "errata"), ("saturation_windows", "saturated")):
        ws = d[key]
        extra = f" ({d['pulses_in_errata']} cleaned pulses inside)" if key == "calibration_errata" else ""
        lines.append(f"  {label:<9} {len(ws)} time windows{extra}")
        for w in ws:
            lines.append(f"    DOM {w['string']:>2}-{w['om']:<2}  {w['start']:10.1f} .. {w['stop']:10.1f} ns")
    for f in d.get("frames", []):
        lines.append(f"  frame {f['stop']} (v{f['version']}): {len(f['objects'])} objects")
        for o in f["objects"]:
            lines.append(f"    {o['key']:<44} {o['type']:<40} {o['bytes']:>7} B")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from ..errors import SkyScanError

    try:
        d = describe(args.event)
    except SkyScanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(d) if args.json else _text(d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

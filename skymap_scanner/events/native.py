"""The project's own event format, ``skymap-scanner-event/1`` (JSON).

::

    {"format": "skymap-scanner-event/1", "run_id": int, "event_id": int,
     "event_type": str, "mjd": float (UTC), "is_real_event": bool,
     "geometry": "icecube86",
     "pulses": {"string": [int], "om": [int], "time": [ns], "charge": [PE], "lc": [bool]}}

Unknown extra keys are ignored. Optional ``online_fits``: name -> {zenith, azimuth
(rad), x, y, z (m), time (ns)}, kept as seeds or for comparison. Optional
``realtime_frames``: [{"stop": str, "i3frame_b64": base64 of the native I3Frame}], the
frames of the realtime message the event came from (for external recos that run IceTray).
Optional ``calibration_errata`` and ``saturation_windows``: [{"string": int, "om": int,
"start": ns, "stop": ns}], per-DOM time windows (IceCube's ``CalibrationErrata`` and
``SaturationWindows``) in the pulses' time convention, start <= stop, on DOMs of the geometry.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from ..errors import EventError
from .geometry import GEOMETRIES, get_geometry
from .model import Event, OnlineFit, Pulses

FORMAT = "skymap-scanner-event/1"
PULSE_FIELDS = ("string", "om", "time", "charge", "lc")


def _int(d: dict[str, Any], key: str, source: str) -> int:
    v = _required(d, key, source)
    if isinstance(v, bool) or not isinstance(v, int):
        raise EventError(source, f"field '{key}' must be an integer, got {v!r}")
    return v


def _required(d: dict[str, Any], key: str, source: str) -> Any:
    if key not in d:
        raise EventError(source, f"missing field '{key}'")
    return d[key]


def _int_array(values: Any, key: str, source: str) -> np.ndarray:
    if not isinstance(values, list):
        raise EventError(source, f"field 'pulses.{key}' must be a list")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise EventError(source, f"field 'pulses.{key}' must hold only integers")
    return np.asarray(values, dtype=np.int64)


def _float_array(values: Any, key: str, unit: str, source: str) -> np.ndarray:
    if not isinstance(values, list):
        raise EventError(source, f"field 'pulses.{key}' must be a list")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise EventError(source, f"field 'pulses.{key}' must hold only numbers ({unit})") from None
    if arr.ndim != 1:
        raise EventError(source, f"field 'pulses.{key}' must be a flat list of numbers ({unit})")
    if any(isinstance(v, bool) for v in values):
        raise EventError(source, f"field 'pulses.{key}' must hold only numbers ({unit})")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EventError(source, f"pulse {i} has a non-finite {key} ({arr[i]}); {bad.sum()} such pulses")
    return arr


def from_dict(d: Any, source: str) -> Event:
    """Validate a decoded ``skymap-scanner-event/1`` document and build the event."""
    if not isinstance(d, dict):
        raise EventError(source, "not a JSON object")
    fmt = _required(d, "format", source)
    if fmt != FORMAT:
        raise EventError(source, f"unsupported format {fmt!r} (expected {FORMAT!r})")
    run_id = _int(d, "run_id", source)
    event_id = _int(d, "event_id", source)
    event_type = _required(d, "event_type", source)
    if not isinstance(event_type, str) or not event_type:
        raise EventError(source, "field 'event_type' must be a non-empty string")
    mjd = _required(d, "mjd", source)
    if isinstance(mjd, bool) or not isinstance(mjd, (int, float)) or not math.isfinite(mjd):
        raise EventError(source, f"field 'mjd' must be a finite number, got {mjd!r}")
    is_real = _required(d, "is_real_event", source)
    if not isinstance(is_real, bool):
        raise EventError(source, f"field 'is_real_event' must be true or false, got {is_real!r}")
    geometry_name = _required(d, "geometry", source)
    if geometry_name not in GEOMETRIES:
        raise EventError(source, f"unknown geometry {geometry_name!r} (known: {', '.join(GEOMETRIES)})")
    pulses = _required(d, "pulses", source)
    if not isinstance(pulses, dict):
        raise EventError(source, "field 'pulses' must be an object")
    for key in PULSE_FIELDS:
        if key not in pulses:
            raise EventError(source, f"missing field 'pulses.{key}'")
    string = _int_array(pulses["string"], "string", source)
    om = _int_array(pulses["om"], "om", source)
    time_ns = _float_array(pulses["time"], "time", "ns", source)
    charge = _float_array(pulses["charge"], "charge", "PE", source)
    lc_raw = pulses["lc"]
    if not isinstance(lc_raw, list) or not all(isinstance(v, bool) for v in lc_raw):
        raise EventError(source, "field 'pulses.lc' must be a list of true/false")
    lc = np.asarray(lc_raw, dtype=bool)
    lengths = {k: len(pulses[k]) for k in PULSE_FIELDS}
    if len(set(lengths.values())) != 1:
        raise EventError(source, "pulse arrays have unequal lengths: "
                         + ", ".join(f"{k}={n}" for k, n in lengths.items()))
    if lengths["time"] == 0:
        raise EventError(source, "the event has no pulses")
    if (charge < 0).any():
        raise EventError(source, f"{int((charge < 0).sum())} pulses have a negative charge")
    geo = get_geometry(geometry_name)
    known = geo.has_dom(string, om)
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise EventError(source, f"pulse {i} is on DOM (string {string[i]}, om {om[i]}), "
                         f"which is not in the {geometry_name} geometry")
    x, y, z = geo.positions(string, om)
    fits: dict[str, OnlineFit] = {}
    raw_fits = d.get("online_fits", {})
    if not isinstance(raw_fits, dict):
        raise EventError(source, "field 'online_fits' must be an object")
    for name, f in raw_fits.items():
        try:
            fits[name] = OnlineFit(
                name, float(f["zenith"]), float(f["azimuth"]),
                float(f.get("x", math.nan)), float(f.get("y", math.nan)),
                float(f.get("z", math.nan)), float(f.get("time", math.nan)),
            )
        except (KeyError, TypeError, ValueError):
            raise EventError(source, f"online fit {name!r} needs numeric 'zenith' and 'azimuth'") from None
    return Event(
        run_id=run_id, event_id=event_id, event_type=event_type, mjd=float(mjd),
        is_real_event=is_real, geometry=geometry_name, source=source,
        pulses=Pulses.build(string, om, time_ns, charge, lc, x, y, z),
        online_fits=fits, realtime_frames=_frames(d.get("realtime_frames", []), source),
        calibration_errata=_windows(d, "calibration_errata", geometry_name, source),
        saturation_windows=_windows(d, "saturation_windows", geometry_name, source),
    )


def _windows(d: dict[str, Any], key: str, geometry_name: str, source: str) -> np.ndarray:
    """An optional list of per-DOM time windows as (n, 4) rows (string, om, start_ns, stop_ns)."""
    raw = d.get(key, [])
    if not isinstance(raw, list):
        raise EventError(source, f"field '{key}' must be a list")
    rows = np.zeros((len(raw), 4), dtype=np.float64)
    for i, w in enumerate(raw):
        ok = isinstance(w, dict) and all(isinstance(w.get(k), int) and not isinstance(w.get(k), bool)
                                         for k in ("string", "om"))
        ok = ok and all(isinstance(w.get(k), (int, float)) and not isinstance(w.get(k), bool)
                        and math.isfinite(w[k]) for k in ("start", "stop"))
        if not ok:
            raise EventError(source, f"{key}[{i}] must be {{'string': int, 'om': int, 'start': finite ns, "
                             "'stop': finite ns}")
        if w["start"] > w["stop"]:
            raise EventError(source, f"{key}[{i}] starts after it stops ({w['start']} > {w['stop']} ns)")
        rows[i] = (w["string"], w["om"], w["start"], w["stop"])
    if len(raw):
        known = get_geometry(geometry_name).has_dom(rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64))
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise EventError(source, f"{key}[{i}] is on DOM (string {int(rows[i, 0])}, om {int(rows[i, 1])}), "
                             f"which is not in the {geometry_name} geometry")
    return rows


def windows_to_list(windows: np.ndarray) -> list[dict[str, Any]]:
    """Per-DOM time windows as JSON: [{"string", "om", "start", "stop"}]."""
    return [{"string": int(s), "om": int(o), "start": float(a), "stop": float(b)} for s, o, a, b in windows]


def _frames(raw: Any, source: str) -> tuple[tuple[str, bytes], ...]:
    if not isinstance(raw, list):
        raise EventError(source, "field 'realtime_frames' must be a list")
    out = []
    for i, f in enumerate(raw):
        if not (isinstance(f, dict) and isinstance(f.get("stop"), str) and len(f["stop"]) == 1
                and isinstance(f.get("i3frame_b64"), str)):
            raise EventError(source, f"realtime frame {i} must be {{'stop': one character, 'i3frame_b64': text}}")
        try:
            out.append((f["stop"], base64.b64decode(f["i3frame_b64"], validate=True)))
        except (binascii.Error, ValueError):
            raise EventError(source, f"realtime frame {i}: 'i3frame_b64' is not base64") from None
    return tuple(out)


def frames_to_list(frames: tuple[tuple[str, bytes], ...]) -> list[dict[str, str]]:
    """Realtime frames as JSON: [{"stop": str, "i3frame_b64": str}]."""
    return [{"stop": stop, "i3frame_b64": base64.b64encode(payload).decode("ascii")} for stop, payload in frames]


def to_dict(event: Event) -> dict[str, Any]:
    """The event as a ``skymap-scanner-event/1`` document (JSON-ready)."""
    p = event.pulses
    out: dict[str, Any] = {
        "format": FORMAT,
        "run_id": int(event.run_id),
        "event_id": int(event.event_id),
        "event_type": event.event_type,
        "mjd": float(event.mjd),
        "is_real_event": bool(event.is_real_event),
        "geometry": event.geometry,
        "pulses": {
            "string": p.string.tolist(),
            "om": p.om.tolist(),
            "time": p.time_ns.tolist(),
            "charge": p.charge_pe.tolist(),
            "lc": p.lc.tolist(),
        },
    }
    if event.online_fits:
        out["online_fits"] = {name: f.to_dict() for name, f in event.online_fits.items()}
    if event.realtime_frames:
        out["realtime_frames"] = frames_to_list(event.realtime_frames)
    for key in ("calibration_errata", "saturation_windows"):
        windows = getattr(event, key)
        if len(windows):
            out[key] = windows_to_list(windows)
    return out

"""IceCube realtime alert messages (i3live) decoded in pure Python, without IceTray.

Format: ``/work/shared/docs/i3live-event-format.md`` (the "spec"). Layers, each a
small module: :mod:`.envelope` (message, safe unpickling, base64/zlib),
:mod:`.frame` (I3Frame + CRC-32C), :mod:`.archive` (bounds-checked reader),
:mod:`.objects` and :mod:`.superdst` (frame objects), :mod:`.i3time` (UTC/MJD),
:mod:`.cleaning` (IceCube's online cleaning). Entry points used by
:func:`skymap_scanner.events.load_event`: :func:`load_message_bytes` (the 2021a pickle) and
:func:`event_from_message`; :func:`event_from_pickle_bytes` does both, and :func:`decode_alert`
exposes everything decoded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ...errors import EventError
from ..geometry import icecube86
from ..model import Event, OnlineFit, Pulses
from . import cleaning, envelope, i3time
from .archive import DecodeError
from .frame import Frame, Slot, parse_frame
from .objects import (
    EventHeader,
    Particle,
    apply_mask,
    decode_event_header,
    decode_mask,
    decode_particle,
    decode_pod,
    decode_pulse_series_map,
    decode_time_window_map,
)
from .pulsemap import PulseMap
from .superdst import decode_superdst

__all__ = ["Alert", "decode_alert", "event_from_alert", "event_from_message", "event_from_pickle_bytes"]

#: The P-frame pulse masks IceCube's split in-ice pulses go by, newest layout last.
SPLIT_PULSE_KEYS = ("SplitUncleanedInIcePulses", "SplitInIcePulses")
FIT_PREFIXES = ("OnlineL2_", "l2_online_")
MAX_MASK_DEPTH = 8


@dataclass(frozen=True)
class Alert:
    """Everything decoded from one realtime message, before the online cleaning."""

    layout: str
    event_type: str
    frames: tuple[Frame, ...]
    q_header: EventHeader
    p_header: EventHeader
    pulse_key: str
    split_pulses: PulseMap  # in-ice split pulses (P-frame mask applied), uncleaned
    particles: Mapping[str, Particle]  # P-frame I3Particles by frame key
    recorded: Mapping[str, Any] = field(default_factory=dict)  # the message's own summary (nch, reco, ...)
    payloads: tuple[bytes, ...] = ()  # the native I3Frame bytes of ``frames``, in order
    #: per-DOM time windows from the Q frame, (n, 4) rows (string, om, start_ns, stop_ns); empty if absent
    calibration_errata: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    saturation_windows: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @property
    def mjd(self) -> float:
        """UTC MJD of the P-frame (split event) start time."""
        return i3time.to_mjd(self.p_header.start)

    @property
    def event_time(self) -> str:
        """P-frame start time, ``YYYY-MM-DD hh:mm:ss.ffffff`` UTC."""
        return i3time.to_datetime_string(self.p_header.start)


def _where(frame: Frame, slot: Slot) -> str:
    return f"{envelope.STOP_NAMES.get(frame.stop, '?')} frame ({frame.stop}), object '{slot.key}' ({slot.type_name})"


class _Decoder:
    """Decodes objects of the Q and P frames, naming the frame and object in every error."""

    def __init__(self, source: str, q: Frame, p: Frame) -> None:
        self.source = source
        self.q = q
        self.p = p
        self._maps: dict[str, PulseMap] = {}

    def fail(self, frame: Frame, slot: Slot, e: DecodeError) -> EventError:
        return EventError(self.source, f"{_where(frame, slot)}: {e}")

    def find(self, key: str) -> tuple[Frame, Slot] | None:
        for frame in (self.p, self.q):
            slot = frame.get(key)
            if slot is not None:
                return frame, slot
        return None

    def require(self, frame: Frame, key: str) -> Slot:
        slot = frame.get(key)
        if slot is None:
            have = ", ".join(s.key for s in frame.slots) or "nothing"
            raise EventError(self.source, f"{envelope.STOP_NAMES[frame.stop]} frame ({frame.stop}) has no "
                             f"'{key}' (it holds: {have[:300]})")
        return slot

    def header(self, frame: Frame, key: str) -> EventHeader:
        slot = self.require(frame, key)
        try:
            return decode_event_header(slot.buf, key)
        except DecodeError as e:
            raise self.fail(frame, slot, e) from None

    def pulses(self, key: str, depth: int = 0) -> PulseMap:
        """Resolve a pulse map by name: masks recursively, down to SuperDST or full pulses (spec 6)."""
        if key in self._maps:
            return self._maps[key]
        found = self.find(key)
        if found is None:
            raise EventError(self.source, f"pulse series '{key}' is in neither the P nor the Q frame")
        frame, slot = found
        if depth > MAX_MASK_DEPTH:
            raise EventError(self.source, f"{_where(frame, slot)}: masks nest deeper than {MAX_MASK_DEPTH}")
        try:
            if slot.type_name == "I3RecoPulseSeriesMapMask":
                mask = decode_mask(slot.buf, key)
                src = self.pulses(mask.source, depth + 1)
                result = apply_mask(mask, src, f"mask '{key}'")
            elif slot.type_name == "I3SuperDST":
                result = decode_superdst(slot.buf, key)
            elif slot.type_name.startswith("I3Map<OMKey, vector<I3RecoPulse>"):
                result = decode_pulse_series_map(slot.buf, key)
            else:
                raise DecodeError(f"is not a pulse series (type {slot.type_name})")
        except DecodeError as e:
            raise self.fail(frame, slot, e) from None
        self._maps[key] = result
        return result

    def particles(self) -> dict[str, Particle]:
        out: dict[str, Particle] = {}
        for slot in self.p.slots:
            if slot.type_name != "I3Particle":
                continue
            try:
                particle = decode_particle(slot.buf, slot.key)
            except DecodeError as e:
                raise self.fail(self.p, slot, e) from None
            if particle is not None:
                out[slot.key] = particle
        return out

    def windows(self, key: str) -> np.ndarray:
        """The Q frame's ``I3Map<OMKey, I3TimeWindowSeries>`` named ``key``, or no windows if absent."""
        slot = self.q.get(key)
        if slot is None:
            return np.zeros((0, 4))
        try:
            if not slot.type_name.startswith(("I3Map<OMKey, I3TimeWindowSeries>", "I3TimeWindowSeriesMap")):
                raise DecodeError(f"is not a time window series map (type {slot.type_name})")
            return decode_time_window_map(slot.buf, key)
        except DecodeError as e:
            raise self.fail(self.q, slot, e) from None

    def followup(self) -> dict[str, Any]:
        """The P frame's ``AlertShortFollowupMsg`` (JSON text), if present and readable."""
        slot = self.p.get("AlertShortFollowupMsg")
        if slot is None:
            return {}
        try:
            text = decode_pod(slot.buf, slot.type_name, slot.key)
        except DecodeError as e:
            raise self.fail(self.p, slot, e) from None
        try:
            doc = json.loads(str(text))
        except (json.JSONDecodeError, RecursionError):
            return {}
        return doc if isinstance(doc, dict) else {}


def _parse_frames(env: envelope.Envelope, source: str) -> tuple[tuple[Frame, ...], tuple[bytes, ...]]:
    frames, payloads = [], []
    for n, (stop, b64) in enumerate(env.frames):
        what = f"frame {n} ({envelope.STOP_NAMES[stop]}, {stop})"
        try:
            payloads.append(envelope.frame_payload(b64))
            frames.append(parse_frame(payloads[-1], stop))
        except DecodeError as e:
            raise EventError(source, f"{what}: {e}") from None
    return tuple(frames), tuple(payloads)


def decode_alert(doc: Any, source: str) -> Alert:
    """Decode a parsed i3live message (any layout) to an :class:`Alert`; errors are :class:`EventError`."""
    try:
        env = envelope.parse_envelope(doc)
    except DecodeError as e:
        raise EventError(source, str(e)) from None
    frames, payloads = _parse_frames(env, source)
    p_idx = [i for i, f in enumerate(frames) if f.stop == "P"]
    if not p_idx:
        raise EventError(source, f"the message has no P (Physics) frame (frames: {''.join(f.stop for f in frames)})")
    q_idx = [i for i, f in enumerate(frames) if f.stop == "Q" and i < p_idx[-1]]
    if not q_idx:
        raise EventError(source, "the message has no Q (DAQ) frame before its P frame")
    q, p = frames[q_idx[-1]], frames[p_idx[-1]]
    dec = _Decoder(source, q, p)
    q_header = dec.header(q, "QI3EventHeader")
    p_header = dec.header(p, "I3EventHeader")
    pulse_key = next((k for k in SPLIT_PULSE_KEYS if k in p), None)
    if pulse_key is None:
        raise EventError(source, f"Physics frame (P) has none of the split pulse series {', '.join(SPLIT_PULSE_KEYS)}")
    split = dec.pulses(pulse_key).in_ice()
    followup = dec.followup()
    recorded: dict[str, Any] = {k: v for k, v in env.data.items() if k != "frames"} or dict(followup)
    _check_ids(recorded, p_header, source)
    return Alert(
        layout=env.layout,
        event_type=envelope.event_type(env.message, env.data, followup),
        frames=frames, q_header=q_header, p_header=p_header, pulse_key=pulse_key,
        split_pulses=split, particles=MappingProxyType(dec.particles()),
        recorded=MappingProxyType(recorded), payloads=payloads,
        calibration_errata=dec.windows("CalibrationErrata"), saturation_windows=dec.windows("SaturationWindows"),
    )


def _check_ids(recorded: Mapping[str, Any], header: EventHeader, source: str) -> None:
    for key, decoded in (("run_id", header.run_id), ("event_id", header.event_id)):
        said = recorded.get(key)
        if isinstance(said, int) and not isinstance(said, bool) and said != decoded:
            raise EventError(source, f"the message says {key} {said} but the P frame's I3EventHeader says {decoded}")


def _fit_name(key: str, recorded: Mapping[str, Any]) -> str:
    name = key
    for prefix in FIT_PREFIXES:
        if key.startswith(prefix):
            name = key[len(prefix):]
    if name == "BestFit":  # the message names which fit won, e.g. "OnlineL2_MPEFit"
        reco = recorded.get("reco")
        best = None
        if isinstance(reco, dict):
            best = reco.get("onlineL2_bestfit") or reco.get("l2_online_bestfit")
        if isinstance(best, dict) and isinstance(best.get("name"), str):
            return _fit_name(best["name"], {})
    return name


def online_fits(alert: Alert) -> dict[str, OnlineFit]:
    """The P frame's fits (prefix stripped, e.g. 'SplineMPE', 'MPEFit', 'HESE_SPEFit2'), plus message-only
    fits such as 'SPEFit2' (direction only). Fits without a finite direction are left out."""
    fits: dict[str, OnlineFit] = {}
    for key, p in alert.particles.items():
        if not (math.isfinite(p.zenith_rad) and math.isfinite(p.azimuth_rad)):
            continue
        name = _fit_name(key, alert.recorded)
        fits[name] = OnlineFit(name, p.zenith_rad, p.azimuth_rad, p.x_m, p.y_m, p.z_m, p.time_ns)
    reco = alert.recorded.get("reco")
    if isinstance(reco, dict):
        for key, name in (("spefit2", "SPEFit2"), ("splinempe", "SplineMPE")):
            r = reco.get(key)
            if name in fits or not isinstance(r, dict):
                continue
            zen, azi = r.get("zen"), r.get("azi")
            if isinstance(zen, (int, float)) and isinstance(azi, (int, float)) \
                    and math.isfinite(zen) and math.isfinite(azi):
                fits[name] = OnlineFit(name, float(zen), float(azi))
    return fits


def event_from_alert(alert: Alert, source: str) -> Event:
    """Apply IceCube's online cleaning (spec 8) and build the :class:`Event`.

    Pulse times stay in ns relative to the Q-frame start (IceCube's convention);
    ``mjd`` is the P-frame (split event) start.
    """
    sp = alert.split_pulses
    s, o = sp.string, sp.om
    geo = icecube86()
    known = geo.has_dom(s, o)
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise EventError(source, f"split pulse on DOM (string {s[i]}, om {o[i]}), which is not in the icecube86 geometry")
    bad = ~(np.isfinite(sp.time_ns) & np.isfinite(sp.charge_pe))
    if bad.any():
        raise EventError(source, f"{int(bad.sum())} split pulses have a non-finite time or charge")
    x, y, z = geo.positions(s, o)
    keep = cleaning.online_cleaning(s, o, sp.time_ns, sp.lc, np.stack([x, y, z], axis=1))
    if not keep.any():
        raise EventError(source, f"no pulses survive IceCube's online cleaning ({sp.n_pulses} split pulses)")
    pulses = Pulses.build(s[keep], o[keep], sp.time_ns[keep], sp.charge_pe[keep].astype(np.float64),
                          sp.lc[keep], x[keep], y[keep], z[keep])
    try:
        mjd = alert.mjd
    except DecodeError as e:
        raise EventError(source, f"Physics frame (P), object 'I3EventHeader': {e}") from None
    return Event(
        run_id=alert.p_header.run_id, event_id=alert.p_header.event_id, event_type=alert.event_type,
        mjd=mjd, is_real_event=True, pulses=pulses, geometry="icecube86", source=source,
        online_fits=online_fits(alert),
        realtime_frames=tuple((f.stop, b) for f, b in zip(alert.frames, alert.payloads, strict=True)),
        calibration_errata=_known_windows(alert.calibration_errata, geo),
        saturation_windows=_known_windows(alert.saturation_windows, geo),
    )


def _known_windows(windows: np.ndarray, geo: Any) -> np.ndarray:
    """The in-ice windows (DOMs of the geometry); errata on IceTop or unknown DOMs do not touch the pulses."""
    if not len(windows):
        return windows
    return windows[geo.has_dom(windows[:, 0].astype(np.int64), windows[:, 1].astype(np.int64))]


def event_from_message(doc: Any, source: str) -> Event:
    """Decode a parsed i3live JSON message (old or 2023a layout) into an :class:`Event`."""
    return event_from_alert(decode_alert(doc, source), source)


def load_message_bytes(raw: bytes, source: str) -> Any:
    """The message dict from a 2021a pickle (builtins only, every class refused)."""
    try:
        return envelope.load_message_pickle(raw)
    except DecodeError as e:
        raise EventError(source, str(e)) from None


def event_from_pickle_bytes(raw: bytes, source: str) -> Event:
    """Decode a pickled (2021a) i3live message into an :class:`Event`."""
    return event_from_message(load_message_bytes(raw, source), source)

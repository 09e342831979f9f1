"""Decoders for the serialized IceTray frame objects an alert carries (spec sections 3, 4, 6, 7).

Each ``decode_*`` takes one slot ``buf`` (its own archive), checks that it is
used up exactly, and raises :class:`DecodeError` on anything unexpected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .archive import DecodeError, Reader
from .pulsemap import PulseMap


@dataclass(frozen=True)
class I3Time:
    """IceTray time: ``daq`` counts 0.1 ns since ``year``-01-01 00:00:00 UTC, leap seconds included."""

    year: int
    daq: int


@dataclass(frozen=True)
class EventHeader:
    run_id: int
    sub_run_id: int
    event_id: int
    state: int
    sub_event_id: int
    sub_event_stream: str
    start: I3Time
    end: I3Time


@dataclass(frozen=True)
class Particle:
    """The fields of an I3Particle a scan uses: direction (rad), vertex (m), time (ns)."""

    fit_status: int
    shape: int
    x_m: float
    y_m: float
    z_m: float
    zenith_rad: float
    azimuth_rad: float
    time_ns: float
    energy_gev: float
    length_m: float


@dataclass(frozen=True)
class PulseMask:
    """An I3RecoPulseSeriesMapMask: a source name and its key and per-pulse bit masks."""

    source: str
    key_bits: np.ndarray  # bool, one per source key
    elements: tuple[np.ndarray, ...]  # bool arrays, one per selected key


def read_header(r: Reader) -> tuple[str, int] | None:
    """The frame-object blob header; returns (class name, class version), or None for a null pointer."""
    wrapper = (r.u8(), r.u8())
    if wrapper != (0, 1):
        raise DecodeError(f"bad shared_ptr wrapper {wrapper} at the start of {r.what}")
    class_id = r.i16()
    if class_id == -1:
        return None
    name = r.string()
    if not name or len(name) > 200:
        raise DecodeError(f"bad class name {name[:40]!r} in {r.what}")
    tracking = r.u8()
    if tracking > 1:
        raise DecodeError(f"bad tracking flag {tracking} for {name} in {r.what}")
    version = r.class_version()
    r.mark_seen(name)
    if tracking:
        r.object_id()
    base = (r.u8(), r.class_version())
    if base != (1, 0):
        raise DecodeError(f"bad I3FrameObject class info {base} in {r.what}")
    r.mark_seen("I3FrameObject")
    r.object_id()
    return name, version


def _open(buf: bytes, what: str, classes: tuple[str, ...], versions: tuple[int, ...]) -> tuple[Reader, int]:
    r = Reader(buf, what)
    h = read_header(r)
    if h is None:
        raise DecodeError(f"{what} is a null pointer")
    name, version = h
    if not any(name == c or name.startswith(c) for c in classes):
        raise DecodeError(f"{what} holds a {name}, expected {' or '.join(classes)}")
    if version not in versions:
        raise DecodeError(f"unsupported {name} class version {version}")
    return r, version


def _base(r: Reader) -> None:
    """A nested I3FrameObject base: only its object id (its class info was written in the header)."""
    r.object_id()


def _i3time(r: Reader) -> I3Time:
    v = r.class_info("I3Time")
    if v not in (None, 0):
        raise DecodeError(f"unsupported I3Time class version {v}")
    r.object_id()
    _base(r)
    year = r.i32()
    daq = r.i64()
    if not 1970 <= year <= 2200 or not 0 <= daq <= 366 * 86400 * 10**10 + 10**11:
        raise DecodeError(f"implausible I3Time (year {year}, daq {daq})")
    return I3Time(year, daq)


def decode_event_header(buf: bytes, what: str = "I3EventHeader") -> EventHeader:
    r, v = _open(buf, what, ("I3EventHeader",), (1, 2, 3))
    run_id = r.u32()
    sub_run_id = r.u32()
    event_id = r.u32()
    state = r.i32() if v > 1 else 20
    sub_event_id, stream = (r.u32(), r.string()) if v > 2 else (0, "")
    start = _i3time(r)
    end = _i3time(r)
    r.done()
    return EventHeader(run_id, sub_run_id, event_id, state, sub_event_id, stream, start, end)


def _position(r: Reader) -> tuple[float, float, float]:
    v = r.class_info("I3Position")
    if v is not None and v > 10:
        raise DecodeError(f"unsupported I3Position class version {v}")
    r.object_id()
    _base(r)
    return r.f64(), r.f64(), r.f64()


def decode_particle(buf: bytes, what: str = "I3Particle") -> Particle | None:
    """An I3Particle (class version 5); None for a null pointer."""
    r = Reader(buf, what)
    h = read_header(r)
    if h is None:
        return None
    name, v = h
    if name != "I3Particle":
        raise DecodeError(f"{what} holds a {name}, expected I3Particle")
    if v != 5:
        raise DecodeError(f"unsupported I3Particle class version {v} (5 is known)")
    r.i32()  # minor id
    r.u64()  # major id
    r.i32()  # pdg encoding
    shape = r.i32()
    fit_status = r.i32()
    x, y, z = _position(r)
    vd = r.class_info("I3Direction")
    if vd is not None and vd > 10:
        raise DecodeError(f"unsupported I3Direction class version {vd}")
    r.object_id()
    _base(r)
    zen, azi = r.f64(), r.f64()
    time, energy, length, _speed = r.f64(), r.f64(), r.f64(), r.f64()
    r.i32()  # location type
    r.done()
    return Particle(fit_status, shape, x, y, z, zen, azi, time, energy, length)


def decode_pod(buf: bytes, type_name: str, what: str = "I3PODHolder") -> bool | int | float | str:
    """An ``I3PODHolder<T>`` (I3Bool, I3Int, I3Double, I3String)."""
    r = Reader(buf, what)
    h = read_header(r)
    if h is None:
        raise DecodeError(f"{what} is a null pointer")
    value: bool | int | float | str
    if "double" in type_name:
        value = r.f64()
    elif "bool" in type_name:
        value = r.bool_()
    elif "string" in type_name:
        value = r.string()
    elif "int" in type_name:
        value = r.i32()
    else:
        raise DecodeError(f"unsupported holder type {type_name}")
    r.done()
    return value


def _bitmask(r: Reader) -> np.ndarray:
    nbytes = r.u16()
    padding = r.u8()
    if padding > 7 or (nbytes == 0 and padding):
        raise DecodeError(f"bad bitmask padding {padding} for {nbytes} bytes in {r.what}")
    raw = r.array("u1", nbytes)
    bits = np.unpackbits(raw, bitorder="little").astype(bool)
    return bits[: 8 * nbytes - padding]


def decode_mask(buf: bytes, what: str = "I3RecoPulseSeriesMapMask") -> PulseMask:
    r, v = _open(buf, what, ("I3RecoPulseSeriesMapMask",), (1, 2))
    source = r.string()
    if not source:
        raise DecodeError(f"{what} has an empty source key")
    if v == 1:
        r.f32()
    r.expect_class_info("bitmask", (0, 1, 2))
    key_bits = _bitmask(r)
    r.class_info("std::vector<bitmask>")
    n = r.count(3)
    elements = tuple(_bitmask(r) for _ in range(n))
    r.done()
    if n != int(key_bits.sum()):
        raise DecodeError(f"{what} has {n} element masks for {int(key_bits.sum())} selected keys")
    return PulseMask(source, key_bits, elements)


def apply_mask(mask: PulseMask, src: PulseMap, what: str) -> PulseMap:
    """Select keys and pulses of ``src`` (sorted keys) as ``mask`` says (spec section 6)."""
    nkeys = src.n_keys
    if mask.key_bits.size != nkeys:
        raise DecodeError(f"{what} has {mask.key_bits.size} key bits but its source "
                          f"'{mask.source}' has {nkeys} keys")
    keep = np.zeros(src.n_pulses, dtype=bool)
    keep_key = np.zeros(nkeys, dtype=bool)
    offsets = src.offsets
    for elem, k in zip(mask.elements, np.flatnonzero(mask.key_bits), strict=True):
        if not elem.any():
            continue
        n = int(src.counts[k])
        if elem.size != n:
            raise DecodeError(f"{what}: the mask for key {tuple(src.keys[k])} has {elem.size} bits "
                              f"but the source has {n} pulses there")
        keep[offsets[k]:offsets[k] + n] = elem
        keep_key[k] = True
    return src.select(keep_key, keep)


def decode_pulse_series_map(buf: bytes, what: str = "I3RecoPulseSeriesMap") -> PulseMap:
    """A full-precision ``I3Map<OMKey, vector<I3RecoPulse>>`` (spec section 7)."""
    r, _ = _open(buf, what, ("I3RecoPulseSeriesMap", "I3Map<OMKey, vector<I3RecoPulse>"), (0, 1))
    r.class_info("std::map")
    nkeys = r.count(12)
    keys = np.zeros((nkeys, 3), dtype=np.int64)
    counts = np.zeros(nkeys, dtype=np.int64)
    times: list[float] = []
    charges: list[float] = []
    widths: list[float] = []
    flags: list[int] = []
    for i in range(nkeys):
        r.class_info("std::pair")
        r.expect_class_info("OMKey", (1, 2))
        r.object_id()
        keys[i] = (r.i32(), r.u32(), r.u8())
        r.class_info("std::vector<I3RecoPulse>")
        n = r.count(21)
        counts[i] = n
        for _ in range(n):
            r.expect_class_info("I3RecoPulse", (3,))
            r.object_id()
            times.append(r.f64())
            charges.append(r.f32())
            widths.append(r.f32())
            flags.append(r.u8())
    r.done()
    if nkeys > 1:
        key_code = keys[:, 0] * 1_000_000 + keys[:, 1] * 1000 + keys[:, 2]
        if (np.diff(key_code) <= 0).any():
            raise DecodeError(f"{what}: map keys are not sorted")
    return PulseMap(
        keys=keys, counts=counts,
        time_ns=np.asarray(times, dtype=np.float64),
        charge_pe=np.asarray(charges, dtype=np.float32),
        width_ns=np.asarray(widths, dtype=np.float32),
        flags=np.asarray(flags, dtype=np.uint8),
    )



def decode_time_window_map(buf: bytes, what: str = "I3TimeWindowSeriesMap") -> np.ndarray:
    """An ``I3Map<OMKey, I3TimeWindowSeries>`` (``CalibrationErrata``, ``SaturationWindows``; spec section 7).

    Returns a (n, 4) float64 array of windows, one row (string, om, start_ns, stop_ns) per
    I3TimeWindow, in map order; times in the same detector-time convention as the pulses.
    """
    r, _ = _open(buf, what, ("I3TimeWindowSeriesMap", "I3Map<OMKey, I3TimeWindowSeries>"), (0, 1))
    r.class_info("std::map")
    nkeys = r.count(21)
    rows: list[tuple[float, float, float, float]] = []
    keys: list[tuple[int, int, int]] = []
    for _ in range(nkeys):
        r.class_info("std::pair")
        r.expect_class_info("OMKey", (1, 2))
        r.object_id()
        key = (r.i32(), r.u32(), r.u8())
        keys.append(key)
        r.expect_class_info("I3TimeWindowSeries", (0, 1))
        r.object_id()
        _base(r)
        r.class_info("std::vector<I3TimeWindow>")
        n = r.count(24)
        for _ in range(n):
            r.expect_class_info("I3TimeWindow", (0, 1))
            r.object_id()
            _base(r)
            start, stop = r.f64(), r.f64()
            if not (np.isfinite(start) and np.isfinite(stop)):
                raise DecodeError(f"{what}: a non-finite time window ({start}, {stop}) on DOM {key[:2]}")
            if start > stop:
                raise DecodeError(f"{what}: a time window starts after it stops ({start} > {stop}) on DOM {key[:2]}")
            rows.append((float(key[0]), float(key[1]), start, stop))
    r.done()
    if len(keys) > 1:
        code = np.array([s * 1_000_000 + o * 1000 + p for s, o, p in keys], dtype=np.int64)
        if (np.diff(code) <= 0).any():
            raise DecodeError(f"{what}: map keys are not sorted")
    return np.array(rows, dtype=np.float64).reshape(len(rows), 4)

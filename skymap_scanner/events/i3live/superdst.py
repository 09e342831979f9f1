"""I3SuperDST (class version 1): IceCube's compact pulse encoding, unpacked to a pulse map (spec section 5)."""

from __future__ import annotations

import numpy as np

from .archive import DecodeError, Reader
from .objects import read_header
from .pulsemap import PulseMap

T_REF0 = -512.0  # ns: start of the readout time delta chain
HLC_FLAGS = 7  # LC | ATWD | FADC
SLC_FLAGS = 4  # FADC


def _size(r: Reader) -> int:
    """SizeCodec: one tag byte; tag < 247 is the size, else 255 - tag little-endian bytes follow."""
    tag = r.u8()
    if tag < 247:
        return tag
    size = int.from_bytes(r.raw(255 - tag), "little")
    return size


def _compact(r: Reader, dtype: str, itemsize: int) -> np.ndarray:
    n = _size(r)
    if n * itemsize > r.remaining:
        raise DecodeError(f"CompactVector of {n} items exceeds the {r.remaining} bytes left in {r.what}")
    return r.array(dtype, n)


def _expand_widths(codes: np.ndarray, limit: int, what: str) -> list[int]:
    """Run-length decode one width stream: runs of bytes sharing a low nibble; high nibbles are the length.

    A stream cannot code more widths than there are stamps (``limit``).
    """
    out: list[int] = []
    i, n = 0, len(codes)
    c = codes.tolist()
    while i < n:
        code = c[i] & 0xF
        length = 0
        shift = 0
        while i < n and (c[i] & 0xF) == code:
            length |= (c[i] >> 4) << shift
            shift += 4
            i += 1
        if len(out) + length > limit:
            raise DecodeError(f"a width stream of {what} codes more widths than the {limit} charge stamps")
        out.extend([code] * length)
    return out


def decode_superdst(buf: bytes, what: str = "I3SuperDST") -> PulseMap:
    """Decode an I3SuperDST blob and unpack it to a sorted, overlap-free pulse map (IceTop included)."""
    r = Reader(buf, what)
    h = read_header(r)
    if h is None:
        raise DecodeError(f"{what} is a null pointer")
    name, version = h
    if name != "I3SuperDST":
        raise DecodeError(f"{what} holds a {name}, expected I3SuperDST")
    if version != 1:
        raise DecodeError(f"unsupported I3SuperDST class version {version} (1 is supported)")
    r.class_info("CompactVector<ChargeStamp>")
    r.class_info("SizeCodec")
    stamps = _compact(r, "<u2", 2).tolist()
    r.class_info("CompactVector<DOMHeader>")
    headers = _compact(r, "<u2", 2).tolist()
    r.class_info("CompactVector<uint8_t>")
    streams = [_expand_widths(_compact(r, "u1", 1), len(stamps), what) for _ in range(4)]
    extra = _compact(r, "u1", 1).tolist()
    r.done()
    return _unpack(_readouts(stamps, headers, streams, extra, what), what)


Readout = tuple[int, int, bool, list[int], list[int], list[int]]  # string, om, hlc, dt, q, width codes


def _readouts(
    stamps: list[int], headers: list[int], streams: list[list[int]], extra: list[int], what: str
) -> list[Readout]:
    ns = len(stamps)
    wpos = [0, 0, 0, 0]
    epos = 0
    k = 0

    def word(i: int) -> int:
        if i >= ns:
            raise DecodeError(f"{what}: ran out of charge stamps ({ns}) while decoding readouts")
        return stamps[i]

    def overflow(value: int, i: int) -> tuple[int, int]:
        while True:
            i += 1
            raw = word(i)
            value += raw
            if raw != 65535:
                return value, i

    def width(stream: int) -> int:
        p = wpos[stream]
        if p >= len(streams[stream]):
            raise DecodeError(f"{what}: width stream {stream} ran out")
        wpos[stream] = p + 1
        return streams[stream][p]

    out: list[Readout] = []
    for hdr in headers:
        dom_id = hdr & 0x1FFF
        slop = hdr >> 13
        string = dom_id >> 6
        om = (dom_id & 63) + 1
        log = om > 60
        s = word(k)
        t = (s & 0xFF) | (slop << 8)
        q = (s >> 8) & 0x3F
        hlc = bool((s >> 14) & 1)
        stop = bool(s >> 15)
        if t == 2047:
            t, k = overflow(t, k)
        if not log and q == 63:
            q, k = overflow(q, k)
        if log:
            if epos >= len(extra):
                raise DecodeError(f"{what}: ran out of extra bytes for an IceTop charge")
            q |= extra[epos] << 6
            epos += 1
        stream = 2 * log + hlc
        dts, qs, ws = [t], [q], [width(stream)]
        while not stop:
            k += 1
            s = word(k)
            t = s & 0xFF
            q = (s >> 8) & 0x3F
            stop = bool(s >> 15)
            if bool((s >> 14) & 1) != hlc:
                raise DecodeError(f"{what}: the LC bit changes inside a readout (stamp {k})")
            if t == 255:
                t, k = overflow(t, k)
            if q == 63:
                q, k = overflow(q, k)
            dts.append(t)
            qs.append(q)
            ws.append(width(stream))
        k += 1
        out.append((string, om, hlc, dts, qs, ws))
    left = [len(streams[i]) - wpos[i] for i in range(4)]
    if k != ns or epos != len(extra) or any(left):
        raise DecodeError(
            f"{what}: streams not used up exactly (stamps {ns - k}, extra bytes {len(extra) - epos}, "
            f"widths {left} left over)"
        )
    return out


def _charge(q: np.ndarray, log: np.ndarray) -> np.ndarray:
    lin = q * 0.05 + 0.025
    logq = 10.0 ** (q * 9.0 / 16383.0 - 2.0)
    return np.where(log, logq, lin).astype(np.float32)


def _unpack(readouts: list[Readout], what: str) -> PulseMap:
    if not readouts:
        z = np.zeros(0)
        return PulseMap(np.zeros((0, 3), np.int64), np.zeros(0, np.int64), z,
                        z.astype(np.float32), z.astype(np.float32), z.astype(np.uint8))
    strings: list[int] = []
    oms: list[int] = []
    times: list[float] = []
    qs: list[int] = []
    codes: list[int] = []
    flags: list[int] = []
    t_ref = T_REF0
    for string, om, hlc, dts, q, ws in readouts:
        t_ref += dts[0]
        t = t_ref
        for j, dt in enumerate(dts):
            if j:
                t += dt
            times.append(t)
        n = len(dts)
        strings.extend([string] * n)
        oms.extend([om] * n)
        qs.extend(q)
        codes.extend(ws)
        flags.extend([HLC_FLAGS if hlc else SLC_FLAGS] * n)
    s = np.asarray(strings, dtype=np.int64)
    o = np.asarray(oms, dtype=np.int64)
    t_arr = np.asarray(times, dtype=np.float64)
    c = _charge(np.asarray(qs, dtype=np.float64), o > 60)
    code_arr = np.asarray(codes, dtype=np.int64)
    w = np.power(2.0, code_arr).astype(np.float32)
    f = np.asarray(flags, dtype=np.uint8)
    order = np.lexsort((t_arr, o, s))  # stable: ties keep stream order
    s, o, t_arr, c, w, f = s[order], o[order], t_arr[order], c[order], w[order], f[order]
    key_code = s * 100 + o
    starts = np.flatnonzero(np.r_[True, key_code[1:] != key_code[:-1]])
    counts = np.diff(np.r_[starts, key_code.size])
    keys = np.stack([s[starts], o[starts], np.zeros(starts.size, np.int64)], axis=1)
    _remove_overlaps(t_arr, w, starts, counts)
    return PulseMap(keys=keys, counts=counts.astype(np.int64), time_ns=t_arr, charge_pe=c, width_ns=w, flags=f)


def _merge(t: np.ndarray, w: np.ndarray, p: int, c: int) -> None:
    if w[p] == 0 < w[c]:
        w[p] = w[c]
    w[p] = w[c] = np.float32(w[p] / np.float32(2))
    t[c] = t[p] + float(w[p])


def _remove_overlaps(t: np.ndarray, w: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> None:
    """Per DOM (time-ordered): clip each width to the gap to the next pulse; split coincident pulses."""
    gap = np.diff(t).astype(np.float32)
    last = np.zeros(t.size, dtype=bool)
    last[starts + counts - 1] = True
    inner = ~last[:-1]
    w[:-1][inner] = np.minimum(w[:-1][inner], gap[inner])
    if not (w == 0).any():
        return
    # rare (coincident pulses): replay IceTray's sequential walk on the affected DOMs only
    for a, n in zip(starts.tolist(), counts.tolist(), strict=True):
        if n < 2 or not (w[a:a + n] == 0).any():
            continue
        pending = False
        for i in range(a, a + n):
            if i < a + n - 1:
                w[i] = min(w[i], np.float32(t[i + 1] - t[i]))
            if w[i] == 0 or pending:
                if i > a:
                    _merge(t, w, i - 1, i)
                    pending = False
                else:
                    pending = True
        if pending:
            _merge(t, w, a + n - 2, a + n - 1)

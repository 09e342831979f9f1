"""Native I3Frame binary (version 6, and 5 with CRC-16) and its checksums (spec section 2)."""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .archive import DecodeError, Reader

MAGIC = b"[i3]"


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


def _crc16_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        table.append(c)
    return tuple(table)


_CRC32C = _crc32c_table()
_CRC16 = _crc16_table()


_CRC32C_NP = np.asarray(_CRC32C, dtype=np.uint32)
LANES_FROM_BYTES = 8192  # below this, the plain byte loop is as fast


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (reflected 0x82F63B78), start ``crc``, no inversion (IceTray's frame checksum).

    Long inputs with start 0 go through :func:`_crc32c_lanes` (numpy, same result).
    """
    if crc == 0 and len(data) >= LANES_FROM_BYTES:
        return _crc32c_lanes(data)
    t = _CRC32C
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


@functools.lru_cache(maxsize=32)
def _shift_tables(nbytes: int) -> tuple[tuple[int, ...], ...]:
    """Byte tables of the linear map "append ``nbytes`` zero bytes" on a CRC-32C register."""
    t = _CRC32C
    images = []
    for bit in range(32):
        x = 1 << bit
        for _ in range(nbytes):
            x = t[x & 0xFF] ^ (x >> 8)
        images.append(x)
    tables = []
    for j in range(4):
        tab = [0] * 256
        for b in range(1, 256):
            low = (b & -b).bit_length() - 1
            tab[b] = tab[b & (b - 1)] ^ images[8 * j + low]
        tables.append(tuple(tab))
    return tuple(tables)


def _crc32c_lanes(data: bytes) -> int:
    """CRC-32C with start 0 computed on ~sqrt(4n) interleaved lanes at once, then folded together.

    With start 0 the CRC is linear over GF(2) and leading zero bytes leave it 0, so
    the input is zero-padded in front, split into equal lanes, each lane's CRC is
    computed in lockstep, and lanes are combined as crc = shift(acc, L) ^ crc_lane.
    """
    n = len(data)
    k = max(1, math.isqrt(4 * n))
    lane = -(-n // k)
    buf = np.zeros(k * lane, dtype=np.uint8)
    buf[k * lane - n:] = np.frombuffer(data, dtype=np.uint8)
    cols = np.ascontiguousarray(buf.reshape(k, lane).T).astype(np.uint32)
    table = _CRC32C_NP
    c = np.zeros(k, dtype=np.uint32)
    for s in range(lane):
        c = table[(c ^ cols[s]) & 0xFF] ^ (c >> 8)
    t0, t1, t2, t3 = _shift_tables(lane)
    acc = 0
    for v in c.tolist():
        acc = t0[acc & 0xFF] ^ t1[(acc >> 8) & 0xFF] ^ t2[(acc >> 16) & 0xFF] ^ t3[acc >> 24] ^ v
    return acc


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16-CCITT (0x1021, MSB first), start 0xFFFF: the version-5 frame checksum."""
    t = _CRC16
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ b) & 0xFF]
    return crc


@dataclass(frozen=True)
class Slot:
    """One frame object: its key, IceTray type name and serialized blob."""

    key: str
    type_name: str
    buf: bytes


@dataclass(frozen=True)
class Frame:
    """A decoded I3Frame: stop character, version and slots (file order)."""

    stop: str
    version: int
    slots: tuple[Slot, ...]

    def __contains__(self, key: object) -> bool:
        return any(s.key == key for s in self.slots)

    def get(self, key: str) -> Slot | None:
        for s in self.slots:
            if s.key == key:
                return s
        return None


def _checksum_input(stop: bytes, slots: list[tuple[bytes, bytes, bytes]]) -> Iterator[bytes]:
    u32 = struct.Struct("<I").pack
    yield stop
    yield u32(len(slots))
    for key, type_name, buf in slots:
        for part in (key, type_name, buf):
            yield u32(len(part))
            yield part


def parse_frame(payload: bytes, expected_stop: str | None = None) -> Frame:
    """Parse and checksum-verify one native I3Frame; raises :class:`DecodeError`."""
    r = Reader(payload, "I3Frame")
    if r.remaining < 4 or r.raw(4) != MAGIC:
        raise DecodeError("not an I3Frame (no '[i3]' magic)")
    version = r.u32()
    if version not in (5, 6):
        raise DecodeError(f"unsupported I3Frame version {version} (5 and 6 are known)")
    r.u8()  # stream tracking
    r.u8()  # stream class version
    stop_b = r.raw(1)
    stop = stop_b.decode("latin-1")
    if expected_stop is not None and stop != expected_stop:
        raise DecodeError(f"I3Frame says stop {stop!r} but the message lists it as {expected_stop!r}")
    n = r.count(12)
    raw_slots: list[tuple[bytes, bytes, bytes]] = []
    for i in range(n):
        try:
            key = r.raw(r.count())
            type_name = r.raw(r.count())
            buf = r.raw(r.count())
        except DecodeError as e:
            raise DecodeError(f"slot {i} of {n}: {e}") from None
        raw_slots.append((key, type_name, buf))
    if version == 6:
        stored = r.u32()
        computed = crc32c(b"".join(_checksum_input(stop_b, raw_slots)))
    else:
        stored = r.u16()
        computed = 0xFFFF
        for part in _checksum_input(stop_b, raw_slots):
            computed = crc16_ccitt(part, computed)
    if stored != computed:
        raise DecodeError(f"checksum mismatch (stored {stored:#x}, computed {computed:#x}): corrupted frame")
    r.done()
    slots = []
    for key, type_name, buf in raw_slots:
        try:
            slots.append(Slot(key.decode("utf-8"), type_name.decode("utf-8"), buf))
        except UnicodeDecodeError:
            raise DecodeError("a slot key or type name is not text") from None
    return Frame(stop, version, tuple(slots))

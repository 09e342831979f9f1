"""A bounds-checked little-endian cursor over IceCube "portable binary archive" bytes.

Every read checks the remaining length first, so a truncated or corrupted blob
raises :class:`DecodeError` with the offset, never an ``IndexError`` or a huge
allocation. Format rules: spec section 3 (counts, class info, object ids).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_I16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class DecodeError(ValueError):
    """A blob that does not follow the format; the message is one line for a person."""


class Reader:
    """Sequential reader over one archive (one frame-object ``buf``).

    Tracks which classes already wrote their class info and the running object
    id, both of which reset per archive (spec section 3).
    """

    def __init__(self, data: bytes, what: str = "blob") -> None:
        self.data = memoryview(bytes(data))
        self.pos = 0
        self.what = what
        self._seen: set[str] = set()
        self._next_id = 0

    # -- primitives -------------------------------------------------------
    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _need(self, n: int) -> None:
        if n < 0 or n > self.remaining:
            raise DecodeError(
                f"truncated {self.what}: need {n} bytes at offset {self.pos}, {self.remaining} left"
            )

    def _unpack(self, st: struct.Struct) -> Any:
        self._need(st.size)
        v = st.unpack_from(self.data, self.pos)[0]
        self.pos += st.size
        return v

    def u8(self) -> int:
        return int(self._unpack(_U8))

    def u16(self) -> int:
        return int(self._unpack(_U16))

    def i16(self) -> int:
        return int(self._unpack(_I16))

    def u32(self) -> int:
        return int(self._unpack(_U32))

    def i32(self) -> int:
        return int(self._unpack(_I32))

    def u64(self) -> int:
        return int(self._unpack(_U64))

    def i64(self) -> int:
        return int(self._unpack(_I64))

    def f32(self) -> float:
        return float(self._unpack(_F32))

    def f64(self) -> float:
        return float(self._unpack(_F64))

    def bool_(self) -> bool:
        v = self.u8()
        if v > 1:
            raise DecodeError(f"bad bool value {v} at offset {self.pos - 1} of {self.what}")
        return bool(v)

    def raw(self, n: int) -> bytes:
        self._need(n)
        v = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return v

    def array(self, dtype: str, n: int) -> np.ndarray:
        """``n`` raw items of a little-endian numpy ``dtype`` (e.g. ``"<u2"``)."""
        dt = np.dtype(dtype)
        self._need(n * dt.itemsize)
        a = np.frombuffer(self.data, dtype=dt, count=n, offset=self.pos).copy()
        self.pos += n * dt.itemsize
        return a

    # -- archive conventions ----------------------------------------------
    def count(self, item_size: int = 1) -> int:
        """A collection size; checked against the bytes left (each item >= ``item_size`` bytes)."""
        start = self.pos
        n = self.u32()
        if n == 0xFFFFFFFF:
            n = self.u64()
        if n * max(item_size, 0) > self.remaining:
            raise DecodeError(
                f"count {n} at offset {start} of {self.what} exceeds the {self.remaining} bytes left"
            )
        return n

    def string(self) -> str:
        n = self.count(1)
        raw = self.raw(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def class_version(self) -> int:
        v = self.u8()
        if v == 0xFF:
            v = self.u64()
        return v

    def class_info(self, cls: str) -> int | None:
        """Read ``u8 tracking, version`` the first time ``cls`` appears by value.

        Returns the class version, or ``None`` if the class was already seen.
        """
        if cls in self._seen:
            return None
        self._seen.add(cls)
        tracking = self.u8()
        if tracking > 1:
            raise DecodeError(f"bad tracking flag {tracking} for {cls} at offset {self.pos - 1} of {self.what}")
        return self.class_version()

    def expect_class_info(self, cls: str, versions: tuple[int, ...]) -> int | None:
        """Like :meth:`class_info`, and check the version is one this decoder knows."""
        start = self.pos
        v = self.class_info(cls)
        if v is not None and v not in versions:
            raise DecodeError(f"unsupported {cls} class version {v} at offset {start} of {self.what}")
        return v

    def object_id(self) -> int:
        """A tracked object's u32 id; must be the archive's next running id (no back-references)."""
        start = self.pos
        v = self.u32()
        if v != self._next_id:
            raise DecodeError(
                f"object id {v} at offset {start} of {self.what}, expected {self._next_id} "
                "(back-references are not supported)"
            )
        self._next_id += 1
        return v

    def mark_seen(self, cls: str) -> None:
        """Record that ``cls`` wrote its class info (e.g. in a header read by hand)."""
        self._seen.add(cls)

    def done(self) -> None:
        """Check the blob is used up exactly."""
        if self.remaining:
            raise DecodeError(f"{self.remaining} unexpected bytes at the end of {self.what} (offset {self.pos})")

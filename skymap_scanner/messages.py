"""Versioned JSON messages between the server and its workers (never pickle).

A :class:`WorkMessage` carries a batch of (pixel, posvar) fits of one nside with
their local directions and seeds; a :class:`ResultMessage` carries the fits back.
Both are frozen dataclasses with ``to_dict`` / ``from_dict``; ``from_dict``
validates everything and raises :class:`MessageError` on anything unexpected.
NaN travels as JSON ``null``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .collector import FIT_FIELDS
from .errors import MessageError

WORK_SCHEMA = "skymap-scanner-work/1"
RESULT_SCHEMA = "skymap-scanner-result/1"
MAX_ITEMS = 100_000


def _nan_to_none(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def _floats(d: dict[str, Any], key: str, n: int, where: str) -> tuple[float, ...]:
    vals = d.get(key)
    if not isinstance(vals, list) or len(vals) != n:
        raise MessageError(f"{where}: '{key}' must be a list of {n} numbers")
    out = []
    for v in vals:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise MessageError(f"{where}: '{key}' holds a non-number {v!r:.40}")
    return tuple(out)


def _ints(d: dict[str, Any], key: str, where: str, n: int | None = None) -> tuple[int, ...]:
    vals = d.get(key)
    if not isinstance(vals, list) or (n is not None and len(vals) != n):
        raise MessageError(f"{where}: '{key}' must be a list of {n if n is not None else ''} integers")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals):
        raise MessageError(f"{where}: '{key}' must hold non-negative integers")
    return tuple(vals)


def _header(d: Any, schema: str, where: str) -> tuple[str, int, int]:
    if not isinstance(d, dict):
        raise MessageError(f"{where}: not a JSON object")
    if d.get("schema") != schema:
        raise MessageError(f"{where}: schema {str(d.get('schema'))[:60]!r} is not {schema!r}")
    scan_id, batch_id, nside = d.get("scan_id"), d.get("batch_id"), d.get("nside")
    if not isinstance(scan_id, str) or not scan_id:
        raise MessageError(f"{where}: missing 'scan_id'")
    if not isinstance(batch_id, int) or isinstance(batch_id, bool) or batch_id < 0:
        raise MessageError(f"{where}: 'batch_id' must be a non-negative integer")
    if not isinstance(nside, int) or isinstance(nside, bool) or nside < 1 or nside & (nside - 1):
        raise MessageError(f"{where}: 'nside' must be a power of 2")
    return scan_id, batch_id, nside


@dataclass(frozen=True)
class WorkMessage:
    """Fits to do: item i is (pixels[i], posvars[i]) at local direction
    (zenith_rad[i], azimuth_rad[i]) with seed vertex seeds[i] = (x, y, z m, t ns) or NaNs."""

    scan_id: str
    batch_id: int
    nside: int
    pixels: tuple[int, ...]
    posvars: tuple[int, ...]
    zenith_rad: tuple[float, ...]
    azimuth_rad: tuple[float, ...]
    seeds: tuple[tuple[float, float, float, float], ...]
    attempt: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": WORK_SCHEMA,
            "scan_id": self.scan_id,
            "batch_id": self.batch_id,
            "nside": self.nside,
            "attempt": self.attempt,
            "pixel": list(self.pixels),
            "posvar": list(self.posvars),
            "zenith": list(self.zenith_rad),
            "azimuth": list(self.azimuth_rad),
            "seed": [None if not all(map(math.isfinite, s)) else list(s) for s in self.seeds],
        }

    @classmethod
    def from_dict(cls, d: Any) -> WorkMessage:
        where = "work message"
        scan_id, batch_id, nside = _header(d, WORK_SCHEMA, where)
        pixels = _ints(d, "pixel", where)
        n = len(pixels)
        if not 0 < n <= MAX_ITEMS:
            raise MessageError(f"{where}: holds {n} items (1..{MAX_ITEMS} allowed)")
        if max(pixels) >= 12 * nside * nside:
            raise MessageError(f"{where}: pixel index beyond nside {nside}")
        posvars = _ints(d, "posvar", where, n)
        zen = _floats(d, "zenith", n, where)
        azi = _floats(d, "azimuth", n, where)
        raw_seeds = d.get("seed")
        if not isinstance(raw_seeds, list) or len(raw_seeds) != n:
            raise MessageError(f"{where}: 'seed' must be a list of {n} entries")
        seeds = []
        for s in raw_seeds:
            if s is None:
                seeds.append((math.nan,) * 4)
            else:
                vals = _floats({"s": s}, "s", 4, where)
                seeds.append((vals[0], vals[1], vals[2], vals[3]))
        attempt = d.get("attempt", 1)
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise MessageError(f"{where}: 'attempt' must be a positive integer")
        return cls(scan_id, batch_id, nside, pixels, posvars, zen, azi, tuple(seeds), attempt)


@dataclass(frozen=True)
class ResultMessage:
    """Fits done for one :class:`WorkMessage`: ``fits[i]`` in FIT_FIELDS order, ``errors[i]``
    a one-line reason when the reco failed on item i (its fit is then NaN)."""

    scan_id: str
    batch_id: int
    nside: int
    pixels: tuple[int, ...]
    posvars: tuple[int, ...]
    fits: tuple[tuple[float, ...], ...]
    errors: tuple[str | None, ...]
    reco_runtime_s: tuple[float, ...]
    client: str

    def to_dict(self) -> dict[str, Any]:
        cols = list(zip(*self.fits)) if self.fits else [() for _ in FIT_FIELDS]
        return {
            "schema": RESULT_SCHEMA,
            "scan_id": self.scan_id,
            "batch_id": self.batch_id,
            "nside": self.nside,
            "pixel": list(self.pixels),
            "posvar": list(self.posvars),
            **{name: _nan_to_none(list(col)) for name, col in zip(FIT_FIELDS, cols)},
            "error": list(self.errors),
            "reco_runtime_s": list(self.reco_runtime_s),
            "client": self.client,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ResultMessage:
        where = "result message"
        scan_id, batch_id, nside = _header(d, RESULT_SCHEMA, where)
        pixels = _ints(d, "pixel", where)
        n = len(pixels)
        if not 0 < n <= MAX_ITEMS:
            raise MessageError(f"{where}: holds {n} items (1..{MAX_ITEMS} allowed)")
        if max(pixels) >= 12 * nside * nside:
            raise MessageError(f"{where}: pixel index beyond nside {nside}")
        posvars = _ints(d, "posvar", where, n)
        cols = [_floats(d, name, n, where) for name in FIT_FIELDS]
        errors = d.get("error")
        if not isinstance(errors, list) or len(errors) != n or not all(e is None or isinstance(e, str) for e in errors):
            raise MessageError(f"{where}: 'error' must be a list of {n} strings or nulls")
        runtime = _floats(d, "reco_runtime_s", n, where)
        client = d.get("client")
        if not isinstance(client, str):
            raise MessageError(f"{where}: 'client' must be a string")
        fits = tuple(zip(*cols))
        return cls(scan_id, batch_id, nside, pixels, posvars, fits, tuple(errors), runtime, client[:200])


def encode(msg: WorkMessage | ResultMessage) -> bytes:
    """Compact JSON bytes (NaN never appears: it is sent as null)."""
    return json.dumps(msg.to_dict(), separators=(",", ":"), allow_nan=False).encode()


def decode_work(raw: bytes | str | dict[str, Any]) -> WorkMessage:
    return WorkMessage.from_dict(_load(raw, "work message"))


def decode_result(raw: bytes | str | dict[str, Any]) -> ResultMessage:
    return ResultMessage.from_dict(_load(raw, "result message"))


def _load(raw: bytes | str | dict[str, Any], where: str) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MessageError(f"{where}: not JSON ({type(e).__name__})") from None

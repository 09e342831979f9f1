"""The llh maps of a scan as the products need them: llh per HEALPix pixel per nside, event metadata
and provenance.

Convention (as in the result files): RING ordering, equatorial J2000, theta = pi/2 - dec, phi = ra.
:func:`scan_from_result` takes the in-memory result the server just collected; :func:`read_scan`
reads a result file (through :func:`skymap_scanner.results.load_result`, the only I/O here);
:func:`mirror_dec` and :func:`scan_from_arrays` are pure.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import healpy as hp
import numpy as np
import numpy.typing as npt

from skymap_scanner.errors import SkyScanError
from skymap_scanner.pixels import is_valid_nside
from skymap_scanner.results import EVENT_FIELDS, EventMeta, ScanResult, load_result


@dataclasses.dataclass(frozen=True)
class NsideMap:
    """The scanned pixels of one nside: RING pixel indices (sorted, unique) and their llh."""

    nside: int
    index: npt.NDArray[np.int64]
    llh: npt.NDArray[np.float64]


@dataclasses.dataclass(frozen=True)
class Scan:
    """All nsides of one scan (ascending nside) with event metadata."""

    maps: tuple[NsideMap, ...]
    event: EventMeta
    complete: bool | None = None
    legacy_dec_sign: bool = False
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def nsides(self) -> tuple[int, ...]:
        return tuple(m.nside for m in self.maps)


def _check_nside(nside: int, source: str) -> None:
    if not is_valid_nside(nside):
        raise SkyScanError(f"{source}: nside {nside} is not a power of two in [1, 2**29]")


def mirror_dec(nside: int, index: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """RING pixel at (pi - theta, phi) for each pixel: flips the sign of Dec, exact at pixel centres.

    HEALPix is symmetric under z -> -z, so this is a bijection of the pixels of one nside. Used for
    old result files written with dec = theta - pi/2 (the opposite of the current dec = pi/2 - theta).
    """
    theta, phi = hp.pix2ang(nside, index)
    return np.asarray(hp.ang2pix(nside, np.pi - theta, phi), dtype=np.int64)


def scan_from_arrays(
    arrays: Mapping[int, tuple[npt.ArrayLike, npt.ArrayLike]],
    event: EventMeta | None = None,
    *,
    complete: bool | None = None,
    legacy_dec_sign: bool = False,
    source: str = "scan",
    provenance: Mapping[str, Any] | None = None,
) -> Scan:
    """Validate ``{nside: (ring_index, llh)}`` into a :class:`Scan`.

    Pixels with a non-finite llh (failed fits) are dropped. ``legacy_dec_sign`` mirrors every pixel
    in Dec (see :func:`mirror_dec`).
    """
    maps = []
    for nside in sorted(arrays):
        _check_nside(int(nside), source)
        idx = np.asarray(arrays[nside][0], dtype=np.int64).ravel()
        llh = np.asarray(arrays[nside][1], dtype=np.float64).ravel()
        if idx.shape != llh.shape:
            raise SkyScanError(f"{source}: nside {nside} has {idx.size} indices but {llh.size} llh values")
        if idx.size and (idx.min() < 0 or idx.max() >= hp.nside2npix(nside)):
            raise SkyScanError(f"{source}: nside {nside} has pixel indices outside 0..{hp.nside2npix(nside) - 1}")
        keep = np.isfinite(llh)
        idx, llh = idx[keep], llh[keep]
        if legacy_dec_sign:
            idx = mirror_dec(int(nside), idx)
        order = np.argsort(idx, kind="stable")
        idx, llh = idx[order], llh[order]
        if np.any(np.diff(idx) == 0):
            dup = idx[:-1][np.diff(idx) == 0][0]
            raise SkyScanError(f"{source}: nside {nside} lists pixel {dup} more than once")
        idx.flags.writeable = False
        llh.flags.writeable = False
        maps.append(NsideMap(int(nside), idx, llh))
    if not maps or all(m.index.size == 0 for m in maps):
        raise SkyScanError(f"{source}: no pixel with a finite llh; nothing to make products from")
    return Scan(tuple(maps), event or EventMeta(), complete, legacy_dec_sign, dict(provenance or {}))


def scan_from_result(
    result: ScanResult,
    *,
    legacy_dec_sign: bool = False,
    event_overrides: Mapping[str, Any] | None = None,
    source: str = "result",
) -> Scan:
    """A :class:`Scan` from a result in memory (as the server holds it, or as read from a file).

    ``event_overrides`` (run_id, event_id, event_type, mjd, is_real_event) replace header values
    or supply them for files without a header.
    """
    event = EventMeta()
    if result.meta is not None:
        m = result.meta
        mjd = m.mjd if m.mjd is not None and math.isfinite(m.mjd) else None
        event = EventMeta(m.run_id, m.event_id, m.event_type or None, mjd, m.is_real_event)
    if event_overrides:
        unknown = set(event_overrides) - set(EVENT_FIELDS)
        if unknown:
            raise SkyScanError(f"unknown event fields {sorted(unknown)}; known: {list(EVENT_FIELDS)}")
        event = dataclasses.replace(event, **{k: v for k, v in event_overrides.items() if v is not None})
    complete = result.is_complete if result.complete else None
    arrays = {nside: (arr["index"], arr["llh"]) for nside, arr in result.maps.items()}
    return scan_from_arrays(arrays, event, complete=complete, legacy_dec_sign=legacy_dec_sign, source=source,
                            provenance=result.provenance)


def read_scan(
    path: Path,
    *,
    legacy_dec_sign: bool = False,
    event_overrides: Mapping[str, Any] | None = None,
) -> Scan:
    """Read a result .npz through :func:`skymap_scanner.results.load_result` (never unpickles)."""
    return scan_from_result(load_result(path), legacy_dec_sign=legacy_dec_sign, event_overrides=event_overrides,
                            source=str(path))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file (provenance of the result the products were made from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

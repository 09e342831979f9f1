"""Checkpoint of collected results: an append-only binary log in ``--cache-dir``.

Each accepted result is appended as one fixed-size record (88 bytes) as it
arrives; a restarted server with the same arguments (same scan id) replays the
log into a fresh engine and re-does only what is missing. A record cut short by a
crash is ignored. No pickles: the file is a flat numpy record array.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from .collector import FIT_FIELDS

LOGGER = logging.getLogger(__name__)
RECORD_DTYPE = np.dtype([("nside", "<i8"), ("pixel", "<i8"), ("posvar", "<i8"), ("failed", "<i8")]
                        + [(f, "<f8") for f in FIT_FIELDS])


class ResultLog:
    """Append results; replay them in the order they were written."""

    def __init__(self, path: Path, fsync_interval_s: float = 2.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync_interval_s = fsync_interval_s
        self._last_fsync = time.monotonic()
        self._f: BinaryIO | None = None

    def replay(self) -> Iterator[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64],
                                       npt.NDArray[np.float64], npt.NDArray[np.bool_]]]:
        """Yield (nside, pixels, posvars, fits (n, 7), failed) runs of one nside, in order."""
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        n = len(raw) // RECORD_DTYPE.itemsize
        if n * RECORD_DTYPE.itemsize != len(raw):
            LOGGER.warning("checkpoint %s ends in a partial record (crash mid-write); ignoring it", self.path)
            with open(self.path, "r+b") as f:
                f.truncate(n * RECORD_DTYPE.itemsize)
        rec = np.frombuffer(raw[: n * RECORD_DTYPE.itemsize], dtype=RECORD_DTYPE)
        if not n:
            return
        cuts = np.flatnonzero(np.diff(rec["nside"])) + 1
        for chunk in np.split(rec, cuts):
            fits = np.column_stack([chunk[f] for f in FIT_FIELDS])
            yield int(chunk["nside"][0]), chunk["pixel"].copy(), chunk["posvar"].copy(), fits, chunk["failed"] != 0

    def append(self, nside: int, pixels: npt.ArrayLike, posvars: npt.ArrayLike,
               fits: npt.ArrayLike, failed: npt.ArrayLike | None = None) -> None:
        px = np.asarray(pixels, np.int64)
        rec = np.empty(px.size, dtype=RECORD_DTYPE)
        rec["nside"] = nside
        rec["pixel"] = px
        rec["posvar"] = np.asarray(posvars, np.int64)
        rec["failed"] = 0 if failed is None else np.asarray(failed, bool)
        f = np.asarray(fits, np.float64).reshape(px.size, len(FIT_FIELDS))
        for j, name in enumerate(FIT_FIELDS):
            rec[name] = f[:, j]
        if self._f is None:
            self._f = open(self.path, "ab")  # noqa: SIM115 - kept open for the scan
        out = self._f
        out.write(rec.tobytes())
        out.flush()
        if time.monotonic() - self._last_fsync > self._fsync_interval_s:
            os.fsync(out.fileno())
            self._last_fsync = time.monotonic()

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

"""Checkpoint of collected results: an append-only binary log in ``--cache-dir``.

Each accepted result is appended as one fixed-size record (88 bytes) as it
arrives; a restarted server with the same arguments (same scan id) replays the
log into a fresh engine and re-does only what is missing. A record cut short by a
crash is ignored. No pickles: the file is a flat numpy record array.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from .collector import FIT_FIELDS
from .errors import ConfigError

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


INSTANCE_SUFFIX = ".instance"


def new_instance_id(scan_id: str) -> str:
    """A fresh instance id of scan ``scan_id``: the scan id and 8 random hex digits."""
    return f"{scan_id}-{secrets.token_hex(4)}"


def scan_instance_id(cache_dir: Path | None, scan_id: str) -> str:
    """The id that names this run's queues. Random per server start, so two servers with the same
    arguments never share queues; kept in ``cache_dir`` (``<scan_id>.instance``) so that a resume with
    the same checkpoint reuses it and talks to the clients (and queued replies) of the run before."""
    if cache_dir is None:
        return new_instance_id(scan_id)
    path = Path(cache_dir) / f"{scan_id}{INSTANCE_SUFFIX}"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        iid = new_instance_id(scan_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(iid + "\n")
        return iid
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the scan's instance id ({e.strerror})") from None
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", text) or not text.startswith(scan_id):
        raise ConfigError(f"{path}: not an instance id of scan {scan_id}")
    return text

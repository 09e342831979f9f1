"""Scan results: the ``.npz`` that ``icecube-skyreader`` reads, and its JSON twin.

Per nside a key ``nside-N`` holding a structured array (index i8; llh, E_in, E_tot,
X, Y, Z, T f8) sorted by index, plus a ``header`` structured array with the
metadata skyreader expects (nside, complete, run_id, event_id, event_type, mjd,
is_real_event, version). The JSON twin is skyreader's ``to_json`` layout. Files
are written atomically (temp file + rename).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .atomic import atomic_write, atomic_write_text
from .collector import FIT_FIELDS, RESULT_DTYPE
from .errors import SkyScanError

RESULT_VERSION = 1
NAN_SENTINEL = "<skyreader.nan>"  # how skyreader's JSON layout spells NaN


@dataclass(frozen=True)
class EventMeta:
    run_id: int
    event_id: int
    event_type: str
    mjd: float
    is_real_event: bool

    @property
    def name(self) -> str:
        return f"run{self.run_id:08d}.evt{self.event_id:012d}.{self.event_type}"


@dataclass
class ScanResult:
    """Per-nside pixel results of one scan with the event metadata (None: a file without a header)."""

    meta: EventMeta | None
    maps: dict[int, npt.NDArray[np.void]]
    complete: dict[int, bool] = field(default_factory=dict)

    @property
    def event(self) -> EventMeta:
        if self.meta is None:
            raise SkyScanError("this result has no event metadata (a file without a header)")
        return self.meta

    def nside_string(self) -> str:
        return "_".join(str(n) for n in sorted(self.maps))

    def filename(self, extension: str = ".npz") -> str:
        """``run%08d.evt%012d.<event_type>_<nsides joined by _><ext>``."""
        return f"{self.event.name}_{self.nside_string()}{extension}"

    def best(self) -> tuple[int, int, float]:
        """(nside, pixel, llh) of the lowest finite llh over all nsides."""
        best: tuple[int, int, float] | None = None
        for nside, arr in self.maps.items():
            llh = arr["llh"]
            ok = np.isfinite(llh)
            if ok.any():
                i = int(np.argmin(np.where(ok, llh, np.inf)))
                if best is None or llh[i] < best[2]:
                    best = (nside, int(arr["index"][i]), float(llh[i]))
        if best is None:
            raise SkyScanError("the result holds no finite llh")
        return best

    def _metadata(self, nside: int) -> dict[str, Any]:
        meta = self.event
        return {
            "nside": int(nside),
            "complete": bool(self.complete.get(nside, False)),
            "run_id": int(meta.run_id),
            "event_id": int(meta.event_id),
            "event_type": meta.event_type,
            "mjd": float(meta.mjd),
            "is_real_event": bool(meta.is_real_event),
            "version": RESULT_VERSION,
        }

    def write_npz(self, output_dir: Path) -> Path:
        """Write the skyreader ``.npz`` atomically; returns its path."""
        nsides = sorted(self.maps)
        header_dtype = np.dtype([
            ("nside", "<i8"), ("complete", "?"), ("run_id", "<i8"), ("event_id", "<i8"),
            ("event_type", f"<U{max(1, len(self.event.event_type))}"), ("mjd", "<f8"),
            ("is_real_event", "?"), ("version", "<i8"),
        ])
        header = np.array([tuple(self._metadata(n).values()) for n in nsides], dtype=header_dtype)
        arrays = {f"nside-{n}": np.sort(np.asarray(self.maps[n], dtype=RESULT_DTYPE), order="index") for n in nsides}

        def write(f: Any) -> None:
            buf = io.BytesIO()
            np.savez(buf, header=header, **arrays)  # type: ignore[arg-type]
            f.write(buf.getvalue())

        return atomic_write(Path(output_dir) / self.filename(".npz"), write)

    def to_json_dict(self) -> dict[str, Any]:
        """skyreader's ``serialize()`` layout: nside-N -> {columns, metadata, data}."""
        out: dict[str, Any] = {}
        for n in sorted(self.maps):
            arr = np.sort(np.asarray(self.maps[n], dtype=RESULT_DTYPE), order="index")
            rows = [
                [int(r[0])] + [NAN_SENTINEL if not math.isfinite(v) else float(v) for v in list(r)[1:]]
                for r in arr.tolist()
            ]
            out[f"nside-{n}"] = {"columns": ["index", *FIT_FIELDS], "metadata": self._metadata(n), "data": rows}
        return out

    def write_json(self, output_dir: Path) -> Path:
        return atomic_write_text(Path(output_dir) / self.filename(".json"), json.dumps(self.to_json_dict()))


def load_result(path: str | Path) -> ScanResult:
    """Read a result ``.npz`` (keys ``nside-N``, optional ``header``) without ever unpickling.

    Each ``nside-N`` array needs at least the fields ``index`` and ``llh`` (older files carry only
    index, llh, E_in, E_tot); a file without a header gives ``meta=None``. Errors are one-line
    :class:`SkyScanError` s naming the file.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SkyScanError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise SkyScanError(f"{path}: not a readable result .npz ({e})") from None
    maps: dict[int, npt.NDArray[np.void]] = {}
    complete: dict[int, bool] = {}
    meta: EventMeta | None = None
    with npz:
        try:
            for key in npz.files:
                if key == "header":
                    h = npz[key]
                    for row in h:
                        complete[int(row["nside"])] = bool(row["complete"])
                    if h.size:
                        r0 = h[0]
                        meta = EventMeta(int(r0["run_id"]), int(r0["event_id"]), str(r0["event_type"]),
                                         float(r0["mjd"]), bool(r0["is_real_event"]))
                    continue
                if not key.startswith("nside-"):
                    continue
                try:
                    nside = int(key.removeprefix("nside-"))
                except ValueError:
                    raise SkyScanError(f"{path}: bad key {key!r} (expected nside-N)") from None
                arr = npz[key]
                names = arr.dtype.names or ()
                if "index" not in names or "llh" not in names:
                    raise SkyScanError(f"{path}: {key} lacks the fields 'index' and 'llh' (has {list(names)})")
                maps[nside] = arr
        except (ValueError, KeyError, IndexError) as e:  # e.g. an object array that would need pickle
            raise SkyScanError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if not maps:
        raise SkyScanError(f"{path}: no nside-N arrays in the file")
    return ScanResult(meta, maps, complete)

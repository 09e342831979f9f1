"""Scan results: the ``.npz`` that ``icecube-skyreader`` reads, and its JSON twin.

Per nside a key ``nside-N`` holding a structured array (index i8; llh, E_in, E_tot,
X, Y, Z, T f8) sorted by index, plus a ``header`` structured array with the
metadata skyreader expects (nside, complete, run_id, event_id, event_type, mjd,
is_real_event, version) and one more column, ``provenance``: a JSON object (reco,
reco options, nside progression, scanner version, event name, pointing) that
skyreader carries along as one more metadata string. Files without it (older
results) read as before. The JSON twin is skyreader's ``to_json`` layout. Files
are written atomically (temp file + rename). A partial result (a scan not yet
finished) is named ``<name>.partial.npz`` so it can never be taken for the final one.
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


PARTIAL_SUFFIX = ".partial"  # before the extension: run...BRONZE_8_64_512.partial.npz


@dataclass(frozen=True)
class EventMeta:
    """The event a result belongs to: the one metadata class of result files and products.

    A file without a header (or a products run without ids) may leave fields unknown (None);
    writing a result needs all of them.
    """

    run_id: int | None = None
    event_id: int | None = None
    event_type: str | None = None
    mjd: float | None = None
    is_real_event: bool | None = None

    @property
    def name(self) -> str:
        """``run%08d.evt%012d.<event_type>``, as result files are named."""
        if self.run_id is None or self.event_id is None or self.event_type is None:
            raise SkyScanError("cannot name a result without its run id, event id and event type")
        return f"run{self.run_id:08d}.evt{self.event_id:012d}.{self.event_type}"

    def label(self) -> str:
        """Short human label, e.g. ``Run 136662 Event 35405932 (BRONZE)``."""
        if self.run_id is None and self.event_id is None:
            text = "Unknown event"
        else:
            run = self.run_id if self.run_id is not None else "?"
            evt = self.event_id if self.event_id is not None else "?"
            text = f"Run {run} Event {evt}"
        return text + (f" ({self.event_type})" if self.event_type else "")


#: The header fields that describe the event (same in every header row), in EventMeta's order.
EVENT_FIELDS = ("run_id", "event_id", "event_type", "mjd", "is_real_event")


@dataclass
class ScanResult:
    """Per-nside pixel results of one scan with the event metadata (None: a file without a header).

    ``provenance`` is what made the result (reco, options, progression, version, ...); empty for
    old files that do not carry it.
    """

    meta: EventMeta | None
    maps: dict[int, npt.NDArray[np.void]]
    complete: dict[int, bool] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def is_complete(self) -> bool:
        return bool(self.complete) and all(self.complete.get(n, False) for n in self.maps)

    @property
    def event(self) -> EventMeta:
        if self.meta is None:
            raise SkyScanError("this result has no event metadata (a file without a header)")
        return self.meta

    def nside_string(self) -> str:
        return "_".join(str(n) for n in sorted(self.maps))

    def filename(self, extension: str = ".npz", *, partial: bool = False) -> str:
        """``run%08d.evt%012d.<event_type>_<nsides joined by _>[.partial]<ext>``."""
        return f"{self.event.name}_{self.nside_string()}{PARTIAL_SUFFIX if partial else ''}{extension}"

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

    def best_radec_deg(self) -> tuple[float, float] | None:
        """(RA, Dec) deg of the best pixel's centre, None when no llh is finite."""
        try:
            nside, pixel, _ = self.best()
        except SkyScanError:
            return None
        import healpy as hp

        theta, phi = hp.pix2ang(nside, pixel)
        return float(np.degrees(phi)), float(90.0 - np.degrees(theta))

    def _metadata(self, nside: int) -> dict[str, Any]:
        meta = self.event
        if None in (meta.run_id, meta.event_id, meta.mjd, meta.is_real_event):
            raise SkyScanError("cannot write a result without the event's ids, time and real/simulated flag")
        assert meta.run_id is not None and meta.event_id is not None and meta.mjd is not None
        return {
            "nside": int(nside),
            "complete": bool(self.complete.get(nside, False)),
            "run_id": int(meta.run_id),
            "event_id": int(meta.event_id),
            "event_type": meta.event_type,
            "mjd": float(meta.mjd),
            "is_real_event": bool(meta.is_real_event),
            "version": RESULT_VERSION,
            "provenance": json.dumps(self.provenance, sort_keys=True, separators=(",", ":")),
        }

    def write_npz(self, output_dir: Path, *, partial: bool = False) -> Path:
        """Write the skyreader ``.npz`` atomically (``partial``: under the partial name); returns its path."""
        nsides = sorted(self.maps)
        rows = [self._metadata(n) for n in nsides]
        header_dtype = np.dtype([
            ("nside", "<i8"), ("complete", "?"), ("run_id", "<i8"), ("event_id", "<i8"),
            ("event_type", f"<U{max(1, len(str(self.event.event_type)))}"), ("mjd", "<f8"),
            ("is_real_event", "?"), ("version", "<i8"),
            ("provenance", f"<U{max([1] + [len(r['provenance']) for r in rows])}"),
        ])
        header = np.array([tuple(r.values()) for r in rows], dtype=header_dtype)
        arrays = {f"nside-{n}": np.sort(np.asarray(self.maps[n], dtype=RESULT_DTYPE), order="index") for n in nsides}

        def write(f: Any) -> None:
            buf = io.BytesIO()
            np.savez(buf, header=header, **arrays)  # type: ignore[arg-type]
            f.write(buf.getvalue())

        return atomic_write(Path(output_dir) / self.filename(".npz", partial=partial), write)

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

    def write_json(self, output_dir: Path, *, partial: bool = False) -> Path:
        return atomic_write_text(Path(output_dir) / self.filename(".json", partial=partial),
                                 json.dumps(self.to_json_dict()))


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
    provenance: dict[str, Any] = {}
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
                        if "provenance" in (h.dtype.names or ()):
                            provenance = _parse_provenance(str(r0["provenance"]), path)
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
    return ScanResult(meta, maps, complete, provenance)


def _parse_provenance(text: str, path: str | Path) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise SkyScanError(f"{path}: the header's provenance is not JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise SkyScanError(f"{path}: the header's provenance is not a JSON object")
    return value


def scan_provenance(reco: str, reco_options: dict[str, str], nside_progression: str, event_name: str,
                    **extra: Any) -> dict[str, Any]:
    """What made a result, as stored in its header: reco, options, progression, version, event."""
    from . import __version__

    out: dict[str, Any] = {
        "reco": reco,
        "reco_options": dict(sorted(reco_options.items())),
        "nside_progression": nside_progression,
        "scanner_version": __version__,
        "event": event_name,
    }
    out.update({k: v for k, v in extra.items() if v is not None})
    return out

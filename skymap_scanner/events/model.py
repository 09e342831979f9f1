"""The one in-memory event model every stage of a scan uses.

An :class:`Event` is immutable: its arrays are read-only numpy arrays, built
once by a reader (the project's own JSON format, or a decoded IceCube realtime
message) and validated there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from .windows import NO_WINDOWS, freeze_windows

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def _frozen(a: npt.ArrayLike, dtype: Any) -> Any:
    arr = np.array(a, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True)
class Pulses:
    """In-ice pulses, one entry per pulse, sorted by (string, om, time).

    ``time_ns`` is in ns (detector time), ``charge_pe`` in PE, positions in m.
    """

    string: IntArray
    om: IntArray
    time_ns: FloatArray
    charge_pe: FloatArray
    lc: BoolArray
    x_m: FloatArray
    y_m: FloatArray
    z_m: FloatArray

    @classmethod
    def build(
        cls,
        string: npt.ArrayLike,
        om: npt.ArrayLike,
        time_ns: npt.ArrayLike,
        charge_pe: npt.ArrayLike,
        lc: npt.ArrayLike,
        x_m: npt.ArrayLike,
        y_m: npt.ArrayLike,
        z_m: npt.ArrayLike,
    ) -> Pulses:
        """Copy, sort by (string, om, time) and freeze the given arrays."""
        s = np.asarray(string, dtype=np.int64)
        o = np.asarray(om, dtype=np.int64)
        t = np.asarray(time_ns, dtype=np.float64)
        order = np.lexsort((t, o, s))
        return cls(
            string=_frozen(s[order], np.int64),
            om=_frozen(o[order], np.int64),
            time_ns=_frozen(t[order], np.float64),
            charge_pe=_frozen(np.asarray(charge_pe, dtype=np.float64)[order], np.float64),
            lc=_frozen(np.asarray(lc, dtype=bool)[order], bool),
            x_m=_frozen(np.asarray(x_m, dtype=np.float64)[order], np.float64),
            y_m=_frozen(np.asarray(y_m, dtype=np.float64)[order], np.float64),
            z_m=_frozen(np.asarray(z_m, dtype=np.float64)[order], np.float64),
        )

    def __len__(self) -> int:
        return int(self.time_ns.size)

    @property
    def n_doms(self) -> int:
        """Number of distinct hit DOMs (IceCube's ``nch``)."""
        if len(self) == 0:
            return 0
        key = self.string * 100 + self.om
        return int(np.unique(key).size)

    @property
    def qtot_pe(self) -> float:
        """Total charge in PE."""
        return float(self.charge_pe.sum())

    def select(self, mask: npt.ArrayLike) -> Pulses:
        """A new :class:`Pulses` with only the entries where ``mask`` is true."""
        m = np.asarray(mask, dtype=bool)
        return Pulses.build(
            self.string[m], self.om[m], self.time_ns[m], self.charge_pe[m], self.lc[m],
            self.x_m[m], self.y_m[m], self.z_m[m],
        )


@dataclass(frozen=True)
class OnlineFit:
    """A reconstruction found in the event (e.g. IceCube's online SplineMPE).

    Direction in local coordinates (rad): where the particle comes FROM.
    Vertex in m and time in ns, NaN when unknown.
    """

    name: str
    zenith_rad: float
    azimuth_rad: float
    x_m: float = float("nan")
    y_m: float = float("nan")
    z_m: float = float("nan")
    time_ns: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "zenith": self.zenith_rad, "azimuth": self.azimuth_rad,
            "x": self.x_m, "y": self.y_m, "z": self.z_m, "time": self.time_ns,
        }


@dataclass(frozen=True)
class Event:
    """One event to scan: identifiers, time and its (cleaned) in-ice pulses."""

    run_id: int
    event_id: int
    event_type: str
    mjd: float  # UTC
    is_real_event: bool
    pulses: Pulses
    geometry: str = "icecube86"
    source: str = "<memory>"
    online_fits: Mapping[str, OnlineFit] = field(default_factory=lambda: MappingProxyType({}))
    #: the frames of the realtime message the event was decoded from, as (stop, native I3Frame bytes),
    #: for recos that read them with IceTray (see docs/reco-protocol.md); empty for other sources
    realtime_frames: tuple[tuple[str, bytes], ...] = ()
    #: per-DOM time windows, read-only (n, 4) float64 rows (string, om, start_ns, stop_ns), pulse time
    #: convention: IceCube's ``CalibrationErrata`` (pulses there are unreliable; a reco may drop them with
    #: :func:`skymap_scanner.events.windows.mask_outside_windows`) and ``SaturationWindows``; empty if unknown
    calibration_errata: FloatArray = field(default_factory=lambda: NO_WINDOWS)
    saturation_windows: FloatArray = field(default_factory=lambda: NO_WINDOWS)

    def __post_init__(self) -> None:
        if not isinstance(self.online_fits, MappingProxyType):
            object.__setattr__(self, "online_fits", MappingProxyType(dict(self.online_fits)))
        for name in ("calibration_errata", "saturation_windows"):
            object.__setattr__(self, name, freeze_windows(getattr(self, name)))

    @property
    def name(self) -> str:
        """``run%08d.evt%012d.<event_type>``, as result files are named."""
        return f"run{self.run_id:08d}.evt{self.event_id:012d}.{self.event_type}"

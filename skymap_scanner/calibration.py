"""Calibrated error regions: which 2*Delta-llh threshold contains the true direction how often.

Wilks' theorem (2 degrees of freedom: 1.386 for 50%, 4.605 for 90%) assumes the likelihood is the
true one; ``pandel_mpe``'s is not (its ice, its pulse selection, its single-photon form), so its
2*Delta-llh at the true direction is larger than Wilks says, and more so for brighter events. A
calibration measures it on simulated events (the realistic simulator mode, scanned like a real
alert, :mod:`skymap_scanner.cli.calibrate`) and stores it as a file shipped with the package.

The model of a calibration: for an event with ``n`` DOMs in the fit,
``2*Delta-llh(true) = (n / n_ref) ** exponent * X``, where X has one distribution for all events.
The exponent is chosen so that X is uncorrelated (Spearman) with ``n`` on the calibration events
(0 when coverage does not depend on brightness); the table holds quantiles of X. So the threshold
containing the truth in a fraction ``c`` of events is ``scale(n) * quantile_X(c)``, and the
containment of a threshold T is the inverse. Outside the calibrated range of ``n`` the nearest edge
is used (and said so: :attr:`EventCalibration.extrapolated`).

Pure functions and dataclasses; the only I/O is reading the JSON file.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ConfigError

CALIBRATION_FORMAT = "skymap-scanner-calibration/1"
DATA_DIR = Path(__file__).parent / "data"
#: the calibration file of each reco that has one (shipped in the package)
SHIPPED = {"pandel_mpe": DATA_DIR / "calibration_pandel_mpe.json"}
#: reco options that do not change the likelihood's shape (a calibration still applies with them)
NEUTRAL_OPTIONS = frozenset({"use_online_seeds", "n_posvar", "posvar_radius_m"})
#: containment beyond the table's last entry falls off like a Wilks tail scaled to the table's top
_TAIL = "wilks-like: 1 - (1 - c_top) * exp(-(T - T_top) / (2 * T_top / w_top)), w_top = Wilks level of c_top"


@dataclasses.dataclass(frozen=True)
class Calibration:
    """One calibration table (see the module docstring for the model)."""

    reco: str
    reco_options: dict[str, str]
    feature: str  # "n_doms": DOMs with a pulse after the reco's pulse selection
    reference: float  # n_ref
    exponent: float
    domain: tuple[float, float]  # feature range of the calibration events
    containment: tuple[float, ...]  # ascending, in (0, 1)
    scaled_level: tuple[float, ...]  # quantile of X at each containment, strictly ascending, > 0
    provenance: dict[str, Any]
    version: str = ""  # the calibration's own version (e.g. a date), from the file

    def __post_init__(self) -> None:
        c = np.asarray(self.containment, dtype=float)
        q = np.asarray(self.scaled_level, dtype=float)
        if c.size < 2 or c.size != q.size:
            raise ConfigError("calibration: containment and scaled_level need the same length (>= 2)")
        if not (np.all(np.diff(c) > 0) and c[0] > 0 and c[-1] < 1):
            raise ConfigError("calibration: containment must be strictly ascending within (0, 1)")
        if not (np.all(np.diff(q) > 0) and q[0] > 0 and np.all(np.isfinite(q))):
            raise ConfigError("calibration: scaled_level must be finite, > 0 and strictly ascending")
        lo, hi = self.domain
        if not (0 < lo <= hi and self.reference > 0 and math.isfinite(self.exponent)):
            raise ConfigError("calibration: bad domain, reference or exponent")

    # -- the model --------------------------------------------------------------------------
    def scale(self, feature_value: float) -> float:
        """(n / n_ref) ** exponent, with n clamped to the calibrated domain."""
        lo, hi = self.domain
        n = min(max(float(feature_value), lo), hi)
        return float((n / self.reference) ** self.exponent)

    def applies_to(self, reco: str, reco_options: Mapping[str, str]) -> bool:
        """True if a scan with this reco and these options is the fit this table calibrates."""
        if reco != self.reco:
            return False
        for key, value in reco_options.items():
            if key in NEUTRAL_OPTIONS:
                continue
            if str(self.reco_options.get(key, "")) != str(value):
                return False
        return True

    def for_event(self, feature_value: float) -> EventCalibration:
        """The thresholds of one event."""
        lo, hi = self.domain
        s = self.scale(feature_value)
        return EventCalibration(
            containment=self.containment,
            level=tuple(s * q for q in self.scaled_level),
            feature=self.feature,
            feature_value=float(feature_value),
            extrapolated=not (lo <= feature_value <= hi),
            version=self.version,
        )

    # -- file -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": CALIBRATION_FORMAT,
            "version": self.version,
            "reco": self.reco,
            "reco_options": dict(self.reco_options),
            "feature": {"name": self.feature, "reference": self.reference, "exponent": self.exponent,
                        "domain": list(self.domain)},
            "containment": list(self.containment),
            "scaled_level": list(self.scaled_level),
            "tail": _TAIL,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "calibration") -> Calibration:
        if not isinstance(d, Mapping) or d.get("format") != CALIBRATION_FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ConfigError(f"{source}: not a {CALIBRATION_FORMAT} file (format {got!r}); "
                              "this version of skymap_scanner cannot use it")
        try:
            f = d["feature"]
            return cls(
                reco=str(d["reco"]),
                reco_options={str(k): str(v) for k, v in dict(d.get("reco_options") or {}).items()},
                feature=str(f["name"]),
                reference=float(f["reference"]),
                exponent=float(f["exponent"]),
                domain=(float(f["domain"][0]), float(f["domain"][1])),
                containment=tuple(float(x) for x in d["containment"]),
                scaled_level=tuple(float(x) for x in d["scaled_level"]),
                provenance=dict(d.get("provenance") or {}),
                version=str(d.get("version", "")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ConfigError(f"{source}: malformed calibration ({type(e).__name__}: {e})") from None


@dataclasses.dataclass(frozen=True)
class EventCalibration:
    """The calibration applied to one event: containment -> 2*Delta-llh level, and back."""

    containment: tuple[float, ...]
    level: tuple[float, ...]
    feature: str
    feature_value: float
    extrapolated: bool = False
    version: str = ""

    def level_for(self, containment: float) -> float:
        """The 2*Delta-llh threshold containing the truth in a fraction ``containment`` of events."""
        c = np.asarray(self.containment)
        if not (c[0] <= containment <= c[-1]):
            raise ConfigError(f"containment {containment} is outside the calibrated range "
                              f"[{c[0]:g}, {c[-1]:g}]")
        return float(np.interp(containment, c, np.asarray(self.level)))

    def containment_of(self, level: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Containment of each 2*Delta-llh threshold (0 at 0, the table in between, a tail beyond).

        Monotone non-decreasing in ``level``, < 1 everywhere; NaN stays NaN.
        """
        t = np.asarray(level, dtype=float)
        c = np.concatenate([[0.0], np.asarray(self.containment)])
        q = np.concatenate([[0.0], np.asarray(self.level)])
        out = np.interp(np.maximum(t, 0.0), q, c)
        c_top, t_top = c[-1], q[-1]
        w_top = -2.0 * math.log1p(-c_top)  # the Wilks level of the top containment
        beyond = t > t_top
        out = np.where(beyond, 1.0 - (1.0 - c_top) * np.exp(-(t - t_top) * w_top / (2.0 * t_top)), out)
        return np.where(np.isnan(t), np.nan, out)

    def to_dict(self) -> dict[str, Any]:
        return {"containment": list(self.containment), "level": [round(x, 4) for x in self.level],
                "feature": self.feature, "feature_value": self.feature_value,
                "extrapolated": self.extrapolated, "version": self.version}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EventCalibration:
        try:
            return cls(tuple(float(x) for x in d["containment"]), tuple(float(x) for x in d["level"]),
                       str(d["feature"]), float(d["feature_value"]), bool(d.get("extrapolated", False)),
                       str(d.get("version", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"malformed event calibration ({type(e).__name__}: {e})") from None


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file; a wrong format or version is a ConfigError (one line)."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the calibration ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p}: the calibration is not JSON ({e.msg})") from None
    return Calibration.from_dict(d, str(p))


def shipped_calibration(reco: str) -> Calibration | None:
    """The calibration shipped for ``reco``, or None if it has none."""
    path = SHIPPED.get(reco)
    if path is None or not path.exists():
        return None
    return load_calibration(path)


# -- deriving a calibration (pure) ------------------------------------------------------------
def spearman(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    r = spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic
    return float(r) if np.isfinite(r) else 0.0


def fit_exponent(two_dllh: npt.ArrayLike, feature: npt.ArrayLike, reference: float,
                 bounds: tuple[float, float] = (-1.0, 3.0)) -> float:
    """The exponent that makes 2*Delta-llh / (n / n_ref) ** exponent rank-uncorrelated with n."""
    d = np.asarray(two_dllh, float)
    n = np.asarray(feature, float)
    lo, hi = bounds

    def corr(a: float) -> float:
        return spearman(d / (n / reference) ** a, n)

    if corr(lo) <= 0.0:
        return lo
    if corr(hi) >= 0.0:
        return hi
    for _ in range(60):  # the correlation falls as the exponent grows: bisect its zero
        mid = 0.5 * (lo + hi)
        if corr(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


DEFAULT_GRID = tuple(round(x, 2) for x in np.arange(0.05, 0.951, 0.05)) + (0.97, 0.99)


def derive(two_dllh: npt.ArrayLike, feature: npt.ArrayLike, *, reco: str, reco_options: Mapping[str, str],
           feature_name: str = "n_doms", exponent: float | None = None,
           containment: Sequence[float] = DEFAULT_GRID, provenance: Mapping[str, Any] | None = None,
           version: str = "") -> Calibration:
    """A calibration from events' 2*Delta-llh at the true direction and their feature values.

    ``exponent`` None fits it (:func:`fit_exponent`); 0 makes the thresholds the same for all events.
    """
    d = np.asarray(two_dllh, float)
    n = np.asarray(feature, float)
    ok = np.isfinite(d) & np.isfinite(n) & (n > 0)
    d, n = np.maximum(d[ok], 0.0), n[ok]
    if d.size < 20:
        raise ConfigError(f"a calibration needs at least 20 events with a finite 2*Delta-llh, got {d.size}")
    reference = float(np.median(n))
    a = fit_exponent(d, n, reference) if exponent is None else float(exponent)
    x = d / (n / reference) ** a
    q = np.quantile(x, np.asarray(containment, float))
    # strictly ascending and > 0 (ties at 0 when many truths sit on the best pixel)
    floor = max(float(np.min(x[x > 0])) if np.any(x > 0) else 1e-3, 1e-3) * 1e-3
    q = np.maximum.accumulate(np.maximum(q, floor) + np.arange(q.size) * 1e-9)
    return Calibration(
        reco=reco, reco_options={str(k): str(v) for k, v in reco_options.items()}, feature=feature_name,
        reference=reference, exponent=float(a), domain=(float(n.min()), float(n.max())),
        containment=tuple(float(c) for c in containment), scaled_level=tuple(float(v) for v in q),
        provenance=dict(provenance or {}), version=version,
    )


def coverage(two_dllh: npt.ArrayLike, levels: npt.ArrayLike) -> float:
    """Fraction of events whose 2*Delta-llh at the truth is <= their own level."""
    d = np.asarray(two_dllh, float)
    t = np.asarray(levels, float)
    return float(np.mean(d <= t)) if d.size else float("nan")

"""The reco plugin interface.

A reco is a class in a module ``skymap_scanner.recos.<name>`` exposed as that
module's ``RECO`` attribute. The scan engine never looks inside a reco: it asks
for the number of position variations (``n_posvar``), prepares the event once
per process (:meth:`Reco.prepare`: cleaning, seeds), then calls
:meth:`Reco.fit` once per (pixel, posvar) with the direction held fixed.

Directions given to a reco are local IceCube coordinates in radians: (zenith,
azimuth) is the direction the particle comes FROM; x = grid East, y = grid North,
azimuth counter-clockwise from x.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ConfigError
from ..events.model import Event


@dataclass(frozen=True)
class Vertex:
    """A track vertex: position in m (IceCube coordinates) and time in ns."""

    x_m: float
    y_m: float
    z_m: float
    t_ns: float

    def is_finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.x_m, self.y_m, self.z_m, self.t_ns))


@dataclass(frozen=True)
class FitResult:
    """One fit of one (pixel, posvar): llh is a negative log-likelihood (lower is better).

    E_in / E_tot are energy estimates (GeV) or a documented proxy, NaN when not
    estimated; X, Y, Z in m and T in ns are the fitted vertex.
    """

    llh: float
    E_in: float
    E_tot: float
    X: float
    Y: float
    Z: float
    T: float

    @classmethod
    def failed(cls) -> FitResult:
        nan = float("nan")
        return cls(nan, nan, nan, nan, nan, nan, nan)


@dataclass(frozen=True)
class FitRequest:
    """One (pixel, posvar) to fit, as :meth:`Reco.fit_batch` receives it."""

    zenith_rad: float
    azimuth_rad: float
    posvar: int
    seed: Vertex | None = None
    nside: int | None = None
    pixel: int | None = None


class Reco(ABC):
    """Base class of every reco plugin.

    ``OPTIONS`` maps option name -> (type, default, help); values come from the
    command line as ``--reco-option NAME=VALUE`` and are checked here.
    """

    name: ClassVar[str] = ""
    #: True when the reco fits a whole work message at once (:meth:`fit_batch`), e.g. an external process
    batched: ClassVar[bool] = False
    OPTIONS: ClassVar[Mapping[str, tuple[type, Any, str]]] = {}

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options: dict[str, Any] = {k: spec[1] for k, spec in self.OPTIONS.items()}
        for key, raw in (options or {}).items():
            if key not in self.OPTIONS:
                known = ", ".join(sorted(self.OPTIONS)) or "none"
                raise ConfigError(f"reco {self.name!r} has no option {key!r} (options: {known})")
            typ = self.OPTIONS[key][0]
            try:
                if typ is bool:
                    if str(raw).lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError(raw)
                    value: Any = str(raw).lower() in ("1", "true", "yes")
                else:
                    value = typ(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"reco option {key}={raw!r} is not a valid {typ.__name__}") from None
            self.options[key] = value

    @property
    def n_posvar(self) -> int:
        """How many position variations (seed vertices) are fitted per pixel."""
        return 1

    @abstractmethod
    def prepare(self, event: Event) -> Any:
        """Per-event preparation, run once per process (pulse cleaning, seeds)."""

    @abstractmethod
    def fit(
        self,
        prepared: Any,
        zenith_rad: float,
        azimuth_rad: float,
        posvar: int,
        seed: Vertex | None,
    ) -> FitResult:
        """Fit with the direction fixed; ``seed`` is the parent pixel's best vertex, if any."""

    def calibration_feature(self, event: Event) -> float | None:
        """The event's value of the feature a calibration of this reco's regions depends on
        (:mod:`skymap_scanner.calibration`), or None for a reco without calibration."""
        return None

    def fit_batch(self, prepared: Any, requests: Sequence[FitRequest]) -> list[FitResult | Exception]:
        """Fit several items; an exception fails only its own item. The default calls :meth:`fit` in turn;
        the worker calls this instead of :meth:`fit` only for recos with ``batched = True``."""
        out: list[FitResult | Exception] = []
        for r in requests:
            try:
                out.append(self.fit(prepared, r.zenith_rad, r.azimuth_rad, r.posvar, r.seed))
            except Exception as e:  # a reco failure is data
                out.append(e)
        return out


def error_line(e: BaseException) -> str:
    """A reco failure as the one line a result message carries."""
    return (f"{type(e).__name__}: {e}".splitlines() or ["error"])[0][:300]


def fit_batch_arrays(reco: Reco, prepared: Any, nside: int, pixels: Any, posvars: Any, zenith_rad: Any,
                     azimuth_rad: Any, seeds: Any) -> tuple[Any, tuple[str | None, ...], Any]:
    """A work message's items through :meth:`Reco.fit_batch`: (fits (n, 7), errors, runtimes s).

    Every item is given the batch's mean run time (the fits of a batch are not timed one by one)."""
    import time

    import numpy as np

    seeds = np.asarray(seeds, np.float64)
    ok = np.isfinite(seeds).all(axis=1).tolist()
    requests = [FitRequest(z, a, v, Vertex(*s) if good else None, nside, p) for z, a, v, s, good, p in zip(
        np.asarray(zenith_rad).tolist(), np.asarray(azimuth_rad).tolist(), np.asarray(posvars).tolist(),
        seeds.tolist(), ok, np.asarray(pixels).tolist(), strict=True)]
    n = len(requests)
    t0 = time.perf_counter()
    try:
        outcomes: list[FitResult | Exception] = reco.fit_batch(prepared, requests)
        if len(outcomes) != n:
            outcomes = [RuntimeError(f"{reco.name} answered {len(outcomes)} fits for {n}")] * n
    except Exception as e:  # the whole batch failed: every item reports it
        outcomes = [e] * n
    elapsed = time.perf_counter() - t0
    fits = np.full((n, 7), np.nan)
    errors: list[str | None] = [None] * n
    for i, o in enumerate(outcomes):
        if isinstance(o, FitResult):
            fits[i] = (o.llh, o.E_in, o.E_tot, o.X, o.Y, o.Z, o.T)
        else:
            errors[i] = error_line(o)
    return fits, tuple(errors), np.full(n, elapsed / max(n, 1))

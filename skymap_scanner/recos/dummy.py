"""``dummy``: a smooth, deterministic llh landscape for testing the scan machinery.

The planted minimum is a direction derived from the event identifiers (a hash of
run_id and event_id), so every event has its own and a test can know it.
llh = 1000 * (1 - cos(psi)) + 0.01 * posvar, with psi the angle between the pixel
and the planted direction: smooth, with its minimum exactly at the planted direction.
E_in = E_tot = total charge (PE, a proxy); the vertex is the charge-weighted
centre of the pulses.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..events.model import Event
from .base import FitResult, Reco, Vertex


def planted_direction(event: Event) -> tuple[float, float]:
    """(zenith, azimuth) in rad of the dummy landscape's minimum for ``event``."""
    digest = hashlib.sha256(f"{event.run_id}:{event.event_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "little") / 2**64
    v = int.from_bytes(digest[8:16], "little") / 2**64
    return math.acos(1.0 - 2.0 * u), 2.0 * math.pi * v


@dataclass(frozen=True)
class DummyPrepared:
    planted_unit: tuple[float, float, float]
    vertex: Vertex
    qtot_pe: float


def unit_vector(zenith_rad: float, azimuth_rad: float) -> tuple[float, float, float]:
    s = math.sin(zenith_rad)
    return s * math.cos(azimuth_rad), s * math.sin(azimuth_rad), math.cos(zenith_rad)


class DummyReco(Reco):
    """Smooth test landscape; no physics."""

    name = "dummy"
    OPTIONS = {
        "sleep_s": (float, 0.0, "seconds to sleep per fit (to mimic a slow reco)"),
        "n_posvar": (int, 2, "number of position variations per pixel"),
    }

    @property
    def n_posvar(self) -> int:
        return max(1, int(self.options["n_posvar"]))

    def prepare(self, event: Event) -> DummyPrepared:
        p = event.pulses
        w = p.charge_pe / p.charge_pe.sum() if p.charge_pe.sum() > 0 else np.full(len(p), 1 / len(p))
        vertex = Vertex(
            float(w @ p.x_m), float(w @ p.y_m), float(w @ p.z_m), float(w @ p.time_ns)
        )
        return DummyPrepared(unit_vector(*planted_direction(event)), vertex, p.qtot_pe)

    def fit(
        self, prepared: Any, zenith_rad: float, azimuth_rad: float, posvar: int, seed: Vertex | None
    ) -> FitResult:
        if self.options["sleep_s"] > 0:
            time.sleep(self.options["sleep_s"])
        ux, uy, uz = unit_vector(zenith_rad, azimuth_rad)
        px, py, pz = prepared.planted_unit
        cos_psi = max(-1.0, min(1.0, ux * px + uy * py + uz * pz))
        llh = 1000.0 * (1.0 - cos_psi) + 0.01 * posvar
        v = prepared.vertex
        return FitResult(llh, prepared.qtot_pe, prepared.qtot_pe, v.x_m, v.y_m, v.z_m, v.t_ns)


RECO = DummyReco

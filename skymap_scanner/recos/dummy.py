"""``dummy``: a smooth, deterministic llh landscape for testing the scan machinery.

The planted minimum is a direction derived from the event identifiers (a hash of
run_id and event_id), so every event has its own and a test can know it.
llh = llh_scale * (1 - cos(psi)) + 0.01 * posvar, with psi the angle between the pixel
and the planted direction: smooth, with its minimum exactly at the planted direction.
Near the minimum 2*Delta-llh ~= llh_scale * psi**2 (psi in rad), so the default llh_scale = 1000
puts the 2*Delta-llh = 11.3 contour at psi = 0.106 rad = 6.1 deg.

With ``axis_ratio`` q > 1 the minimum is elliptical: llh gains llh_scale * (q**2 - 1) * b**2 / 2, with
b the component of the direction along the minor axis (a unit vector tangent to the sky at the planted
direction). Near the minimum 2*Delta-llh ~= llh_scale * (a**2 + q**2 * b**2) (a, b in rad along the major
and minor axes): the contours are ellipses with major / minor = q. The major axis points along
increasing zenith at the planted direction, turned by ``position_angle_deg`` towards increasing azimuth.
E_in = E_tot = total charge (PE, a proxy); the vertex is the charge-weighted
centre of the pulses.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
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
    minor_unit: tuple[float, float, float] = (0.0, 0.0, 0.0)  # tangent unit vector along the minor axis


def minor_axis(zenith_rad: float, azimuth_rad: float, position_angle_rad: float) -> tuple[float, float, float]:
    """Unit vector tangent to the sphere at (zenith, azimuth) rad along the minor axis of the dummy's ellipse:
    the zenith direction turned by the position angle + 90 deg towards the azimuth direction."""
    e_zen = (math.cos(zenith_rad) * math.cos(azimuth_rad), math.cos(zenith_rad) * math.sin(azimuth_rad),
             -math.sin(zenith_rad))
    e_azi = (-math.sin(azimuth_rad), math.cos(azimuth_rad), 0.0)
    angle = position_angle_rad + math.pi / 2
    c, s = math.cos(angle), math.sin(angle)
    return (c * e_zen[0] + s * e_azi[0], c * e_zen[1] + s * e_azi[1], c * e_zen[2] + s * e_azi[2])


def unit_vector(zenith_rad: float, azimuth_rad: float) -> tuple[float, float, float]:
    s = math.sin(zenith_rad)
    return s * math.cos(azimuth_rad), s * math.sin(azimuth_rad), math.cos(zenith_rad)


class DummyReco(Reco):
    """Smooth test landscape; no physics."""

    name = "dummy"
    OPTIONS = {
        "sleep_s": (float, 0.0, "seconds to sleep per fit (to mimic a slow reco)"),
        "n_posvar": (int, 2, "number of position variations per pixel"),
        "llh_scale": (float, 1000.0, "llh per unit of (1 - cos psi); 2*Delta-llh ~= llh_scale * psi**2, psi in rad"),
        "axis_ratio": (float, 1.0, "major / minor axis of the elliptical minimum (>= 1; 1 = circular)"),
        "position_angle_deg": (float, 0.0, "major axis direction, deg from increasing zenith towards azimuth"),
    }

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        if not self.options["llh_scale"] > 0:
            raise ConfigError(f"reco option llh_scale must be > 0, got {self.options['llh_scale']}")
        if not self.options["axis_ratio"] >= 1:
            raise ConfigError(f"reco option axis_ratio must be >= 1, got {self.options['axis_ratio']}")

    @property
    def n_posvar(self) -> int:
        return max(1, int(self.options["n_posvar"]))

    def prepare(self, event: Event) -> DummyPrepared:
        p = event.pulses
        w = p.charge_pe / p.charge_pe.sum() if p.charge_pe.sum() > 0 else np.full(len(p), 1 / len(p))
        vertex = Vertex(
            float(w @ p.x_m), float(w @ p.y_m), float(w @ p.z_m), float(w @ p.time_ns)
        )
        zen, azi = planted_direction(event)
        return DummyPrepared(unit_vector(zen, azi), vertex, p.qtot_pe,
                             minor_axis(zen, azi, math.radians(self.options["position_angle_deg"])))

    def fit(
        self, prepared: Any, zenith_rad: float, azimuth_rad: float, posvar: int, seed: Vertex | None
    ) -> FitResult:
        if self.options["sleep_s"] > 0:
            time.sleep(self.options["sleep_s"])
        ux, uy, uz = unit_vector(zenith_rad, azimuth_rad)
        px, py, pz = prepared.planted_unit
        cos_psi = max(-1.0, min(1.0, ux * px + uy * py + uz * pz))
        scale, q = float(self.options["llh_scale"]), float(self.options["axis_ratio"])
        llh = scale * (1.0 - cos_psi) + 0.01 * posvar
        if q != 1.0:
            mx, my, mz = prepared.minor_unit
            b = ux * mx + uy * my + uz * mz
            llh += scale * (q * q - 1.0) * b * b / 2.0
        v = prepared.vertex
        return FitResult(llh, prepared.qtot_pe, prepared.qtot_pe, v.x_m, v.y_m, v.z_m, v.t_ns)


RECO = DummyReco

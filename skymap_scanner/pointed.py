"""Pointed scans and the event's online fits on the sky (pure, apart from astropy's frames).

IceCube runs pointed scans for a fast follow-up of an online fit (e.g. SplineMPE): the first nside
is scanned only on a disc around that fit's direction instead of the whole sky
(``--pointed-at NAME --pointed-radius-deg R``). The disc's pixels come from
:func:`skymap_scanner.pixels.disc_pixels`; a region that reaches the disc's edge is flagged by the
products (``summary.json`` ``pointed.region_touches_edge``) and in the server's log.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .events.model import Event
from .pixels import IntArray, disc_pixels

DEFAULT_RADIUS_DEG = 3.5


def online_fit_radec(event: Event) -> dict[str, tuple[float, float]]:
    """(RA, Dec) deg of each online fit of the event with a finite direction."""
    from .coords import local_to_equatorial

    fits = [f for f in event.online_fits.values() if math.isfinite(f.zenith_rad) and math.isfinite(f.azimuth_rad)]
    if not fits:
        return {}
    ra, dec = local_to_equatorial([f.zenith_rad for f in fits], [f.azimuth_rad for f in fits], event.mjd)
    return {f.name: (round(float(np.degrees(r)), 6), round(float(np.degrees(d)), 6))
            for f, r, d in zip(fits, np.atleast_1d(ra), np.atleast_1d(dec), strict=True)}


@dataclass(frozen=True)
class Pointing:
    """The disc a pointed scan's first nside covers: around online fit ``name`` at (RA, Dec) deg."""

    name: str
    ra_deg: float
    dec_deg: float
    radius_deg: float

    def first_pixels(self, nside: int) -> IntArray:
        return disc_pixels(nside, math.radians(self.ra_deg), math.radians(self.dec_deg), math.radians(self.radius_deg))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_pointing(event: Event, name: str, radius_deg: float = DEFAULT_RADIUS_DEG) -> Pointing:
    """The :class:`Pointing` at the event's online fit ``name``; one-line :class:`ConfigError` if the
    event has no such fit or the radius is not in (0, 180] deg."""
    if not 0.0 < radius_deg <= 180.0:
        raise ConfigError(f"--pointed-radius-deg must be in (0, 180], got {radius_deg:g}")
    radec = online_fit_radec(event)
    if name not in radec:
        known = ", ".join(sorted(radec)) or "none"
        raise ConfigError(f"--pointed-at {name}: the event has no such online fit (it has: {known})")
    ra, dec = radec[name]
    return Pointing(name, ra, dec, float(radius_deg))

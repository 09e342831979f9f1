"""Local IceCube <-> equatorial J2000 coordinates (IceCube ``astro`` conventions).

Local: (zenith, azimuth) in rad, the direction the particle comes FROM; x = grid
East, y = grid North, azimuth counter-clockwise from x. Equatorial: J2000 mean
place (FK5, equinox J2000), RA and Dec in rad. Time: MJD (UTC).

Observer: latitude -89.9944 deg, longitude -62.6081 deg (east positive), height 0.
Astronomical azimuth (N=0, E=90): A = pi/2 - phi - lambda; altitude = pi/2 - theta.
Refraction off, UT1-UTC = 0, no polar motion (as IceCube's ``astro`` does).
Uses astropy with IERS downloads disabled so it works offline.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt

ICECUBE_LAT_DEG = -89.9944
ICECUBE_LON_DEG = -62.6081

ArrayLike = npt.ArrayLike
F64 = npt.NDArray[np.float64]


@functools.lru_cache(maxsize=1)
def _astropy() -> Any:
    """astropy's pieces, imported once (slow import), with IERS downloads off (offline machines)."""
    from astropy import units as u
    from astropy.coordinates import FK5, AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    location = EarthLocation.from_geodetic(lon=ICECUBE_LON_DEG * u.deg, lat=ICECUBE_LAT_DEG * u.deg, height=0 * u.m)
    return SimpleNamespace(u=u, FK5=FK5, AltAz=AltAz, SkyCoord=SkyCoord, Time=Time, location=location)


def _frames(mjd: float) -> tuple[Any, Any]:
    """(AltAz at the pole at ``mjd`` UTC with UT1-UTC = 0 and no refraction, FK5 J2000)."""
    ap = _astropy()
    obstime = ap.Time(mjd, format="mjd", scale="utc")
    obstime.delta_ut1_utc = 0.0
    altaz = ap.AltAz(obstime=obstime, location=ap.location, pressure=0 * ap.u.hPa)
    return altaz, ap.FK5(equinox="J2000")


def local_to_equatorial(zenith_rad: ArrayLike, azimuth_rad: ArrayLike, mjd: float) -> tuple[F64, F64]:
    """(zenith, azimuth) at ``mjd`` -> J2000 (ra, dec), all in rad (vectorised)."""
    ap = _astropy()
    zen = np.asarray(zenith_rad, dtype=np.float64)
    azi = np.asarray(azimuth_rad, dtype=np.float64)
    altaz, fk5 = _frames(mjd)
    astro_az = np.mod(np.pi / 2 - azi - np.radians(ICECUBE_LON_DEG), 2 * np.pi)
    alt = np.pi / 2 - zen
    c = ap.SkyCoord(az=astro_az * ap.u.rad, alt=alt * ap.u.rad, frame=altaz)
    eq = c.transform_to(fk5)
    return (np.asarray(eq.ra.rad, dtype=np.float64).reshape(zen.shape),
            np.asarray(eq.dec.rad, dtype=np.float64).reshape(zen.shape))


def equatorial_to_local(ra_rad: ArrayLike, dec_rad: ArrayLike, mjd: float) -> tuple[F64, F64]:
    """J2000 (ra, dec) -> (zenith, azimuth) at ``mjd``, all in rad (vectorised)."""
    ap = _astropy()
    ra = np.asarray(ra_rad, dtype=np.float64)
    dec = np.asarray(dec_rad, dtype=np.float64)
    altaz, fk5 = _frames(mjd)
    c = ap.SkyCoord(ra=ra * ap.u.rad, dec=dec * ap.u.rad, frame=fk5)
    loc = c.transform_to(altaz)
    zen = np.pi / 2 - np.asarray(loc.alt.rad, dtype=np.float64)
    azi = np.mod(np.pi / 2 - np.asarray(loc.az.rad, dtype=np.float64) - np.radians(ICECUBE_LON_DEG), 2 * np.pi)
    return zen.reshape(ra.shape), azi.reshape(ra.shape)

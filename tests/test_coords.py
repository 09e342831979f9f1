"""Local (IceCube zenith/azimuth) <-> J2000 RA/Dec, against the values the shared README records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.coords import equatorial_to_local, local_to_equatorial
from skymap_scanner.events import load_event
from skymap_scanner.events.i3live import envelope

DATA = Path(__file__).parent / "data" / "events"
ARCSEC = np.radians(1 / 3600)
SIDEREAL_DAY = 0.99726956633  # solar days


def _unit(zen: np.ndarray, azi: np.ndarray) -> np.ndarray:
    return np.stack([np.sin(zen) * np.cos(azi), np.sin(zen) * np.sin(azi), np.cos(zen)], axis=-1)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.arctan2(np.linalg.norm(np.cross(a, b), axis=-1), (a * b).sum(axis=-1))


@pytest.mark.parametrize(
    "name, ra_deg, dec_deg",
    [("run00136662-evt000035405932-BRONZE.pkl", 48.850, -3.522), ("138632_31747601.json", 138.654, 0.142)],
)
def test_splinempe_ra_dec_of_both_track_alerts(name: str, ra_deg: float, dec_deg: float) -> None:
    path = DATA / name
    raw = path.read_bytes()
    msg = envelope.load_message_pickle(raw) if path.suffix == ".pkl" else json.loads(raw)
    reco = msg["value"]["data"]["reco"]["splinempe"]
    ev = load_event(path)
    ra, dec = local_to_equatorial(reco["zen"], reco["azi"], ev.mjd)
    assert abs(np.degrees(ra) - ra_deg) < 0.01
    assert abs(np.degrees(dec) - dec_deg) < 0.01
    # the decoded SplineMPE (full precision) lands at the same place
    fit = ev.online_fits["SplineMPE"]
    ra2, dec2 = local_to_equatorial(fit.zenith_rad, fit.azimuth_rad, ev.mjd)
    assert abs(np.degrees(ra2) - ra_deg) < 0.01 and abs(np.degrees(dec2) - dec_deg) < 0.01


@pytest.mark.parametrize("mjd", [57517.62789262638, 59723.32051140455, 60280.71416774572])
def test_round_trip_below_one_arcsec(mjd: float) -> None:
    rng = np.random.default_rng(7)
    zen = np.arccos(rng.uniform(-1, 1, 2000))
    azi = rng.uniform(0, 2 * np.pi, 2000)
    ra, dec = local_to_equatorial(zen, azi, mjd)
    assert ((ra >= 0) & (ra < 2 * np.pi)).all() and (np.abs(dec) <= np.pi / 2).all()
    zen2, azi2 = equatorial_to_local(ra, dec, mjd)
    sep = _angle(_unit(zen, azi), _unit(zen2, azi2))
    assert sep.max() < ARCSEC
    # and the other way round, starting from the sky
    ra0 = rng.uniform(0, 2 * np.pi, 2000)
    dec0 = np.arcsin(rng.uniform(-1, 1, 2000))
    r2, d2 = local_to_equatorial(*equatorial_to_local(ra0, dec0, mjd), mjd)
    sep = _angle(_unit(np.pi / 2 - dec0, ra0), _unit(np.pi / 2 - d2, r2))
    assert sep.max() < ARCSEC


def test_shapes_and_scalars() -> None:
    ra, dec = local_to_equatorial(1.0, 2.0, 59000.0)
    assert np.shape(ra) == () and np.shape(dec) == ()
    zen = np.full((3, 4), 1.0)
    ra, dec = local_to_equatorial(zen, zen * 2, 59000.0)
    assert ra.shape == dec.shape == (3, 4)
    np.testing.assert_allclose(ra, ra.flat[0], atol=0)  # same direction, same answer


def test_sky_turns_once_per_sidereal_day_and_zenith_is_near_the_pole() -> None:
    zen, azi = np.array([0.7, 1.6, 2.5]), np.array([0.3, 2.0, 5.1])
    ra1, dec1 = local_to_equatorial(zen, azi, 59000.25)
    ra2, dec2 = local_to_equatorial(zen, azi, 59000.25 + SIDEREAL_DAY)
    sep = _angle(_unit(np.pi / 2 - dec1, ra1), _unit(np.pi / 2 - dec2, ra2))
    assert sep.max() < 2 * ARCSEC  # only aberration/precession over one day remain
    # a quarter day later, a fixed local direction has moved east by ~90 deg in RA (Earth's rotation);
    # not exactly: it turns about the pole of date, ~0.1 deg from the J2000 pole (precession since 2000)
    ra_q, dec_q = local_to_equatorial(zen, azi, 59000.5)
    dra = np.mod(ra_q - ra1 + np.pi, 2 * np.pi) - np.pi
    np.testing.assert_allclose(dra, 2 * np.pi * 0.25 / SIDEREAL_DAY, atol=np.radians(0.5))
    np.testing.assert_allclose(dec_q, dec1, atol=np.radians(0.3))
    _, dec_up = local_to_equatorial(0.0, 0.0, 59000.0)  # straight up at the South Pole
    assert np.degrees(dec_up) < -89.7

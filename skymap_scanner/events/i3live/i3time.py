"""I3Time -> UTC (MJD and calendar time), handling leap seconds as IceTray does (spec section 4)."""

from __future__ import annotations

import datetime as dt

from .archive import DecodeError
from .objects import I3Time

#: MJDs of the days that end with a leap second (86401 s long), 1972-2016.
LEAP_SECOND_DAYS = frozenset((
    41316, 41498, 41682, 42047, 42412, 42777, 43143, 43508, 43873, 44238, 44785,
    45150, 45515, 46246, 47160, 47891, 48256, 48803, 49168, 49533, 50082, 50629,
    51178, 53735, 54831, 56108, 57203, 57753,
))

_MJD_EPOCH = dt.date(1858, 11, 17)
DAQ_PER_S = 10**10  # daq ticks (0.1 ns) per second


def _mjd_of_jan1(year: int) -> int:
    return (dt.date(year, 1, 1) - _MJD_EPOCH).days


def utc_parts(t: I3Time) -> tuple[int, int, int]:
    """(MJD day, second of the day, 0.1-ns ticks within the second); the second can be 86400 on a leap day."""
    if not 1 <= t.year <= 9998 or t.daq < 0:
        raise DecodeError(f"implausible I3Time (year {t.year}, daq {t.daq})")
    day = _mjd_of_jan1(t.year)
    secs, ticks = divmod(t.daq, DAQ_PER_S)
    while True:
        length = 86401 if day in LEAP_SECOND_DAYS else 86400
        if secs < length:
            return day, secs, ticks
        secs -= length
        day += 1


def to_mjd(t: I3Time) -> float:
    """UTC MJD as IceCube's ``astro`` computes it: day + sec/86400 + ns/8.64e13."""
    day, secs, ticks = utc_parts(t)
    return day + secs / 86400.0 + (ticks / 10.0) / 8.64e13


def to_datetime_string(t: I3Time) -> str:
    """``YYYY-MM-DD hh:mm:ss.ffffff`` UTC, microseconds truncated (the alert message's ``eventtime`` style)."""
    day, secs, ticks = utc_parts(t)
    date = _MJD_EPOCH + dt.timedelta(days=day)
    hh, rem = divmod(secs, 3600)
    mm, ss = divmod(rem, 60)
    if hh == 24:  # the leap second itself: 23:59:60
        hh, mm, ss = 23, 59, 60
    return f"{date.isoformat()} {hh:02d}:{mm:02d}:{ss:02d}.{ticks // 10_000:06d}"

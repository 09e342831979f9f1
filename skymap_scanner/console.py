"""What a person at the server's command line sees: checked paths, event sanity, progress, the last line.

- :func:`prepare_dirs` checks (and creates) the output and cache directories before anything is
  written; :func:`remove_empty_dirs` takes back the ones it created when the run fails, so a failed
  run leaves nothing behind.
- :func:`check_event` refuses an event the detector cannot have produced and warns about one that is
  merely unusual.
- :func:`remaining_items` estimates the work left in the whole scan (not only the current nside),
  for the ETA; :class:`ProgressView` draws a progress bar on a terminal and leaves the periodic
  progress log line otherwise.
- :func:`final_line` is the last thing the server says: best fit, the 90% region's area, where the
  products are.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .errors import ConfigError, EventError
from .events.model import Event
from .pixels import NsideStep

LOGGER = logging.getLogger("skymap_scanner.server")

# -- paths ------------------------------------------------------------------------------------


def prepare_dirs(*dirs: tuple[str, Path | None]) -> list[Path]:
    """Check that each ``(option, path)`` is (or can be made) a writable directory; create it.

    Returns the directories created, outermost first (for :func:`remove_empty_dirs`). Raises a
    one-line :class:`ConfigError` naming the option; what was created before the error is removed.
    """
    created: list[Path] = []
    try:
        for option, path in dirs:
            if path is not None:
                created += _prepare_dir(option, Path(path))
    except ConfigError:
        remove_empty_dirs(created)
        raise
    return created


def _prepare_dir(option: str, path: Path) -> list[Path]:
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: exists and is not a directory")
    missing: list[Path] = []
    p = path.absolute()
    while not p.exists():
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"{option} {path}: {p} is not a directory")
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except OSError as e:
            remove_empty_dirs(created)
            raise ConfigError(f"{option} {path}: cannot create {d} ({e.strerror})") from None
        created.append(d)
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".skyscan-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        remove_empty_dirs(created)
        raise ConfigError(f"{option} {path}: not writable ({e.strerror})") from None
    return created


def remove_empty_dirs(created: Sequence[Path]) -> None:
    """Remove the directories :func:`prepare_dirs` created, innermost first, where they are empty."""
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass  # not empty (a result or checkpoint is in it) or already gone: keep it


# -- the event --------------------------------------------------------------------------------

#: Pulses one DOM can give in one event. One launch is digitised as 128 ATWD samples (3.3 ns) and
#: 256 fADC samples (25 ns), so unfolding yields at most ~384 pulses per launch; a DOM relaunches
#: after ~6.4 us, and an event's readout lasts tens of us. 2,000 is well above anything real.
MAX_PULSES_PER_DOM = 2000
#: Above these an event is unusual (brighter than any realtime alert): a warning, and a slow scan.
UNUSUAL_PULSES = 50_000
UNUSUAL_DOMS = 2_000


def check_event(event: Event, n_detector_doms: int = 5160) -> list[str]:
    """Raise :class:`EventError` for an event the detector cannot produce; return warnings for one
    that is merely unusual."""
    pulses = event.pulses
    n_doms = pulses.n_doms
    if n_doms > n_detector_doms:
        raise EventError(event.source, f"{n_doms} hit DOMs, but the detector has {n_detector_doms}")
    if len(pulses):
        key = pulses.string * 100 + pulses.om
        _, counts = np.unique(key, return_counts=True)
        worst = int(counts.max())
        if worst > MAX_PULSES_PER_DOM:
            raise EventError(event.source, f"{worst} pulses on one DOM (a DOM can record at most "
                                           f"~{MAX_PULSES_PER_DOM} in an event); {len(pulses)} pulses in all")
    warnings = []
    if len(pulses) > UNUSUAL_PULSES or n_doms > UNUSUAL_DOMS:
        warnings.append(f"unusual event: {len(pulses)} pulses on {n_doms} DOMs (realtime alerts have "
                        f"hundreds to a few thousand); the scan will be slow, check the event file")
    if len(pulses) and float(np.ptp(pulses.time_ns)) > 1e6:
        warnings.append(f"unusual event: its pulses span {np.ptp(pulses.time_ns) / 1e3:.0f} us "
                        "(an event's readout lasts tens of us)")
    return warnings


# -- progress ---------------------------------------------------------------------------------


def remaining_items(progress: Sequence[Mapping[str, Any]], steps: Sequence[NsideStep], n_posvar: int) -> int:
    """Fits left in the whole scan: what started nsides still expect, plus an estimate for the nsides
    not started yet (``n_refine`` coarse pixels, each split into (nside ratio)**2 children)."""
    left = 0
    for p, step, prev in zip(progress, steps, [None, *steps[:-1]], strict=True):
        if p["started"]:
            left += max(0, int(p["items_expected"]) - int(p["items_received"]))
        elif prev is not None:
            left += step.n_refine * (step.nside // prev.nside) ** 2 * n_posvar
    return left


def _fmt_s(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_text(manifest: Mapping[str, Any], width: int = 30) -> str:
    """``[#####.....]  45% | nside 64 | 123 fits/s | ETA 1m05s`` from a scan manifest."""
    prog = manifest["progress"]
    done = sum(int(p["items_received"]) for p in prog)
    eta = manifest.get("eta_s")
    rate = float(manifest.get("rate_fits_per_s") or 0.0)
    total = done + (eta * rate if eta is not None and rate > 0 else 0.0)
    frac = done / total if total > 0 else 0.0
    if manifest.get("complete"):
        frac = 1.0
    n = int(round(frac * width))
    current = [p["nside"] for p in prog if p["started"] and not p["complete"]]
    where = f"nside {current[0]}" if current else "finishing"
    return f"[{'#' * n}{'.' * (width - n)}] {frac:4.0%} | {where} | {rate:.0f} fits/s | ETA {_fmt_s(eta)}"


class ProgressView:
    """A progress bar on a terminal (redrawn at every manifest); elsewhere nothing (the scan's
    periodic ``progress:`` log line is the display). Log records clear the bar's line first."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._drawn = False
        if self.tty:
            logging.getLogger("skymap_scanner.scan").addFilter(self._filter)
            for h in logging.getLogger().handlers:
                h.addFilter(self._clear_line)

    def _filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("progress:")  # the bar shows it

    def _clear_line(self, record: logging.LogRecord) -> bool:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self._drawn = False
        return True

    def update(self, manifest: Mapping[str, Any]) -> None:
        if self.tty:
            self.stream.write("\r" + progress_text(manifest) + "\x1b[K")
            self.stream.flush()
            self._drawn = True

    def close(self) -> None:
        if self.tty:
            if self._drawn:
                self.stream.write("\n")
                self._drawn = False
            logging.getLogger("skymap_scanner.scan").removeFilter(self._filter)
            for h in logging.getLogger().handlers:
                h.removeFilter(self._clear_line)


def describe_best(best: Any) -> str:
    """``RA 47.73 deg, Dec -3.53 deg (nside 512, llh 512.345)`` of an engine's best pixel (or None)."""
    if best is None:
        return "none (no finite llh yet)"
    from .pixels import pixel_radec

    ra, dec = pixel_radec(best.nside, [best.pixel])
    return (f"RA {math.degrees(float(ra[0])):.2f} deg, Dec {math.degrees(float(dec[0])):+.2f} deg "
            f"(nside {best.nside}, llh {best.llh:.3f})")


# -- the last line ----------------------------------------------------------------------------


def final_line(summary: Mapping[str, Any] | None, best_radec_deg: tuple[float, float] | None,
               output_dir: Path) -> str:
    """``done: RA 47.73 deg, Dec -3.53 deg; 90% region 5.12 deg2 (icecube_90); products in out/``."""
    if summary is not None:
        fit = summary["best_fit"]
        name90 = (summary.get("headline_regions") or {}).get("90", "icecube_90")
        r90 = next((r for r in summary["regions"] if r["name"] == name90), None)
        area = f"90% region {r90['area_deg2']:.2f} deg2 ({name90})" if r90 else "no 90% region"
        if r90 and r90.get("pixel_limited"):
            area += ", pixel-limited"
        flags = []
        if summary.get("scan_complete") is False:
            flags.append("INCOMPLETE scan")
        if (summary.get("pointed") or {}).get("region_touches_edge"):
            flags.append("the 90% region touches the pointed disc's edge")
        extra = f" [{'; '.join(flags)}]" if flags else ""
        return (f"done: RA {fit['ra_deg']:.2f} deg, Dec {fit['dec_deg']:+.2f} deg; {area}{extra}; "
                f"products in {output_dir}")
    where = f"result in {output_dir} (no products)"
    if best_radec_deg is None:
        return f"done: no finite llh; {where}"
    return f"done: RA {best_radec_deg[0]:.2f} deg, Dec {best_radec_deg[1]:+.2f} deg; {where}"

"""The scan loop: drives a :class:`ScanEngine` over any :class:`Transport`.

Embedded and broker modes differ only in the transport handed to :func:`run_scan`.
The loop keeps a window of batches in flight, validates every reply (bad, foreign
or unasked-for replies are counted and dropped), re-sends overdue batches,
retries failed fits, checkpoints results, logs progress and writes the manifest
and partial results, and finally the result files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .atomic import atomic_write_text
from .calibration import EventCalibration, load_calibration, shipped_calibration
from .checkpoint import ResultLog
from .console import describe_best, remaining_items
from .contour import DEFAULT_CONTOUR_LEVEL, DEFAULT_CONTOUR_MARGIN
from .coords import equatorial_to_local
from .engine import ScanEngine, WorkItems
from .errors import ConfigError, MessageError, SkyScanError
from .events import native
from .events.model import Event
from .intake import DropLog, accept_result
from .messages import ScanOverMessage, StartedMessage, WorkMessage
from .pixels import DEFAULT_PROGRESSION, NsideStep, parse_progression, pixel_radec, progression_str
from .pointed import Pointing, online_fit_radec
from .protocol import Effects, ScanProtocol
from .recos import make_reco
from .recos.base import Reco
from .results import EventMeta, ScanResult, scan_provenance
from .signing import Verifier, scan_key, seal
from .transport import Transport

LOGGER = logging.getLogger(__name__)
BLOCK_ITEMS = 16384  # items popped (and converted to local coordinates) at once


class ScanStopped(Exception):
    """The scan was told to stop (a signal, the SkyDriver kill switch) before it was done."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason, self.exit_code = reason, exit_code


def make_scan_id(event: Event, reco_name: str, reco_options: Mapping[str, str], steps: tuple[NsideStep, ...],
                 threshold: float, contour: tuple[float, float] | None = None) -> str:
    """Deterministic id of a scan: the same arguments give the same id (so a restart resumes).
    ``contour``: (level, margin) of a progression with contour steps (they change what is scanned)."""
    h = hashlib.sha256()
    h.update(json.dumps(native.to_dict(event), sort_keys=True).encode())
    args: list[Any] = [reco_name, sorted(reco_options.items()), progression_str(steps), threshold]
    h.update(json.dumps(args if contour is None else [*args, list(contour)]).encode())
    return f"{event.run_id}-{event.event_id}-{h.hexdigest()[:12]}"


@dataclass
class ScanSpec:
    """Everything that defines one scan (not how it is transported)."""

    event: Event
    reco_name: str
    reco_options: Mapping[str, str] = field(default_factory=dict)
    nsides: str | tuple[NsideStep, ...] = DEFAULT_PROGRESSION
    predictive_threshold: float = 1.0
    max_attempts: int = 3
    batch_size: int = 0  # 0 = adapt to the reco's speed
    lease_min_s: float = 120.0
    progress_interval_s: float = 5.0
    result_interval_s: float = 60.0
    timeout_from_clients_s: float = 3 * 24 * 3600.0
    timeout_no_fit_s: float = 4 * 3600.0  # the scan fails when no fit succeeds for this long
    max_pixel_reco_s: float = 1800.0  # the longest one fit may take (SKYSCAN_MAX_PIXEL_RECO_TIME)
    cache_dir: Path | None = None
    steps: tuple[NsideStep, ...] = ()
    scan_id: str = ""
    n_posvar: int = 0
    pointing: Pointing | None = None  # a pointed scan: the first nside only on a disc (see pointed.py)
    key: bytes = field(default=b"", repr=False)  # the HMAC key of the scan's messages (see signing.py)
    #: names this scan's queues: the server sets a random one per scan (kept in --cache-dir for a resume,
    #: see checkpoint.scan_instance_id); the scan id when not set
    instance_id: str = ""
    #: this server process (random): its scan-over message is for its own clients only
    server_run: str = field(default_factory=lambda: secrets.token_hex(6))
    #: where the error-region calibration comes from: "auto" (the reco's shipped one, if it applies to
    #: these options), "none", or a calibration file's path
    calibration_source: str = "auto"
    calibration: EventCalibration | None = None  # this event's calibrated levels (set from the source)
    #: 2*Delta-llh level and margin the contour steps (NSIDE:c) follow; None: contour.DEFAULT_CONTOUR_*
    contour_level: float | None = None
    contour_margin: float | None = None

    def __post_init__(self) -> None:
        self.steps = parse_progression(self.nsides) if isinstance(self.nsides, str) else tuple(self.nsides)
        if self.contour_level is not None and not self.contour_level > 0:
            raise ConfigError(f"the contour level must be > 0, got {self.contour_level}")
        if self.contour_margin is not None and not self.contour_margin >= 0:
            raise ConfigError(f"the contour margin must be >= 0, got {self.contour_margin}")
        reco = make_reco(self.reco_name, self.reco_options)  # validates name and options early
        self.n_posvar = reco.n_posvar
        if self.calibration is None:  # before the id: a contour scan's level comes from it
            self.calibration = event_calibration(self.calibration_source, self.reco_name, self.reco_options,
                                                 reco, self.event)
        if not self.scan_id:
            self.scan_id = make_scan_id(self.event, self.reco_name, self.reco_options, self.steps,
                                        self.predictive_threshold,
                                        self.contour_settings() if any(s.contour for s in self.steps) else None)
            if self.pointing is not None:  # a different scan: never resume one from the other
                self.scan_id += "-p" + hashlib.sha256(repr(self.pointing).encode()).hexdigest()[:6]
        if not self.key:
            self.key = scan_key(self.cache_dir, self.scan_id)
        if not self.instance_id:
            self.instance_id = self.scan_id

    def contour_settings(self) -> tuple[float, float]:
        """(level, margin) in 2*Delta-llh that the contour steps use: the given level, else this event's
        calibrated 90% level, else contour.DEFAULT_CONTOUR_LEVEL."""
        return (float(self.contour_level) if self.contour_level is not None else
                round(self.calibration.level_for(0.9), 4) if self.calibration is not None else DEFAULT_CONTOUR_LEVEL,
                DEFAULT_CONTOUR_MARGIN if self.contour_margin is None else float(self.contour_margin))

    def contour_level_source(self) -> str:
        """Where the contour level comes from, for the log."""
        if self.contour_level is not None:
            return "given"
        return "the calibrated 90% level" if self.calibration is not None else "default level"


def event_calibration(source: str, reco_name: str, reco_options: Mapping[str, str], reco: Reco,
                      event: Event) -> EventCalibration | None:
    """This event's calibrated levels from ``source`` ("auto", "none" or a file), or None."""
    if source == "none":
        return None
    cal = shipped_calibration(reco_name) if source == "auto" else load_calibration(source)
    if cal is None:
        LOGGER.info("no calibration for reco %s: the headline regions are IceCube's 22.2/64.2 levels", reco_name)
        return None
    if not cal.applies_to(reco_name, reco_options):
        msg = (f"the calibration ({cal.reco}, options {cal.reco_options}) does not apply to reco {reco_name} "
               f"with options {dict(reco_options)}")
        if source != "auto":
            raise ConfigError(msg)
        LOGGER.warning("%s: no calibrated regions for this scan", msg)
        return None
    value = reco.calibration_feature(event)
    if value is None:
        return None
    ev_cal = cal.for_event(value)
    lo, hi = cal.domain
    LOGGER.info("calibration %s: %s = %g -> 2*Delta-llh levels %.2f (50%%), %.2f (90%%)%s", cal.version or "?",
                cal.feature, value, ev_cal.level_for(0.5), ev_cal.level_for(0.9),
                f" (outside the calibrated range {lo:g}-{hi:g}: the nearest edge is used)"
                if ev_cal.extrapolated else "")
    return ev_cal


class ScanRunner:
    """Runs one scan over one transport; reusable pieces for embedded and broker modes."""

    def __init__(self, spec: ScanSpec, transport: Transport,
                 on_manifest: Callable[[dict[str, Any]], None] | None = None,
                 on_partial_result: Callable[[ScanResult], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.transport = transport
        self.engine = ScanEngine(spec.steps, spec.n_posvar, spec.predictive_threshold, spec.max_attempts,
                                 None if spec.pointing is None else spec.pointing.first_pixels(spec.steps[0].nside),
                                 *spec.contour_settings())
        # batch ids start at a random point: replies to a crashed run of the same scan (same queues)
        # must not match this run's leases, or they would close leases of batches still being fitted
        self.protocol = ScanProtocol(self.engine, spec.lease_min_s, clock, secrets.randbelow(2**52), spec.batch_size,
                                     spec.max_pixel_reco_s)
        self.leases = self.protocol.leases
        self.stats = self.protocol.stats
        self.clock = clock
        self.on_manifest = on_manifest
        self.on_partial_result = on_partial_result
        # replies are taken once: a copy of a signed reply (a replay, a double delivery) is dropped
        self.verifier = Verifier(spec.key, "result", remember=200_000)
        self.drops = DropLog(LOGGER, "a reply")
        self._buffer: tuple[WorkItems, np.ndarray, np.ndarray] | None = None  # popped, directions computed
        self._buffer_pos = 0
        self._log: ResultLog | None = None
        self._t_start = clock()
        self._items_at_start = 0
        self._t_last_fit = self._t_start
        self._stop: ScanStopped | None = None
        self.running = False
        if spec.cache_dir is not None:
            self._log = ResultLog(Path(spec.cache_dir) / f"{spec.scan_id}.results.bin")

    # -- set-up ---------------------------------------------------------------------------
    def resume(self) -> int:
        """Replay a checkpoint of an earlier run of this scan; returns items restored."""
        if self._log is None:
            return 0
        n = 0
        # results of pixels a (contour) refinement adds only once earlier results are in wait for a later pass
        pending = list(self._log.replay())
        while pending:
            later = []
            for nside, pixels, posvars, fits, failed in pending:
                known = self.engine.expects(nside, pixels)
                if known.any():
                    self.engine.ingest(nside, pixels[known], posvars[known], fits[known], failed[known])
                    n += int(known.sum())
                if not known.all():
                    later.append((nside, pixels[~known], posvars[~known], fits[~known], failed[~known]))
            if sum(r[1].size for r in later) == sum(r[1].size for r in pending):
                break  # no pass makes these expected: not this scan's pixels
            pending = later
        for level, note in self.engine.take_notes():
            LOGGER.log(level, note)
        self._items_at_start = self.engine.counts.accepted
        if n:
            LOGGER.info("resumed from checkpoint %s: %d fits already collected", self._log.path, n)
        return n

    # -- stopping -------------------------------------------------------------------------
    def request_stop(self, reason: str, exit_code: int) -> None:
        """Stop the loop at its next turn (within ~0.2 s) with :class:`ScanStopped`; safe from a signal
        handler or another thread."""
        if self._stop is None:
            self._stop = ScanStopped(reason, exit_code)

    def announce_scan_over(self, reason: str) -> None:
        """Tell the workers the scan is over: a signed scan-over message on the work channel (a broker
        client that takes it puts it back for the next one and exits)."""
        msg = ScanOverMessage(self.spec.scan_id, self.spec.server_run, reason[:300])
        self.transport.send(seal(msg.to_dict(), "work", self.spec.key))

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> ScanResult:
        self.running = True
        try:
            return self._run()
        finally:
            self.running = False

    def _run(self) -> ScanResult:
        spec = self.spec
        equatorial_to_local(0.0, 0.0, spec.event.mjd)  # load astropy's tables now, not mid-scan
        t_progress = t_result = self._t_start = self.clock()
        t_last_reply = self._t_last_fit = self.clock()
        self._items_at_start = self.engine.counts.accepted
        LOGGER.info("scan %s: %s mode, reco %s (%d position variations), nsides %s, threshold %.2f",
                    spec.scan_id, self.transport.mode, spec.reco_name, spec.n_posvar,
                    progression_str(spec.steps), spec.predictive_threshold)
        if self.engine.has_contour_steps:
            LOGGER.info("refinement: contour mode for the NSIDE:c steps, 2*Delta-llh level %g + margin %g%s",
                        *spec.contour_settings(), f" ({spec.contour_level_source()})")
        else:
            LOGGER.info("refinement: classic mode (NSIDE:N pixels around the best fit)")
        while not self.engine.done:
            if self._stop is not None:
                raise self._stop
            self._fill()
            replies = self.transport.receive(timeout_s=0.2)
            if replies:
                t_last_reply = self.clock()
            for raw in replies:
                self._handle_reply(raw)
            for note in self.transport.maintain():
                LOGGER.warning(note)
            lost = self.transport.lost_workers()
            if lost:
                self._apply(self.protocol.workers_lost(lost))
            self._apply(self.protocol.expire())
            now = self.clock()
            if now - t_progress >= spec.progress_interval_s:
                t_progress = now
                self._report_progress()
            if now - t_result >= spec.result_interval_s and self.on_partial_result:
                t_result = now
                self.on_partial_result(self.result())
            buffered = 0 if self._buffer is None else len(self._buffer[0]) - self._buffer_pos
            if not self.engine.done and len(self.leases) == 0 and self.engine.n_queued_items == 0 and buffered <= 0:
                raise SkyScanError("internal: nothing in flight and nothing queued, but the scan is not done")
            if now - self._t_last_fit > spec.timeout_no_fit_s:
                raise SkyScanError(f"no fit succeeded for {spec.timeout_no_fit_s:.0f} s (SKYSCAN_TIMEOUT_NO_FIT_SEC): "
                                   "no workers, or every fit fails; partial results are kept")
            if now - t_last_reply > spec.timeout_from_clients_s:
                raise SkyScanError(f"no reply from any worker for {spec.timeout_from_clients_s:.0f} s "
                                   f"(SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS); partial results are kept")
        self._report_progress()
        if self.engine.best() is None:
            raise SkyScanError(f"every fit failed ({self.engine.counts.failed_items} fits given up on after "
                               f"{spec.max_attempts} attempts each): no direction; partial results are kept")
        LOGGER.info("scan %s done in %.1f s: best %s; %d duplicates, %d unknown, %d bad, %d foreign, "
                    "%d unsigned/forged/replayed, %d re-sent batches, %d failed fits", spec.scan_id,
                    self.clock() - self._t_start, describe_best(self.engine.best()), self.engine.counts.duplicates,
                    self.engine.counts.unknown, self.stats.bad_messages, self.stats.foreign_messages,
                    sum(self.stats.refused.values()), self.stats.resent_batches,
                    self.engine.counts.failed_items)
        return self.result()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()

    # -- work out -------------------------------------------------------------------------
    def _fill(self) -> None:
        limit = self.transport.max_in_flight_batches  # fixed while filling: it changes only on receive
        while len(self.leases) < limit:
            if self._buffer is None or self._buffer_pos >= len(self._buffer[0]):
                block = self.engine.pop_work(BLOCK_ITEMS)
                if block is None:
                    return
                self._buffer = (block, *self._local_directions(block))
                self._buffer_pos = 0
            block, zen, azi = self._buffer
            size = self.protocol.batch_size
            sl = slice(self._buffer_pos, self._buffer_pos + size)
            self._buffer_pos += size
            self._send(WorkItems(block.nside, block.pixels[sl], block.posvars[sl], block.seeds[sl]), zen[sl], azi[sl])

    def _local_directions(self, block: WorkItems) -> tuple[np.ndarray, np.ndarray]:
        pix, inverse = np.unique(block.pixels, return_inverse=True)
        ra, dec = pixel_radec(block.nside, pix)
        zen, azi = equatorial_to_local(ra, dec, self.spec.event.mjd)
        return zen[inverse], azi[inverse]

    def _send(self, items: WorkItems, zen: np.ndarray, azi: np.ndarray) -> None:
        batch_id = self.protocol.open_batch(items)
        msg = WorkMessage(self.spec.scan_id, batch_id, items.nside, items.pixels, items.posvars, zen, azi, items.seeds)
        self.transport.send(seal(msg.to_dict(), "work", self.spec.key))

    # -- results in -----------------------------------------------------------------------
    def _handle_reply(self, raw: Any) -> None:
        try:
            msg = accept_result(raw, self.spec.scan_id, self.verifier)
        except MessageError as e:
            kind = self.drops.drop(e)
            if kind == "foreign":
                self.stats.foreign_messages += 1
            elif kind == "bad":
                self.stats.bad_messages += 1
            else:
                self.stats.refused[kind] += 1
        else:
            if isinstance(msg, StartedMessage):
                self._apply(self.protocol.on_started(msg))
            else:
                self._apply(self.protocol.on_result(msg))

    def _apply(self, effects: Effects) -> None:
        """The I/O a protocol step asks for: checkpoint its rows, log its notes."""
        if any(not r.failed.all() for r in effects.rows):
            self._t_last_fit = self.clock()
        if self._log is not None:
            for r in effects.rows:
                self._log.append(r.nside, r.pixels, r.posvars, r.fits, r.failed)
        for level, text in effects.notes:
            LOGGER.log(level, text)
        for level, text in self.engine.take_notes():
            LOGGER.log(level, text)

    # -- reporting ------------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        elapsed = max(self.clock() - self._t_start, 1e-9)
        new_items = self.engine.counts.accepted - self._items_at_start
        rate = new_items / elapsed
        progress = self.engine.progress()
        remaining = remaining_items(progress, self.spec.steps, self.spec.n_posvar)  # the whole scan's
        best = self.engine.best()
        return {
            "scan_id": self.spec.scan_id,
            "mode": self.transport.mode,
            "scanner_version": __version__,
            "event": self.spec.event.name,
            "reco": self.spec.reco_name,
            "nsides": progression_str(self.spec.steps),
            "progress": progress,
            "rate_fits_per_s": rate,
            "eta_s": (remaining / rate) if rate > 0 else None,
            "elapsed_s": elapsed,
            "best": None if best is None else {"nside": best.nside, "pixel": best.pixel, "llh": best.llh},
            "failures": {"failed_fits": self.engine.counts.failed_items,
                         "failed_attempts": self.engine.counts.failed_attempts,
                         "resent_batches": self.stats.resent_batches,
                         "lost_deliveries": self.stats.lost_batches,
                         "expired_leases": self.stats.expired_batches + self.stats.retaken_batches,
                         "slow_fits": self.stats.slow_fits},
            "dropped": {"bad_messages": self.stats.bad_messages, "foreign_messages": self.stats.foreign_messages,
                        "unsigned_messages": self.stats.refused["unsigned"],
                        "forged_messages": self.stats.refused["forged"],
                        "replayed_messages": self.stats.refused["replayed"],
                        "unsolicited_fits": self.stats.unsolicited_fits,
                        "duplicates": self.engine.counts.duplicates, "unknown_pixels": self.engine.counts.unknown,
                        "work_messages_dropped_by_clients": sum(self.stats.client_dropped.values())},
            "per_client_fits": dict(self.stats.per_client),
            "complete": self.engine.done,
            "stopped": None if self._stop is None else self._stop.reason,
            "scan_instance": self.spec.instance_id,
            "updated_at_unix": time.time(),
            "server_host": socket.gethostname(),
        }

    def _report_progress(self) -> None:
        m = self.manifest()
        parts = []
        for p in m["progress"]:
            if p["started"]:
                parts.append(f"nside {p['nside']}: {p['pixels_done']}/{p['pixels_expected']} px")
        eta = "?" if m["eta_s"] is None else f"{m['eta_s']:.0f} s"
        LOGGER.info("progress: %s | %.0f fits/s | ETA %s | in flight %d batches", "; ".join(parts),
                    m["rate_fits_per_s"], eta, len(self.leases))
        if self.on_manifest:
            self.on_manifest(m)

    def result(self) -> ScanResult:
        ev = self.spec.event
        meta = EventMeta(ev.run_id, ev.event_id, ev.event_type, ev.mjd, ev.is_real_event)
        prov = scan_provenance(self.spec.reco_name, dict(self.spec.reco_options), progression_str(self.spec.steps),
                               ev.name, scan_id=self.spec.scan_id, online_fits=online_fit_radec(ev),
                               pointing=None if self.spec.pointing is None else self.spec.pointing.to_dict(),
                               calibration=None if self.spec.calibration is None else self.spec.calibration.to_dict())
        return ScanResult(meta, self.engine.results(), self.engine.completeness(), prov)


def write_manifest(output_dir: Path, manifest: dict[str, Any]) -> Path:
    return atomic_write_text(Path(output_dir) / "scan-manifest.json", json.dumps(manifest, indent=1, default=str))


def scan_event(event: Event, reco_name: str, *, nsides: str = DEFAULT_PROGRESSION, local_workers: int = 2,
               reco_options: Mapping[str, str] | None = None, predictive_threshold: float = 1.0,
               calibration: str = "auto", backend: str | None = "embedded", contour_level: float | None = None,
               contour_margin: float | None = None) -> ScanResult:
    """Run a whole scan of ``event``: embedded (this process plus ``local_workers`` workers) by default;
    ``backend=None`` takes the transport from the environment (a broker when one is configured).
    ``contour_level`` / ``contour_margin``: 2*Delta-llh of the contour steps (None: the defaults)."""
    from .checkpoint import new_instance_id
    from .config import EnvConfig
    from .transport.registry import TransportOptions, make_server_transport

    spec = ScanSpec(event, reco_name, dict(reco_options or {}), nsides, predictive_threshold,
                    calibration_source=calibration, contour_level=contour_level, contour_margin=contour_margin)
    spec.instance_id = new_instance_id(spec.scan_id)  # queues of its own, even beside a twin scan
    transport = make_server_transport(EnvConfig(), spec, TransportOptions(local_workers), backend=backend)
    transport.start()
    runner = ScanRunner(spec, transport)
    reason = "failed"
    try:
        result = runner.run()
        reason = "complete"
        return result
    finally:
        runner.close()
        try:
            runner.announce_scan_over(reason)
        finally:
            transport.close()

"""The server's protocol rules as state, without I/O (the clock is injected).

:class:`ScanProtocol` decides what a batch is (its id, its size, its lease), what an accepted reply
means (leases closed, results accepted, failed fits retried or given up on), and which overdue batches
go back to the queue. It returns :class:`Effects`: the rows the caller must append to its checkpoint
and the lines it should log. :class:`~skymap_scanner.scan.ScanRunner` keeps the loop and the I/O.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .collector import FIT_FIELDS
from .engine import ScanEngine, WorkItems
from .leases import LeaseBook
from .messages import ResultMessage, StartedMessage

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
TARGET_MESSAGE_S = 0.25  # adaptive batches aim at this much reco time per work message
MAX_BATCH = 1024


@dataclass
class ScanStats:
    bad_messages: int = 0
    foreign_messages: int = 0
    stale_replies: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # unsigned / forged / replayed messages
    unsolicited_fits: int = 0  # fits in replies for items not sent out or no longer outstanding
    resent_batches: int = 0
    lost_batches: int = 0  # never taken by a worker: re-sent without costing an attempt
    expired_batches: int = 0  # taken, then no reply within their lease: an attempt each
    retaken_batches: int = 0  # taken again after a start (a redelivery): an attempt each
    stale_starts: int = 0  # "started" signals for batches no longer leased
    slow_fits: int = 0  # fits that took longer than max_pixel_reco_s: failures
    per_client: Counter[str] = field(default_factory=Counter)
    #: work messages each worker says it dropped (its latest "started" signal's count)
    client_dropped: dict[str, int] = field(default_factory=dict)
    reco_time_s: float = 0.0
    reco_items: int = 0


@dataclass(frozen=True)
class Rows:
    """Results for the checkpoint: (n,) pixels and posvars, (n, 7) fits, (n,) failed flags."""

    nside: int
    pixels: IntArray
    posvars: IntArray
    fits: FloatArray
    failed: npt.NDArray[np.bool_]


@dataclass
class Effects:
    """What the caller must do after a protocol step: checkpoint ``rows``, log ``notes`` (level, text)."""

    rows: list[Rows] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    def note(self, level: int, text: str) -> None:
        self.notes.append((level, text))


class ScanProtocol:
    """Batches out, replies in, overdue batches back; the engine holds the scan's results."""

    def __init__(self, engine: ScanEngine, lease_min_s: float, clock: Callable[[], float], first_batch_id: int,
                 batch_size: int = 0, max_pixel_reco_s: float = 1800.0) -> None:
        self.engine = engine
        self.max_pixel_reco_s = max_pixel_reco_s
        self.leases = LeaseBook(lease_min_s, clock, max_pixel_reco_s)
        self.stats = ScanStats()
        self.fixed_batch_size = batch_size
        self.batch_size = batch_size or 8  # 0: adapted to the reco's speed as replies come in
        self._batch_id = first_batch_id

    @property
    def last_batch_id(self) -> int:
        return self._batch_id

    # -- out ---------------------------------------------------------------------------------------
    def open_batch(self, items: WorkItems) -> int:
        """A new batch id for ``items``, with its lease running from now."""
        self._batch_id += 1
        self.leases.add(self._batch_id, items.nside, items.pixels, items.posvars)
        return self._batch_id

    def expire(self) -> Effects:
        """Overdue batches. One never taken by a worker was lost on the way: re-sent, no attempt counted.
        One taken and not answered within its lease: its fits count as failed attempts (retried, or
        given up on). Workers that never signal a start (the single-message mode, e.g. under the EWMS
        pilot) cannot tell the two apart: there every overdue batch costs an attempt, as before."""
        fx = Effects()
        for lease in self.leases.overdue():
            self.stats.resent_batches += 1
            what = f"batch {lease.batch_id} (nside {lease.nside}, {lease.pixels.size} fits)"
            if lease.started_at is None and not self.leases.unsignalled_replies:
                self.stats.lost_batches += 1
                fx.note(logging.WARNING, f"{what} was never taken by a worker: a lost delivery; re-sending "
                                         "its fits (no attempt counted)")
                self.engine.requeue(lease.nside, lease.pixels, lease.posvars)
            else:
                self.stats.expired_batches += 1
                if lease.started_at is None:
                    why = "got no reply in time"
                else:
                    lease_s = self.leases.lease_s(lease)
                    why = f"taken by {lease.started_by[:60]}, got no reply within its lease ({lease_s:.0f} s)"
                fx.note(logging.WARNING, f"{what} {why}; its fits count as failed attempts")
                self._failed(lease.nside, lease.pixels, lease.posvars, fx)
        return fx

    def workers_lost(self, workers: set[str]) -> Effects:
        """These workers died: the batches they were fitting count as failed attempts, retried now."""
        fx = Effects()
        for lease in self.leases.started_by(workers):
            self.stats.resent_batches += 1
            self.stats.expired_batches += 1
            fx.note(logging.WARNING, f"batch {lease.batch_id} died with its worker {lease.started_by[:60]}; "
                                     "its fits count as failed attempts")
            self._failed(lease.nside, lease.pixels, lease.posvars, fx)
        return fx

    def on_started(self, msg: StartedMessage) -> Effects:
        """A worker took a batch: its lease runs from now. Taken a second time (the broker redelivered
        it: the worker before died or lost its connection mid-fit), it costs its fits an attempt, without
        a re-send (the redelivery is the retry)."""
        fx = Effects()
        if msg.dropped > self.stats.client_dropped.get(msg.client, 0):
            fx.note(logging.WARNING, f"worker {msg.client[:60]} dropped {msg.dropped} undecodable or refused "
                                     "work message(s) so far (counted in the manifest)")
            self.stats.client_dropped[msg.client] = msg.dropped
        lease = self.leases.start(msg.batch_id, msg.client)
        if lease is None:
            self.stats.stale_starts += 1
            return fx
        if lease.starts > 1:
            self.stats.retaken_batches += 1
            fx.note(logging.WARNING, f"batch {lease.batch_id} was taken again (by {msg.client[:60]}): the "
                                     "worker before did not finish it; its fits count as failed attempts")
            self._failed(lease.nside, lease.pixels, lease.posvars, fx, requeue=False)
        return fx

    # -- in ----------------------------------------------------------------------------------------
    def on_result(self, msg: ResultMessage) -> Effects:
        """An accepted reply of this scan (see :mod:`skymap_scanner.intake`)."""
        fx = Effects()
        # only fits for items sent out and still outstanding are taken (whichever batch they came back in)
        asked = self.leases.outstanding(msg.nside, msg.pixels, msg.posvars)
        if self.leases.done(msg.batch_id) is None:
            self.stats.stale_replies += 1  # a re-sent batch answered twice, or from a previous run
        self.stats.per_client[msg.client] += int(asked.sum())  # fits it was asked for (then accepted or duplicate)
        rt = msg.reco_runtime_s[np.isfinite(msg.reco_runtime_s) & (msg.reco_runtime_s >= 0)]
        self.stats.reco_time_s += float(rt.sum())
        self.stats.reco_items += int(rt.size)
        self._adapt_batch_size()
        if not asked.all():
            self.stats.unsolicited_fits += int((~asked).sum())
            fx.note(logging.DEBUG, f"reply batch {msg.batch_id} from {msg.client[:60]} held "
                                     f"{int((~asked).sum())} fits not outstanding; ignored")
        errors = list(msg.errors)
        slow = np.asarray(msg.reco_runtime_s > self.max_pixel_reco_s, bool).reshape(-1)
        for i in np.flatnonzero(slow & asked).tolist():  # a fit beyond the bound is a failure of that item
            if errors[i] is None:
                self.stats.slow_fits += 1
                errors[i] = (f"the fit took {msg.reco_runtime_s[i]:.0f} s, more than SKYSCAN_MAX_PIXEL_RECO_TIME "
                             f"({self.max_pixel_reco_s:g} s)")
        err = np.array([e is not None for e in errors], bool).reshape(-1)
        ok_asked, err_asked = ~err & asked, err & asked
        if ok_asked.any():
            ok = ok_asked
            pixels, posvars, fits = msg.pixels[ok], msg.posvars[ok], msg.fits[ok]
            counts = self.engine.ingest(msg.nside, pixels, posvars, fits)
            if counts.accepted:
                new = counts.accepted_index
                fx.rows.append(Rows(msg.nside, pixels[new], posvars[new], fits[new], np.zeros(new.size, bool)))
            if counts.unknown:
                fx.note(logging.WARNING, f"reply batch {msg.batch_id} from {msg.client} held {counts.unknown} "
                                         "fits this scan never asked for")
        if err_asked.any():
            first = next(e for e, bad in zip(errors, err_asked.tolist(), strict=True) if bad)
            fx.note(logging.WARNING, f"reco failed on {int(err_asked.sum())} fits of batch {msg.batch_id} "
                                     f"(from {msg.client}): {first}")
            self._failed(msg.nside, msg.pixels[err_asked], msg.posvars[err_asked], fx)
        return fx

    def _failed(self, nside: int, pixels: IntArray, posvars: IntArray, fx: Effects, requeue: bool = True) -> None:
        gp, gv = self.engine.report_failure(nside, pixels, posvars, requeue)
        if gp.size:
            fx.note(logging.ERROR, f"gave up on {gp.size} fits at nside {nside} after "
                                   f"{self.engine.max_attempts} attempts; recorded as failed (NaN)")
            fx.rows.append(Rows(nside, gp, gv, np.full((gp.size, len(FIT_FIELDS)), np.nan), np.ones(gp.size, bool)))

    def _adapt_batch_size(self) -> None:
        if self.fixed_batch_size or self.stats.reco_items < 8:
            return
        mean = self.stats.reco_time_s / self.stats.reco_items
        # aim at ~0.25 s of work per message: amortises message overhead, keeps load balanced
        self.batch_size = int(min(MAX_BATCH, max(1, round(TARGET_MESSAGE_S / max(mean, 1e-6)))))

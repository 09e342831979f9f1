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
from .messages import ResultMessage

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
    per_client: Counter[str] = field(default_factory=Counter)
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
                 batch_size: int = 0) -> None:
        self.engine = engine
        self.leases = LeaseBook(lease_min_s, clock)
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
        """Overdue batches: their fits count as failed attempts (retried, or given up on)."""
        fx = Effects()
        for lease in self.leases.overdue():
            self.stats.resent_batches += 1
            fx.note(logging.WARNING, f"batch {lease.batch_id} (nside {lease.nside}, {lease.pixels.size} fits) "
                                     "got no reply in time; re-sending its fits")
            self._failed(lease.nside, lease.pixels, lease.posvars, fx)
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
        err = np.array([e is not None for e in msg.errors], bool).reshape(-1)
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
            first = next(e for e, bad in zip(msg.errors, err_asked.tolist(), strict=True) if bad)
            fx.note(logging.WARNING, f"reco failed on {int(err_asked.sum())} fits of batch {msg.batch_id} "
                                     f"(from {msg.client}): {first}")
            self._failed(msg.nside, msg.pixels[err_asked], msg.posvars[err_asked], fx)
        return fx

    def _failed(self, nside: int, pixels: IntArray, posvars: IntArray, fx: Effects) -> None:
        gp, gv = self.engine.report_failure(nside, pixels, posvars)
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

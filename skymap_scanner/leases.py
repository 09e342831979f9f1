"""Leases on sent work and attempts on failed work: the scan protocol's state. No I/O.

A lease runs from when a worker *takes* its batch (the worker's "started" signal), not from when the
batch was sent: waiting in the queue behind other work is not a failure.

* A started batch is overdue when no reply came within ``lease_min_s + n_items * t_fit`` of its start:
  the worker died, hung, or is too slow; that costs its items an attempt. ``t_fit`` is
  :data:`FIT_TIME_FACTOR` times the slowest per-fit time of the last :data:`FIT_TIMES_KEPT` answered
  batches (start to reply, per item), capped at ``max_pixel_reco_s`` (SKYSCAN_MAX_PIXEL_RECO_TIME, the
  longest one fit may take); before any started batch was answered it is that cap. So a batch whose
  worker was killed is re-sent after a few fit times, not after n x 30 min, while a worker that is
  merely slower than the others rarely loses its batch.
* A batch never started is a *lost delivery* when (a) a batch sent after it was started more than
  ``lease_min_s`` ago (queues hand work out in order: it was overtaken), or (b) no batch of this scan
  has been in a worker's hands for ``lease_min_s`` plus three times the time the work queued before it
  should take at the observed throughput, times a back-off. It is re-sent without costing an attempt.
  Rule (b) needs a worker seen at work since its last firing: with no worker at all (clients not yet
  started, all of them restarting) re-sending only piles copies into the queue. And a batch it called
  lost that turns up after all (started or answered: the workers were away, not the message) doubles
  the back-off (up to :data:`LOST_BACKOFF_MAX`), so workers that take long to come back cause one
  round of re-sends, not one per absence.

Workers that never signal a start (the single-message mode under the EWMS pilot) are recognised by
their replies to batches never started; the protocol then charges every overdue batch an attempt, as
it cannot tell a lost delivery from a failed fit. The clock is injected so tests can drive time. A (pixel, posvar) whose fit failed is retried until it
has failed ``max_attempts`` times, then given up on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FIT_TIME_FACTOR = 4.0  # a started batch's lease allows this many times the slowest recent per-fit time
FIT_TIMES_KEPT = 50  # answered batches whose per-fit time is remembered
LOST_BACKOFF_MAX = 64.0  # the most rule (b)'s idle time is stretched by batches called lost that turned up
LOST_IDS_KEPT = 10_000  # batches called lost whose turning up is still recognised


@dataclass
class Lease:
    batch_id: int
    nside: int
    pixels: npt.NDArray[np.int64]
    posvars: npt.NDArray[np.int64]
    sent_at: float
    items_ahead: int  # items in flight when this batch was sent
    seq: int = 0  # order of sending
    started_at: float | None = None  # when a worker took it (its latest "started" signal)
    started_by: str = ""  # the worker that took it
    starts: int = 0  # "started" signals: more than one means it was taken again (a redelivery)
    overtaken_at: float | None = None  # not started, and a batch sent after it was: since when

    def deadline_s(self, lease_min_s: float, fit_s: float) -> float:
        """Seconds after its start by which a started batch must be answered, ``fit_s`` per fit."""
        return lease_min_s + int(self.pixels.size) * fit_s


class LeaseBook:
    """In-flight batches, their deadlines, and the observed throughput."""

    def __init__(self, lease_min_s: float, clock: Callable[[], float], max_pixel_reco_s: float = 1800.0) -> None:
        self.lease_min_s = lease_min_s
        self.max_pixel_reco_s = max_pixel_reco_s
        self.clock = clock
        self._seq = 0
        self._t_busy: float | None = None  # last time a batch of this scan was known to be in a worker's hands
        #: replies to batches no worker said it had taken: workers that do not signal (the single-message mode)
        self.unsignalled_replies = 0
        self._leases: dict[int, Lease] = {}
        self._sent: dict[tuple[int, int, int], int] = {}  # (nside, pixel, posvar) -> leases holding it
        self.items_in_flight = 0
        self._rate_items_per_s = 0.0
        self._t_last: float | None = None
        self._fit_s: deque[float] = deque(maxlen=FIT_TIMES_KEPT)  # per-fit time of answered started batches
        self._t_seen: float | None = None  # last start or reply of any batch: a worker at work
        self._lost_fired_at: float | None = None  # last time rule (b) called batches lost
        self._lost: dict[int, float] = {}  # batch id called lost by rule (b) -> the back-off then in force
        #: factor on rule (b)'s idle time, doubled by each batch called lost that turned up after all
        self.lost_backoff = 1.0
        #: batches called lost that were started or answered later (false alarms of rule (b))
        self.lost_turned_up = 0

    @property
    def fit_s(self) -> float:
        """The time per fit a started batch is allowed (see the module docstring)."""
        if not self._fit_s:
            return self.max_pixel_reco_s
        return min(self.max_pixel_reco_s, FIT_TIME_FACTOR * max(self._fit_s))

    def lease_s(self, lease: Lease) -> float:
        """Seconds after its start by which started batch ``lease`` must be answered."""
        return lease.deadline_s(self.lease_min_s, self.fit_s)

    def __len__(self) -> int:
        return len(self._leases)

    def add(self, batch_id: int, nside: int, pixels: npt.NDArray[np.int64], posvars: npt.NDArray[np.int64]) -> None:
        self._seq += 1
        self._leases[batch_id] = Lease(batch_id, nside, pixels, posvars, self.clock(), self.items_in_flight,
                                       self._seq)
        self.items_in_flight += int(pixels.size)
        for key in _keys(nside, pixels, posvars):
            self._sent[key] = self._sent.get(key, 0) + 1

    def _release(self, lease: Lease) -> None:
        self.items_in_flight -= int(lease.pixels.size)
        for key in _keys(lease.nside, lease.pixels, lease.posvars):
            n = self._sent.pop(key) - 1
            if n:
                self._sent[key] = n

    def outstanding(self, nside: int, pixels: npt.NDArray[np.int64], posvars: npt.NDArray[np.int64]
                    ) -> npt.NDArray[np.bool_]:
        """Which of these items are in a batch sent out and not yet answered (or given up on)."""
        return np.array([key in self._sent for key in _keys(nside, pixels, posvars)], bool).reshape(-1)

    def start(self, batch_id: int, worker: str) -> Lease | None:
        """A worker took ``batch_id``: its lease runs from now. Returns it (None if unknown or done)."""
        now = self._t_seen = self._t_busy = self.clock()  # a batch of this scan in a worker's hands
        self._turned_up(batch_id)
        lease = self._leases.get(batch_id)
        if lease is None:
            return None
        lease.started_at, lease.started_by, lease.starts = now, worker, lease.starts + 1
        lease.overtaken_at = None
        for other in self._leases.values():
            if other.started_at is None and other.seq < lease.seq and other.overtaken_at is None:
                other.overtaken_at = now
        return lease

    def started_by(self, workers: set[str]) -> list[Lease]:
        """Remove and return the started leases held by these workers (known to have died)."""
        out = [lease for lease in self._leases.values() if lease.started_at is not None and lease.started_by in workers]
        for lease in out:
            del self._leases[lease.batch_id]
            self._release(lease)
        return out

    def done(self, batch_id: int) -> Lease | None:
        """A reply for ``batch_id`` came in; returns its lease (None if unknown or already done)."""
        self._t_seen = self.clock()
        self._turned_up(batch_id)
        lease = self._leases.pop(batch_id, None)
        if lease is None:
            return None
        self._release(lease)
        now = self.clock()
        if lease.started_at is not None:
            self._t_busy = now
            if lease.pixels.size:
                self._fit_s.append(max(0.0, now - lease.started_at) / int(lease.pixels.size))
        else:
            self.unsignalled_replies += 1
        if self._t_last is not None and now > self._t_last:
            inst = lease.pixels.size / (now - self._t_last)
            self._rate_items_per_s = inst if self._rate_items_per_s == 0 else 0.9 * self._rate_items_per_s + 0.1 * inst
        self._t_last = now
        return lease

    def overdue(self) -> list[Lease]:
        """Remove and return the leases past their deadline: started ones not answered in time
        (``started_at`` set) and lost deliveries (``started_at`` None); see the module docstring."""
        now = self.clock()
        if any(lease.started_at is not None for lease in self._leases.values()):
            self._t_busy = now
        # rule (b) waits for a worker seen at work since it last fired; workers that never signal a start
        # (their overdue batches cost an attempt) keep the plain rule, so a batch that crashes them is given up
        idle_rule = self.unsignalled_replies > 0 or (
            self._t_seen is not None and (self._lost_fired_at is None or self._t_seen > self._lost_fired_at))
        out = []
        for lease in list(self._leases.values()):
            if lease.started_at is not None:
                late = now - lease.started_at > self.lease_s(lease)
            elif lease.overtaken_at is not None and now - lease.overtaken_at > self.lease_min_s:
                late = True
            elif idle_rule:
                expected = 0.0
                if self._rate_items_per_s > 0:
                    expected = (lease.items_ahead + lease.pixels.size) / self._rate_items_per_s
                since = lease.sent_at if self._t_busy is None else max(lease.sent_at, self._t_busy)
                late = now - since > (self.lease_min_s + 3.0 * expected) * self.lost_backoff
                if late:
                    self._lost_fired_at = now
                    self._lost[lease.batch_id] = self.lost_backoff
                    while len(self._lost) > LOST_IDS_KEPT:
                        del self._lost[next(iter(self._lost))]
            else:
                late = False
            if late:
                out.append(lease)
                del self._leases[lease.batch_id]
                self._release(lease)
        return out

    def _turned_up(self, batch_id: int) -> None:
        """A batch rule (b) called lost was started or answered after all: stretch rule (b)."""
        backoff_then = self._lost.pop(batch_id, None)
        if backoff_then is not None:
            self.lost_turned_up += 1
            self.lost_backoff = min(LOST_BACKOFF_MAX, max(self.lost_backoff, 2.0 * backoff_then))


class Attempts:
    """Failed attempts per (nside, pixel, posvar): retry, or give up after ``max_attempts``."""

    def __init__(self, max_attempts: int) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = max_attempts
        self._failures: dict[tuple[int, int, int], int] = {}

    def __len__(self) -> int:
        """Items that failed and are still being retried."""
        return len(self._failures)

    def failed(self, nside: int, pixels: npt.NDArray[np.int64], posvars: npt.NDArray[np.int64]
               ) -> tuple[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]],
                          tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
        """These items failed once more: ((pixels, posvars) to retry, (pixels, posvars) to give up on)."""
        retry: list[tuple[int, int]] = []
        give_up: list[tuple[int, int]] = []
        for p, v in zip(np.asarray(pixels).tolist(), np.asarray(posvars).tolist(), strict=True):
            key = (nside, p, v)
            n = self._failures.get(key, 0) + 1
            if n >= self.max_attempts:
                self._failures.pop(key, None)
                give_up.append((p, v))
            else:
                self._failures[key] = n
                retry.append((p, v))
        return _columns(retry), _columns(give_up)


def _keys(nside: int, pixels: npt.NDArray[np.int64], posvars: npt.NDArray[np.int64]) -> list[tuple[int, int, int]]:
    return [(nside, p, v) for p, v in zip(np.asarray(pixels).tolist(), np.asarray(posvars).tolist(), strict=True)]


def _columns(pairs: list[tuple[int, int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    arr = np.array(pairs, np.int64).reshape(-1, 2)
    return arr[:, 0].copy(), arr[:, 1].copy()

"""Leases on sent work and attempts on failed work: the scan protocol's state. No I/O.

A batch is overdue when no reply came within ``lease_min_s`` plus three times the
time the work queued before it should take at the observed throughput. The
clock is injected so tests can drive time. A (pixel, posvar) whose fit failed is
retried until it has failed ``max_attempts`` times, then given up on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass
class Lease:
    batch_id: int
    nside: int
    pixels: npt.NDArray[np.int64]
    posvars: npt.NDArray[np.int64]
    sent_at: float
    items_ahead: int  # items in flight when this batch was sent


class LeaseBook:
    """In-flight batches, their deadlines, and the observed throughput."""

    def __init__(self, lease_min_s: float, clock: Callable[[], float]) -> None:
        self.lease_min_s = lease_min_s
        self.clock = clock
        self._leases: dict[int, Lease] = {}
        self._sent: dict[tuple[int, int, int], int] = {}  # (nside, pixel, posvar) -> leases holding it
        self.items_in_flight = 0
        self._rate_items_per_s = 0.0
        self._t_last: float | None = None

    def __len__(self) -> int:
        return len(self._leases)

    def add(self, batch_id: int, nside: int, pixels: npt.NDArray[np.int64], posvars: npt.NDArray[np.int64]) -> None:
        self._leases[batch_id] = Lease(batch_id, nside, pixels, posvars, self.clock(), self.items_in_flight)
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

    def done(self, batch_id: int) -> Lease | None:
        """A reply for ``batch_id`` came in; returns its lease (None if unknown or already done)."""
        lease = self._leases.pop(batch_id, None)
        if lease is None:
            return None
        self._release(lease)
        now = self.clock()
        if self._t_last is not None and now > self._t_last:
            inst = lease.pixels.size / (now - self._t_last)
            self._rate_items_per_s = inst if self._rate_items_per_s == 0 else 0.9 * self._rate_items_per_s + 0.1 * inst
        self._t_last = now
        return lease

    def overdue(self) -> list[Lease]:
        """Remove and return the leases past their deadline."""
        now = self.clock()
        out = []
        for lease in list(self._leases.values()):
            expected = 0.0
            if self._rate_items_per_s > 0:
                expected = (lease.items_ahead + lease.pixels.size) / self._rate_items_per_s
            if now - lease.sent_at > self.lease_min_s + 3.0 * expected:
                out.append(lease)
                del self._leases[lease.batch_id]
                self._release(lease)
        return out


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

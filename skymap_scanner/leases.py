"""Leases on sent work: which batches are overdue and must be re-sent. No I/O.

A batch is overdue when no reply came within ``lease_min_s`` plus three times the
time the work queued before it should take at the observed throughput. The
clock is injected so tests can drive time.
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
        self.items_in_flight = 0
        self._rate_items_per_s = 0.0
        self._t_last: float | None = None

    def __len__(self) -> int:
        return len(self._leases)

    def add(self, batch_id: int, nside: int, pixels: npt.NDArray[np.int64], posvars: npt.NDArray[np.int64]) -> None:
        self._leases[batch_id] = Lease(batch_id, nside, pixels, posvars, self.clock(), self.items_in_flight)
        self.items_in_flight += int(pixels.size)

    def done(self, batch_id: int) -> Lease | None:
        """A reply for ``batch_id`` came in; returns its lease (None if unknown or already done)."""
        lease = self._leases.pop(batch_id, None)
        if lease is None:
            return None
        self.items_in_flight -= int(lease.pixels.size)
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
                self.items_in_flight -= int(lease.pixels.size)
        return out

"""The fit loop shared by embedded worker processes and broker clients.

A :class:`PixelWorker` holds the reco and the event prepared once; it turns one
:class:`WorkMessage` into one :class:`ResultMessage`. A reco exception on one
item is reported in that item's ``error`` (one line) and never stops the worker.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Mapping

from .events.model import Event
from .messages import ResultMessage, WorkMessage
from .recos import FitResult, Vertex, make_reco

LOGGER = logging.getLogger(__name__)


class PixelWorker:
    """Fits work messages for one scan's event and reco."""

    def __init__(self, event: Event, reco_name: str, reco_options: Mapping[str, str] | None = None,
                 client_name: str | None = None) -> None:
        self.reco = make_reco(reco_name, reco_options)
        t0 = time.monotonic()
        self.prepared = self.reco.prepare(event)
        LOGGER.debug("prepared event %s for reco %s in %.3f s", event.name, reco_name, time.monotonic() - t0)
        self.client_name = client_name or socket.gethostname()

    def handle(self, work: WorkMessage) -> ResultMessage:
        fits: list[tuple[float, ...]] = []
        errors: list[str | None] = []
        runtimes: list[float] = []
        for zen, azi, posvar, seed in zip(work.zenith_rad, work.azimuth_rad, work.posvars, work.seeds):
            t0 = time.perf_counter()
            vertex = Vertex(*seed) if all(math.isfinite(s) for s in seed) else None
            try:
                fit: FitResult = self.reco.fit(self.prepared, zen, azi, posvar, vertex)
                fits.append((fit.llh, fit.E_in, fit.E_tot, fit.X, fit.Y, fit.Z, fit.T))
                errors.append(None)
            except Exception as e:  # a reco failure is data, not a worker crash
                fits.append((math.nan,) * 7)
                errors.append(f"{type(e).__name__}: {e}".splitlines()[0][:300])
            runtimes.append(time.perf_counter() - t0)
        return ResultMessage(work.scan_id, work.batch_id, work.nside, work.pixels, work.posvars,
                             tuple(fits), tuple(errors), tuple(runtimes), self.client_name)

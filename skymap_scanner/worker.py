"""The fit loop shared by embedded worker processes and broker clients.

A :class:`PixelWorker` holds the reco and the event prepared once; it turns one
:class:`WorkMessage` into one :class:`ResultMessage`. A reco exception on one
item is reported in that item's ``error`` (one line) and never stops the worker.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping

import numpy as np

from .events.model import Event
from .messages import ResultMessage, WorkMessage
from .recos import Vertex, fit_batch_arrays, make_reco

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
        if self.reco.batched:  # the reco fits the whole message at once (e.g. an external process)
            fits_b, errors_b, runtimes_b = fit_batch_arrays(self.reco, self.prepared, work.nside, work.pixels,
                                                            work.posvars, work.zenith_rad, work.azimuth_rad, work.seeds)
            return ResultMessage(work.scan_id, work.batch_id, work.nside, work.pixels, work.posvars,
                                 fits_b, errors_b, runtimes_b, self.client_name)
        n = len(work)
        fits = np.full((n, 7), np.nan)
        errors: list[str | None] = [None] * n
        runtimes = np.zeros(n)
        seed_ok = np.asarray(np.isfinite(work.seeds).all(axis=1), dtype=bool).tolist()
        seeds: list[list[float]] = work.seeds.tolist()
        for i, (zen, azi, posvar) in enumerate(zip(work.zenith_rad.tolist(), work.azimuth_rad.tolist(),
                                                    work.posvars.tolist(), strict=True)):
            t0 = time.perf_counter()
            try:
                fit = self.reco.fit(self.prepared, zen, azi, posvar, Vertex(*seeds[i]) if seed_ok[i] else None)
                fits[i] = (fit.llh, fit.E_in, fit.E_tot, fit.X, fit.Y, fit.Z, fit.T)
            except Exception as e:  # a reco failure is data, not a worker crash
                errors[i] = (f"{type(e).__name__}: {e}".splitlines() or ["error"])[0][:300]
            runtimes[i] = time.perf_counter() - t0
        return ResultMessage(work.scan_id, work.batch_id, work.nside, work.pixels, work.posvars,
                             fits, tuple(errors), runtimes, self.client_name)

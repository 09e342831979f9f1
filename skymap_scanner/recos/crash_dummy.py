"""``crash_dummy``: the ``dummy`` landscape, but some fits fail (for fault tests).

A fit fails when a deterministic hash of (direction, posvar) falls below
``crash_probability``: such a (pixel, posvar) fails on every attempt (a poison
pixel). With ``flaky=true`` the draw is random per attempt instead. With
``crash_mode=exit`` the process dies (``os._exit(1)``) instead of raising.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

from .base import FitResult, Vertex
from .dummy import DummyReco


class RecoCrash(RuntimeError):
    """The deliberate failure of ``crash_dummy``."""


class CrashDummyReco(DummyReco):
    name = "crash_dummy"
    OPTIONS = {
        **DummyReco.OPTIONS,
        "crash_probability": (float, 0.1, "fraction of (pixel, posvar) fits that fail"),
        "flaky": (bool, False, "draw the failure at random per attempt instead of per (pixel, posvar)"),
        "crash_mode": (str, "raise", "'raise' an exception or 'exit' the process"),
    }

    def _fails(self, zenith_rad: float, azimuth_rad: float, posvar: int) -> bool:
        p = float(self.options["crash_probability"])
        if self.options["flaky"]:
            return random.random() < p
        digest = hashlib.sha256(f"{zenith_rad:.12f}:{azimuth_rad:.12f}:{posvar}".encode()).digest()
        return int.from_bytes(digest[:8], "little") / 2**64 < p

    def fit(
        self, prepared: Any, zenith_rad: float, azimuth_rad: float, posvar: int, seed: Vertex | None
    ) -> FitResult:
        if self._fails(zenith_rad, azimuth_rad, posvar):
            if self.options["crash_mode"] == "exit":
                os._exit(1)
            raise RecoCrash(f"crash_dummy: deliberate failure at zenith={zenith_rad:.4f} posvar={posvar}")
        return super().fit(prepared, zenith_rad, azimuth_rad, posvar, seed)


RECO = CrashDummyReco

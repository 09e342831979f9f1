"""Collects fit results per nside, by pixel; pure logic, no I/O.

Memory is O(pixels): one slot per expected pixel holding the best fit over its
position variations (7 float64) and a bit mask of the posvars received (uint64):
64 bytes per pixel, plus 8 bytes for the pixel index of a sparse (refined) nside.
A full-sky nside uses dense slots (slot = pixel index).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FIT_FIELDS = ("llh", "E_in", "E_tot", "X", "Y", "Z", "T")
RESULT_DTYPE = np.dtype([("index", "<i8")] + [(f, "<f8") for f in FIT_FIELDS])
MAX_POSVAR = 64

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class IngestCounts:
    """What happened to a batch of results offered to a collector."""

    accepted: int = 0
    duplicates: int = 0
    unknown: int = 0  # (pixel, posvar) this scan never asked for
    #: positions (in the arrays offered) of the results accepted, in order
    accepted_index: IntArray = field(default_factory=lambda: np.empty(0, np.int64), compare=False, repr=False)


class NsideStore:
    """Results of one nside: expected pixels, received posvars, best fit per pixel."""

    def __init__(self, nside: int, n_posvar: int, full_sky: bool) -> None:
        if not 1 <= n_posvar <= MAX_POSVAR:
            raise ValueError(f"n_posvar must be in 1..{MAX_POSVAR}")
        self.nside = nside
        self.n_posvar = n_posvar
        self.full_sky = full_sky
        self._all_mask = np.uint64((1 << n_posvar) - 1)
        n = 12 * nside * nside if full_sky else 0
        self._pixels: IntArray = np.empty(0, np.int64)  # sparse nside: expected pixels, sorted (unused if full sky)
        self._fits = np.full((n, len(FIT_FIELDS)), np.nan)
        self._received = np.zeros(n, dtype=np.uint64)
        self.n_pixels_done = 0
        self.n_items_received = 0
        self.n_failed_items = 0
        self.best_llh = np.inf
        self.best_pixel = -1

    # -- expected pixels ---------------------------------------------------------------
    @property
    def n_expected(self) -> int:
        return int(self._received.size)

    def expected_pixels(self) -> IntArray:
        return np.arange(self.n_expected, dtype=np.int64) if self.full_sky else self._pixels

    def add_expected(self, pixels: npt.ArrayLike) -> IntArray:
        """Add pixels to scan; returns those that were not expected before (sorted)."""
        px = np.unique(np.asarray(pixels, dtype=np.int64))
        if self.full_sky:
            return np.empty(0, np.int64)  # a full-sky store expects every pixel already
        new = np.setdiff1d(px, self._pixels, assume_unique=True)
        if new.size:
            merged = np.concatenate([self._pixels, new])
            order = np.argsort(merged, kind="stable")
            self._pixels = merged[order]
            self._fits = np.concatenate([self._fits, np.full((new.size, len(FIT_FIELDS)), np.nan)])[order]
            self._received = np.concatenate([self._received, np.zeros(new.size, np.uint64)])[order]
        return new

    def slots(self, pixels: npt.ArrayLike) -> IntArray:
        """Slot of each pixel, -1 where the pixel is not expected."""
        px = np.asarray(pixels, dtype=np.int64)
        if self.full_sky:
            return np.where((px >= 0) & (px < self.n_expected), px, -1)
        pos = np.searchsorted(self._pixels, px)
        pos_c = np.minimum(pos, max(self._pixels.size - 1, 0))
        found = (self._pixels[pos_c] == px) if self._pixels.size else np.zeros(px.shape, bool)
        return np.where(found, pos_c, -1)

    # -- results -----------------------------------------------------------------------
    def ingest(self, pixels: npt.ArrayLike, posvars: npt.ArrayLike, fits: npt.ArrayLike,
               failed: npt.ArrayLike | None = None) -> IngestCounts:
        """Record results: ``fits`` has shape (n, 7) in :data:`FIT_FIELDS` order.

        ``failed`` marks (pixel, posvar) given up on (NaN fits). Duplicates of an
        already-recorded (pixel, posvar) and pixels never expected are counted, not stored.
        """
        px = np.asarray(pixels, dtype=np.int64)
        pv = np.asarray(posvars, dtype=np.int64)
        f = np.asarray(fits, dtype=np.float64).reshape(px.size, len(FIT_FIELDS))
        fl = np.zeros(px.size, bool) if failed is None else np.asarray(failed, dtype=bool)
        counts = IngestCounts()
        slot = self.slots(px)
        ok = (slot >= 0) & (pv >= 0) & (pv < self.n_posvar)
        counts.unknown = int((~ok).sum())
        where = np.flatnonzero(ok)
        slot, pv, f, fl = slot[ok], pv[ok], f[ok], fl[ok]
        bit = np.left_shift(np.uint64(1), pv.astype(np.uint64))
        # duplicates: already received, or repeated within this batch
        seen_before = (self._received[slot] & bit) != 0
        key = slot * MAX_POSVAR + pv
        _, first_idx = np.unique(key, return_index=True)
        first = np.zeros(key.size, bool)
        first[first_idx] = True
        new = first & ~seen_before
        counts.duplicates = int((~new).sum())
        counts.accepted = int(new.sum())
        counts.accepted_index = where[new]
        if not counts.accepted:
            return counts
        slot, bit, f, fl = slot[new], bit[new], f[new], fl[new]
        self.n_items_received += counts.accepted
        self.n_failed_items += int(fl.sum())
        was_done = self._received[slot] == self._all_mask
        np.bitwise_or.at(self._received, slot, bit)
        # best finite llh per pixel: process candidates in order of llh so the lowest wins
        llh = np.where(np.isfinite(f[:, 0]) & ~fl, f[:, 0], np.inf)
        order = np.argsort(llh, kind="stable")[::-1]  # highest first; lowest written last
        slot_o, llh_o, f_o = slot[order], llh[order], f[order]
        cur = self._fits[slot_o, 0]
        better = np.isfinite(llh_o) & ~(cur <= llh_o)
        self._fits[slot_o[better]] = f_o[better]
        now_done = self._received[slot] == self._all_mask
        self.n_pixels_done += int(np.unique(slot[now_done & ~was_done]).size)
        finite = np.isfinite(llh)
        if finite.any():
            i = int(np.argmin(llh))
            if llh[i] < self.best_llh:
                self.best_llh = float(llh[i])
                self.best_pixel = int(self.expected_pixels()[slot[i]])
        return counts

    def received(self, pixels: npt.ArrayLike, posvars: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each (pixel, posvar) is already in (False for anything not expected)."""
        pv = np.asarray(posvars, dtype=np.int64)
        bits = np.left_shift(np.uint64(1), np.clip(pv, 0, MAX_POSVAR - 1).astype(np.uint64))
        ok = (pv >= 0) & (pv < self.n_posvar)
        got: npt.NDArray[np.bool_] = ok & ((self.received_mask(pixels) & bits) != 0)
        return got

    def received_mask(self, pixels: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """Bit mask of posvars received for each pixel (0 for unexpected pixels)."""
        slot = self.slots(pixels)
        out = np.zeros(slot.shape, np.uint64)
        out[slot >= 0] = self._received[slot[slot >= 0]]
        return out

    def fits_of(self, pixels: npt.ArrayLike) -> FloatArray:
        """Best fit (n, 7) of each pixel so far (NaN where none)."""
        slot = self.slots(pixels)
        out = np.full((slot.size, len(FIT_FIELDS)), np.nan)
        out[slot >= 0] = self._fits[slot[slot >= 0]]
        return out

    @property
    def n_items_expected(self) -> int:
        return self.n_expected * self.n_posvar


    @property
    def complete(self) -> bool:
        return self.n_pixels_done == self.n_expected

    def done_fraction(self) -> float:
        return self.n_pixels_done / self.n_expected if self.n_expected else 0.0

    def result_array(self) -> npt.NDArray[np.void]:
        """Structured array (:data:`RESULT_DTYPE`) of the pixels with all posvars in, by index."""
        idx = np.flatnonzero(self._received == self._all_mask)
        out = np.empty(idx.size, dtype=RESULT_DTYPE)
        out["index"] = self.expected_pixels()[idx]
        for j, name in enumerate(FIT_FIELDS):
            out[name] = self._fits[idx, j]
        return out

"""The scan as a state machine: results in, work items and refinements out. No I/O.

The embedded and the distributed modes both drive this engine; only the transport
that carries work items to workers and results back differs.

Refinement rule: step k+1 (``nside:N``) refines the ~N pixels of step k's nside
whose centres lie near the current global best pixel over steps <= k, splitting
each into its children at the new nside. It starts once a fraction
``predictive_threshold`` of step k's pixels are complete; whenever the best pixel
over steps <= k moves afterwards, the pixels around the new best are added
(pixels already expected are never scanned twice). With threshold 1.0 the
result is fully deterministic.

A contour step (``nside:c`` / ``nside:cB``) starts the same way, then refines the
pixels :func:`~skymap_scanner.contour.select_contour_parents` picks (those whose
2*Delta-llh lies below ``contour_level + contour_margin``, or that touch a finer
sample that does; at most B in all). It is re-evaluated at every quiet point (every
expected pixel of every started step is in) with all samples so far, so the refined
region grows until it holds the whole contour or the budget is spent; the next step
starts only once no re-evaluation adds pixels. Quiet points do not depend on the
order results arrive in, so with threshold 1.0 a contour scan is deterministic too.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .collector import FIT_FIELDS, IngestCounts, NsideStore
from .contour import DEFAULT_CONTOUR_LEVEL, DEFAULT_CONTOUR_MARGIN, ContourSelection, select_contour_parents
from .leases import Attempts
from .pixels import NsideStep, child_pixels, parent_pixels, pixel_radec, refinement_pixels

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class WorkItems:
    """Fits to do at one nside: item i is (pixels[i], posvars[i]) with seed vertex
    ``seeds[i]`` = (x m, y m, z m, t ns) of the parent pixel's best fit, NaN where none."""

    nside: int
    pixels: IntArray
    posvars: IntArray
    seeds: FloatArray

    def __len__(self) -> int:
        return int(self.pixels.size)


@dataclass
class _Pending:
    """A queued block of work: every posvar of ``pixels`` (from item ``start`` on),
    or explicit (pixel, posvar) pairs when ``posvars`` is given."""

    level: int
    pixels: IntArray
    posvars: IntArray | None = None
    start: int = 0


@dataclass
class EngineCounts:
    """Running totals over the whole scan."""

    accepted: int = 0
    duplicates: int = 0
    unknown: int = 0
    failed_attempts: int = 0
    failed_items: int = 0  # given up on after max_attempts (poison)
    re_refinements: int = 0
    contour_refinements: int = 0  # contour selections that added pixels


@dataclass(frozen=True)
class Best:
    nside: int
    pixel: int
    llh: float


class ScanEngine:
    """Pixel generation, collection and refinement for one scan."""

    def __init__(
        self,
        steps: Sequence[NsideStep],
        n_posvar: int,
        predictive_threshold: float = 1.0,
        max_attempts: int = 3,
        first_pixels: npt.ArrayLike | None = None,
        contour_level: float | None = None,
        contour_margin: float | None = None,
    ) -> None:
        """``first_pixels``: scan only these pixels of the first nside (a pointed scan), not the full sky.
        ``contour_level`` / ``contour_margin``: the 2*Delta-llh a contour step follows and the margin above
        it (None: :data:`~skymap_scanner.contour.DEFAULT_CONTOUR_LEVEL` / ``DEFAULT_CONTOUR_MARGIN``)."""
        if not 0.1 <= predictive_threshold <= 1.0:
            raise ValueError("predictive_threshold must be within 0.1 .. 1.0")
        self.contour_level = DEFAULT_CONTOUR_LEVEL if contour_level is None else float(contour_level)
        self.contour_margin = DEFAULT_CONTOUR_MARGIN if contour_margin is None else float(contour_margin)
        if not (self.contour_level > 0 and self.contour_margin >= 0):
            raise ValueError("contour_level must be > 0 and contour_margin >= 0")
        self.steps = tuple(steps)
        self.n_posvar = n_posvar
        self.threshold = predictive_threshold
        self.max_attempts = max_attempts
        self.stores = [NsideStore(s.nside, n_posvar, full_sky=(i == 0 and first_pixels is None))
                       for i, s in enumerate(self.steps)]
        if first_pixels is not None:
            self.stores[0].add_expected(first_pixels)
        self._level_of = {s.nside: i for i, s in enumerate(self.steps)}
        self._centre: list[Best | None] = [None] * len(self.steps)
        self._queue: deque[_Pending] = deque([_Pending(0, self.stores[0].expected_pixels())])
        self.attempts = Attempts(max_attempts)
        self.counts = EngineCounts()
        self._quiet_key: tuple[int, ...] = ()  # received counts at the last contour re-evaluation
        #: per contour level, its latest selection that changed something (for the scan log)
        self.contour_selections: dict[int, ContourSelection] = {}
        self._notes: list[tuple[int, str]] = []  # (logging level, line)
        self._budget_noted: set[int] = set()

    @property
    def has_contour_steps(self) -> bool:
        return any(s.contour for s in self.steps)

    def take_notes(self) -> list[tuple[int, str]]:
        """(logging level, line) for the scan log since the last call (contour refinements, budget cuts)."""
        notes, self._notes = self._notes, []
        return notes

    def expects(self, nside: int, pixels: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Whether each pixel is expected at ``nside`` now (False for an nside not in the progression)."""
        store = self.store(nside)
        px = np.asarray(pixels, dtype=np.int64)
        if store is None:
            return np.zeros(px.shape, bool)
        found: npt.NDArray[np.bool_] = store.slots(px) >= 0
        return found

    # -- state -------------------------------------------------------------------------
    def store(self, nside: int) -> NsideStore | None:
        level = self._level_of.get(nside)
        return None if level is None else self.stores[level]

    def best(self, upto_level: int | None = None) -> Best | None:
        """Lowest-llh pixel over steps 0..upto_level (all by default)."""
        top = len(self.steps) - 1 if upto_level is None else upto_level
        cands = [Best(s.nside, s.best_pixel, s.best_llh) for s in self.stores[: top + 1] if s.best_pixel >= 0]
        return min(cands, key=lambda b: b.llh) if cands else None

    @property
    def started_levels(self) -> int:
        return 1 + sum(c is not None for c in self._centre[1:])

    @property
    def done(self) -> bool:
        return self.started_levels == len(self.steps) and all(s.complete for s in self.stores) and not self._queue

    @property
    def n_queued_items(self) -> int:
        n = 0
        for p in self._queue:
            n += (p.pixels.size - p.start) if p.posvars is not None else p.pixels.size * self.n_posvar - p.start
        return n

    # -- work out ----------------------------------------------------------------------
    def pop_work(self, max_items: int) -> WorkItems | None:
        """Up to ``max_items`` items of one nside, skipping any already received."""
        while self._queue:
            p = self._queue[0]
            store = self.stores[p.level]
            if p.posvars is None:
                total = p.pixels.size * self.n_posvar
                idx = np.arange(p.start, min(p.start + max_items, total), dtype=np.int64)
                pixels, posvars = p.pixels[idx // self.n_posvar], idx % self.n_posvar
                p.start += idx.size
                exhausted = p.start >= total
            else:
                pixels = p.pixels[p.start:p.start + max_items]
                posvars = p.posvars[p.start:p.start + max_items]
                p.start += pixels.size
                exhausted = p.start >= p.pixels.size
            if exhausted:
                self._queue.popleft()
            keep = ~store.received(pixels, posvars)
            if keep.any():
                pixels, posvars = pixels[keep], posvars[keep]
                return WorkItems(store.nside, pixels, posvars, self._seeds(p.level, pixels))
        return None

    def _seeds(self, level: int, pixels: IntArray) -> FloatArray:
        if level == 0:
            return np.full((pixels.size, 4), np.nan)
        coarse = self.stores[level - 1]
        parents = parent_pixels(self.stores[level].nside, pixels, coarse.nside)
        return coarse.fits_of(parents)[:, 3:7]

    def requeue(self, nside: int, pixels: npt.ArrayLike, posvars: npt.ArrayLike) -> int:
        """Put items back at the front of the queue (lost or overdue work), skipping those already
        received; returns how many went back."""
        level = self._level_of[nside]
        px, pv = np.asarray(pixels, np.int64), np.asarray(posvars, np.int64)
        keep = ~self.stores[level].received(px, pv)
        if keep.any():
            self._queue.appendleft(_Pending(level, px[keep], pv[keep]))
        return int(keep.sum())

    # -- results in --------------------------------------------------------------------
    def ingest(
        self,
        nside: int,
        pixels: npt.ArrayLike,
        posvars: npt.ArrayLike,
        fits: npt.ArrayLike,
        failed: npt.ArrayLike | None = None,
    ) -> IngestCounts:
        """Record results (``fits``: (n, 7) in FIT_FIELDS order) and advance refinement.

        Returns the counts, with ``accepted_index``: which of the offered results were new and kept
        (the rest were duplicates or never asked for)."""
        store = self.store(nside)
        px = np.asarray(pixels, dtype=np.int64)
        if store is None:
            counts = IngestCounts(unknown=int(px.size))
        else:
            counts = store.ingest(px, posvars, fits, failed)
            if failed is not None:
                self.counts.failed_items += int(np.asarray(failed, bool).sum())
        self.counts.accepted += counts.accepted
        self.counts.duplicates += counts.duplicates
        self.counts.unknown += counts.unknown
        if counts.accepted:
            self._advance()
        return counts

    def report_failure(
        self, nside: int, pixels: npt.ArrayLike, posvars: npt.ArrayLike, requeue: bool = True
    ) -> tuple[IntArray, IntArray]:
        """A reco failed on these items: retry them (``requeue=False``: they are being retried already,
        e.g. redelivered by the broker), or after ``max_attempts`` record them as failed (NaN).
        Returns the (pixels, posvars) given up on."""
        store = self.store(nside)
        if store is None:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        px = np.asarray(pixels, np.int64)
        pv = np.asarray(posvars, np.int64)
        pending = ~store.received(px, pv)
        retry, give_up = self.attempts.failed(nside, px[pending], pv[pending])
        self.counts.failed_attempts += int(pending.sum())
        if retry[0].size and requeue:
            self.requeue(nside, *retry)
        if give_up[0].size:
            nan = np.full((give_up[0].size, len(FIT_FIELDS)), np.nan)
            self.ingest(nside, *give_up, nan, np.ones(give_up[0].size, bool))
        return give_up

    # -- refinement --------------------------------------------------------------------
    def _advance(self) -> None:
        self._contour_quiet_point()
        for level in range(1, len(self.steps)):
            prev = self.stores[level - 1]
            started = self._centre[level] is not None
            if not started and (self._centre[level - 1] is None and level - 1 > 0):
                return  # the previous step has not started yet
            if not started and prev.done_fraction() < self.threshold:
                return
            centre = self.best(upto_level=level - 1)
            if centre is None:
                if prev.complete:  # every fit failed: refine nothing, finish the step empty
                    self._centre[level] = Best(prev.nside, -1, np.nan)
                    continue
                return
            if self.steps[level].contour:
                if not started:  # later re-evaluations happen at quiet points only
                    self._centre[level] = centre
                    self._refine_contour(level)
                continue
            old = self._centre[level]
            if old is not None and (old.nside, old.pixel) == (centre.nside, centre.pixel):
                continue
            self._refine(level, centre, rerefine=started)

    def _refine(self, level: int, centre: Best, rerefine: bool) -> None:
        step, prev = self.steps[level], self.steps[level - 1]
        ra, dec = pixel_radec(centre.nside, [centre.pixel])
        pixels = refinement_pixels(float(ra[0]), float(dec[0]), prev.nside, step.n_refine, step.nside)
        new = self.stores[level].add_expected(pixels)
        self._centre[level] = centre
        if rerefine:
            self.counts.re_refinements += 1
        if new.size:
            self._queue.append(_Pending(level, new))

    def _contour_quiet_point(self) -> None:
        """Re-evaluate the started contour steps once every expected pixel of every started step is in."""
        if not self.has_contour_steps:
            return
        started = [i == 0 or c is not None for i, c in enumerate(self._centre)]
        if not all(s.complete for s, on in zip(self.stores, started, strict=True) if on):
            return
        key = tuple(s.n_items_received for s in self.stores)
        if key == self._quiet_key:
            return
        self._quiet_key = key
        for level in range(1, len(self.steps)):
            if not started[level] or not self.stores[level - 1].complete:
                break  # a coarser step just grew: finer ones wait for its samples
            if self.steps[level].contour:
                self._refine_contour(level)

    def _refine_contour(self, level: int) -> None:
        step, prev = self.steps[level], self.steps[level - 1]
        store = self.stores[level]
        already = np.unique(parent_pixels(step.nside, store.expected_pixels(), prev.nside))
        sel = select_contour_parents(self.results(), prev.nside, level=self.contour_level,
                                     margin=self.contour_margin, budget=step.n_refine, already=already)
        new = store.add_expected(child_pixels(prev.nside, sel.parents, step.nside))
        self.contour_selections[level] = sel
        if new.size:
            self.counts.contour_refinements += 1
            self._queue.append(_Pending(level, new))
            self._notes.append((logging.INFO,
                f"contour refinement of nside {prev.nside} -> {step.nside}: {sel.parents.size} more parent pixels "
                f"({already.size + sel.parents.size} of budget {step.n_refine}; 2*Delta-llh < "
                f"{self.contour_level:g} + {self.contour_margin:g})"))
        if sel.over_budget and level not in self._budget_noted:
            self._budget_noted.add(level)
            self._notes.append((logging.WARNING,
                f"contour step nside {step.nside} is over its budget of {step.n_refine} parent pixels: "
                f"{sel.n_candidates - sel.parents.size} candidates of nside {prev.nside} left unrefined "
                f"({sel.n_cut_inside} of them at or next to 2*Delta-llh < {self.contour_level:g}); "
                f"raise the budget ({step.nside}:cB) to resolve the whole region"))

    def contour_over_budget(self) -> dict[int, bool]:
        """Per contour step's nside, whether its budget left candidates unrefined (last evaluation)."""
        return {self.steps[lv].nside: sel.over_budget for lv, sel in self.contour_selections.items()}

    # -- reporting ---------------------------------------------------------------------
    def progress(self) -> list[dict[str, float | int | bool]]:
        """Per-nside progress: pixels done / expected, items received, failures."""
        return [
            {
                "nside": s.nside,
                "started": i == 0 or self._centre[i] is not None,
                "pixels_done": s.n_pixels_done,
                "pixels_expected": s.n_expected,
                "items_received": s.n_items_received,
                "items_expected": s.n_items_expected,
                "items_failed": s.n_failed_items,
                "complete": s.complete and (i == 0 or self._centre[i] is not None),
            }
            for i, s in enumerate(self.stores)
        ]

    def results(self) -> dict[int, npt.NDArray[np.void]]:
        """Per nside, the structured result array of the pixels complete so far."""
        return {s.nside: s.result_array() for s in self.stores}

    def completeness(self) -> dict[int, bool]:
        return {int(p["nside"]): bool(p["complete"]) for p in self.progress()}


__all__ = ["Best", "EngineCounts", "ScanEngine", "WorkItems"]

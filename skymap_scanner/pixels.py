"""HEALPix pixel math for the scan: one convention, no I/O.

Pixels are RING-ordered HEALPix pixels in equatorial J2000 coordinates with
theta = pi/2 - dec and phi = ra (rad). NESTED ordering is used only inside the
refinement arithmetic (parent/child relations) and never leaves this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import healpy as hp
import numpy as np
import numpy.typing as npt

from .errors import ConfigError

MAX_NSIDE = 2**13
DEFAULT_PROGRESSION = "8:0 64:12 512:c"
DEFAULT_CONTOUR_BUDGET = 100  # parent pixels a contour step (``NSIDE:c``) refines at most
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class NsideStep:
    """One step of an nside progression: scan at ``nside``; refine ``n_refine``
    pixels of the previous step around the best pixel (0 for the first step: full sky).

    With ``contour`` (syntax ``NSIDE:c`` or ``NSIDE:cB``) the step refines the previous nside's pixels
    that follow the 2*Delta-llh contour (see :mod:`skymap_scanner.contour`), and ``n_refine`` is the
    budget: at most that many parent pixels."""

    nside: int
    n_refine: int
    contour: bool = False

    def __str__(self) -> str:
        if not self.contour:
            return f"{self.nside}:{self.n_refine}"
        return f"{self.nside}:c" if self.n_refine == DEFAULT_CONTOUR_BUDGET else f"{self.nside}:c{self.n_refine}"


HEALPIX_MAX_NSIDE = 2**29


def is_valid_nside(nside: int, max_nside: int = HEALPIX_MAX_NSIDE) -> bool:
    """True for a power of 2 in [1, ``max_nside``] (HEALPix allows up to 2**29)."""
    return 1 <= nside <= max_nside and (nside & (nside - 1)) == 0


_STEP_RE = re.compile(r"(?P<nside>[0-9]+):(?:(?P<n>[0-9]+)|(?P<c>c)(?P<budget>[0-9]*))")


def parse_progression(specs: str | Sequence[str]) -> tuple[NsideStep, ...]:
    """Parse ``"8:0 64:12 512:24"`` or ``"8:0 64:c 512:c200"`` (or their tokens) into checked
    :class:`NsideStep` s. ``NSIDE:N`` refines the ~N pixels of the previous nside around the best
    fit; ``NSIDE:c`` / ``NSIDE:cB`` follows the contour with a budget of B parent pixels (default
    :data:`DEFAULT_CONTOUR_BUDGET`)."""
    tokens = specs.split() if isinstance(specs, str) else [t for s in specs for t in s.split()]
    if not tokens:
        raise ConfigError("the nside progression is empty (e.g. --nsides 8:0 64:12 512:24)")
    steps: list[NsideStep] = []
    for tok in tokens:
        m = _STEP_RE.fullmatch(tok)
        if m is None:
            raise ConfigError(f"bad nside step {tok!r}: expected NSIDE:N (e.g. 64:12) or NSIDE:c / NSIDE:cB "
                              "(contour mode with a budget of B pixels, e.g. 64:c or 64:c200)")
        nside = int(m["nside"])
        if not is_valid_nside(nside, MAX_NSIDE):
            raise ConfigError(f"bad nside step {tok!r}: nside must be a power of 2 between 1 and {MAX_NSIDE}")
        if m["c"]:
            budget = int(m["budget"]) if m["budget"] else DEFAULT_CONTOUR_BUDGET
            if budget < 1:
                raise ConfigError(f"bad nside step {tok!r}: the contour budget must be at least 1 pixel")
            steps.append(NsideStep(nside, budget, contour=True))
        else:
            steps.append(NsideStep(nside, int(m["n"])))
    if steps[0].n_refine != 0 or steps[0].contour:
        raise ConfigError(f"the first nside step must be NSIDE:0 (a full-sky scan), got {steps[0]}")
    for prev, step in zip(steps, steps[1:], strict=False):
        if step.nside <= prev.nside:
            raise ConfigError(f"nsides must be strictly ascending, got {prev.nside} then {step.nside}")
        if step.n_refine < 1:
            raise ConfigError(f"refinement step {step} must refine at least 1 pixel of the previous nside")
    return tuple(steps)


def progression_str(steps: Iterable[NsideStep]) -> str:
    return " ".join(str(s) for s in steps)


def pixel_radec(nside: int, pixels: npt.ArrayLike) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Centres of RING ``pixels`` as (ra, dec) in rad."""
    theta, phi = hp.pix2ang(nside, np.asarray(pixels, dtype=np.int64))
    return np.asarray(phi, dtype=np.float64), np.pi / 2 - np.asarray(theta, dtype=np.float64)


def refine_radius_rad(coarse_nside: int, n_refine: int) -> float:
    """Radius (rad) of the disc holding about ``n_refine`` pixels of ``coarse_nside``."""
    return math.sqrt(n_refine * hp.nside2pixarea(coarse_nside) / math.pi)


def refinement_pixels(
    centre_ra: float, centre_dec: float, coarse_nside: int, n_refine: int, fine_nside: int
) -> IntArray:
    """RING pixels at ``fine_nside`` refining ~``n_refine`` coarse pixels around a centre.

    The coarse pixels are those whose centres lie within
    :func:`refine_radius_rad` of the centre (rad), plus the coarse pixel holding the
    centre itself; each is split into all its children at ``fine_nside``. Sorted, unique.
    """
    if fine_nside <= coarse_nside or fine_nside % coarse_nside:
        raise ValueError("fine_nside must be a larger power-of-two multiple of coarse_nside")
    vec = hp.ang2vec(np.pi / 2 - centre_dec, centre_ra)
    coarse = hp.query_disc(coarse_nside, vec, refine_radius_rad(coarse_nside, n_refine), inclusive=False)
    own = hp.ang2pix(coarse_nside, np.pi / 2 - centre_dec, centre_ra)
    coarse = np.union1d(np.asarray(coarse, dtype=np.int64), [own])
    return np.unique(child_pixels(coarse_nside, coarse, fine_nside))


def child_pixels(coarse_nside: int, pixels: npt.ArrayLike, fine_nside: int) -> IntArray:
    """RING children at ``fine_nside`` of each RING pixel at ``coarse_nside`` (all of each pixel's
    children in turn, in the order of ``pixels``); the inverse of :func:`parent_pixels`."""
    ratio2 = (fine_nside // coarse_nside) ** 2
    nest = hp.ring2nest(coarse_nside, np.asarray(pixels, dtype=np.int64)).astype(np.int64)
    children = (nest[:, None] * ratio2 + np.arange(ratio2, dtype=np.int64)[None, :]).ravel()
    return np.asarray(hp.nest2ring(fine_nside, children), dtype=np.int64)


def parent_pixels(fine_nside: int, pixels: npt.ArrayLike, coarse_nside: int) -> IntArray:
    """RING parent at ``coarse_nside`` of each RING pixel at ``fine_nside``."""
    ratio2 = (fine_nside // coarse_nside) ** 2
    nest = hp.ring2nest(fine_nside, np.asarray(pixels, dtype=np.int64)).astype(np.int64)
    return np.asarray(hp.nest2ring(coarse_nside, nest // ratio2), dtype=np.int64)


def disc_pixels(nside: int, centre_ra: float, centre_dec: float, radius: float) -> IntArray:
    """RING pixels of ``nside`` whose centres lie within ``radius`` (rad) of (ra, dec) rad, plus the
    pixel holding the centre itself (so the disc is never empty). Sorted, unique."""
    vec = hp.ang2vec(np.pi / 2 - centre_dec, centre_ra)
    inside = hp.query_disc(nside, vec, radius, inclusive=False)
    own = hp.ang2pix(nside, np.pi / 2 - centre_dec, centre_ra)
    return np.union1d(np.asarray(inside, dtype=np.int64), [own]).astype(np.int64)

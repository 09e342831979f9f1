"""Nside progression rules and refinement choice (pure pixel math)."""

from __future__ import annotations

import healpy as hp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skymap_scanner.errors import ConfigError
from skymap_scanner.pixels import (
    NsideStep,
    parent_pixels,
    parse_progression,
    pixel_radec,
    refine_radius_rad,
    refinement_pixels,
)


def test_default_progression() -> None:
    assert parse_progression("8:0 64:12 512:24") == (NsideStep(8, 0), NsideStep(64, 12), NsideStep(512, 24))
    assert parse_progression(["8:0", "64:12"]) == (NsideStep(8, 0), NsideStep(64, 12))


@pytest.mark.parametrize("spec,needle", [
    ("", "empty"),
    ("8:4 64:12", "first nside step must be NSIDE:0"),
    ("12:0", "power of 2"),
    ("8:0 8:12", "strictly ascending"),
    ("8:0 4:12", "strictly ascending"),
    ("8:0 64:0", "at least 1"),
    ("8:0 64", "expected NSIDE:N"),
    ("8:0 64:x", "expected NSIDE:N"),
    ("8:0 16384:3", "power of 2 between"),
])
def test_bad_progressions(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_progression(spec)


def test_refinement_disc_and_children() -> None:
    ra, dec = 1.0, -0.3
    fine = refinement_pixels(ra, dec, 8, 12, 64)
    # every fine pixel's parent centre lies within the radius (or is the pixel holding the centre)
    parents = np.unique(parent_pixels(64, fine, 8))
    pra, pdec = pixel_radec(8, parents)
    dist = hp.rotator.angdist(np.vstack([np.pi / 2 - pdec, pra]), [np.pi / 2 - dec, ra])
    own = hp.ang2pix(8, np.pi / 2 - dec, ra)
    assert np.all((dist <= refine_radius_rad(8, 12) + 1e-12) | (parents == own))
    # all children of each parent, nothing else: 64 per parent
    assert fine.size == parents.size * 64
    assert 6 <= parents.size <= 20  # "about N" = 12
    # and every coarse pixel within the radius is included
    allpix = np.arange(hp.nside2npix(8))
    ara, adec = pixel_radec(8, allpix)
    adist = hp.rotator.angdist(np.vstack([np.pi / 2 - adec, ara]), [np.pi / 2 - dec, ra])
    assert set(allpix[adist <= refine_radius_rad(8, 12)]) <= set(parents.tolist())


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.floats(0, 2 * np.pi), st.floats(-1.5, 1.5), st.sampled_from([(8, 64), (64, 512), (8, 32)]))
def test_refinement_contains_centre(ra: float, dec: float, pair: tuple[int, int]) -> None:
    coarse, fine_nside = pair
    fine = refinement_pixels(ra, dec, coarse, 4, fine_nside)
    assert hp.ang2pix(fine_nside, np.pi / 2 - dec, ra) in set(fine.tolist())
    assert np.all(np.diff(fine) > 0)


def test_parent_of_children_is_parent() -> None:
    fine = refinement_pixels(2.0, 0.4, 64, 24, 512)
    par = parent_pixels(512, fine, 64)
    # the parent contains the child's centre
    fra, fdec = pixel_radec(512, fine)
    assert np.array_equal(par, hp.ang2pix(64, np.pi / 2 - fdec, fra))

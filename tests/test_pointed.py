"""Pointed scans: only the disc around an online fit at the first nside, and the edge flag."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from synthetic import Gaussian, gaussian_scan, snap_to_pixel

from skymap_scanner.engine import ScanEngine
from skymap_scanner.errors import ConfigError
from skymap_scanner.events import load_event
from skymap_scanner.pixels import disc_pixels, parse_progression
from skymap_scanner.pointed import online_fit_radec, resolve_pointing
from skymap_scanner.products import (
    HEADLINE,
    LEVEL_SETS,
    best_fit,
    build_multires,
    make_region,
    scan_from_arrays,
)
from skymap_scanner.products.summary import pointing_dict

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"


def _ang_deg(nside: int, pix: np.ndarray, ra: float, dec: float) -> np.ndarray:
    v = np.array(hp.pix2vec(nside, pix)).T
    c = hp.ang2vec(math.radians(90 - dec), math.radians(ra))
    return np.degrees(np.arccos(np.clip(v @ c, -1, 1)))


@pytest.mark.parametrize(("nside", "ra", "dec", "r"), [(8, 48.8, -3.5, 3.5), (64, 0.1, 60.0, 3.5), (16, 359.9, -89.0, 10.0)])
def test_disc_pixels_are_exactly_those_within_r(nside: int, ra: float, dec: float, r: float) -> None:
    got = disc_pixels(nside, math.radians(ra), math.radians(dec), math.radians(r))
    every = np.arange(hp.nside2npix(nside))
    within = every[_ang_deg(nside, every, ra, dec) <= r - 1e-9]
    own = hp.ang2pix(nside, math.radians(90 - dec), math.radians(ra))
    assert set(got.tolist()) == set(within.tolist()) | {own}


def test_engine_scans_only_the_disc_at_the_first_nside() -> None:
    event = load_event(SAMPLE)
    p = resolve_pointing(event, "SplineMPE", 12.0)
    assert (p.ra_deg, p.dec_deg) == online_fit_radec(event)["SplineMPE"]
    assert abs(p.ra_deg - 48.85) < 0.05 and abs(p.dec_deg + 3.52) < 0.05  # the alert's SplineMPE
    steps = parse_progression("8:0 64:4")
    engine = ScanEngine(steps, 1, first_pixels=p.first_pixels(8))
    work = engine.pop_work(10_000)
    assert work is not None and work.nside == 8
    assert np.all(_ang_deg(8, work.pixels, p.ra_deg, p.dec_deg) <= 12.0 + 1e-9)
    assert work.pixels.size == p.first_pixels(8).size < 20
    assert engine.pop_work(10_000) is None  # nothing else at nside 8
    engine.ingest(8, work.pixels, np.zeros(work.pixels.size, np.int64), np.column_stack(
        [np.arange(work.pixels.size, dtype=float)] + [np.zeros(work.pixels.size)] * 6))
    assert engine.stores[0].complete and engine.pop_work(10_000).nside == 64  # type: ignore[union-attr]


def test_unknown_fit_or_bad_radius_is_a_one_line_error() -> None:
    event = load_event(SAMPLE)
    with pytest.raises(ConfigError, match="no such online fit .*SplineMPE"):
        resolve_pointing(event, "Nope")
    with pytest.raises(ConfigError, match="radius"):
        resolve_pointing(event, "SplineMPE", 0.0)


def _pointed_regions(radius_deg: float) -> list[object]:
    ra, dec = snap_to_pixel(48.8, -3.5, 512)
    g = Gaussian(ra, dec, sx=1.0, isotropic=True)  # headline 90%: radius sqrt(64.2) = 8.0 deg
    arrays = gaussian_scan(g, radii_deg=(radius_deg, 6.0 if radius_deg < 6 else 15.0, 4.0))
    scan = scan_from_arrays(arrays)
    m = build_multires(scan)
    fit = best_fit(scan)
    return [make_region(m, ls, fit) for ls in LEVEL_SETS]


def test_edge_flag_when_the_region_reaches_the_disc_edge() -> None:
    # the nside-8 disc of 3.5 deg is refined by the later nsides, which also reach beyond it; a
    # region wider than all of them reaches never-scanned sky and is flagged
    small = _pointed_regions(3.5)
    big = _pointed_regions(60.0)
    pointing = {"name": "SplineMPE", "ra_deg": 48.8, "dec_deg": -3.5, "radius_deg": 3.5}
    flag = pointing_dict(pointing, small)  # type: ignore[arg-type]
    assert flag is not None and flag["region_touches_edge"] is True
    assert pointing_dict(pointing, big)["region_touches_edge"] is False  # type: ignore[arg-type,index]
    assert pointing_dict(None, small) is None  # type: ignore[arg-type]
    r90 = {r.name: r for r in small}[HEADLINE.r90]  # type: ignore[attr-defined]
    assert r90.touches_unscanned  # type: ignore[attr-defined]


def test_pointed_server_scan_flags_the_edge(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    proc = subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE),
                           "--reco-algo", "dummy", "--output-dir", str(tmp_path), "--local-workers", "1",
                           "--nsides", "8:0", "--pointed-at", "SplineMPE", "--pointed-radius-deg", "10"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "scan-manifest.json").read_text())
    p = resolve_pointing(load_event(SAMPLE), "SplineMPE", 10.0)
    assert manifest["progress"][0]["pixels_expected"] == p.first_pixels(8).size
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pointed"]["name"] == "SplineMPE" and summary["pointed"]["radius_deg"] == 10.0
    # the dummy reco's minimum is far from SplineMPE: the region runs into the disc's edge
    assert summary["pointed"]["region_touches_edge"] is True
    assert "reaches the edge of the pointed disc" in proc.stderr
    assert "pointed disc's edge" in proc.stderr.strip().splitlines()[-1]
    assert summary["fraction_of_sky_scanned"] < 0.05

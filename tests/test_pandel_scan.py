"""End to end: simulate a track, scan it with pandel_mpe in embedded mode, find it again."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import healpy as hp
import numpy as np
import pytest

from skymap_scanner.results import load_result
from skymap_scanner.utils import simulate as sim


def _angle_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    c = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


@pytest.mark.slow
def test_embedded_scan_finds_a_simulated_track(tmp_path: Path) -> None:
    assert sim.main(["--out-dir", str(tmp_path), "--seed", "4", "--energy-gev", "5e4", "--zenith-deg", "70",
                     "--azimuth-deg", "200", "--impact-max-m", "150", "--mjd", "60200.25"]) == 0
    truth = json.loads((tmp_path / "sim_0001.truth.json").read_text())
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "skymap_scanner.server", "--event-file", str(tmp_path / "sim_0001.json"),
         "--reco-algo", "pandel_mpe", "--nsides", "8:0", "64:8", "--output-dir", str(out),
         "--local-workers", "2", "--no-products"],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (npz,) = sorted(out.glob("*.npz"))
    result = load_result(npz)
    assert set(result.maps) == {8, 64}
    nside, pixel, llh = result.best()
    assert nside == 64 and math.isfinite(llh)
    theta, phi = hp.pix2ang(nside, pixel)
    miss = _angle_deg(phi, math.pi / 2 - theta, truth["ra_rad"], truth["dec_rad"])
    assert miss < 3.0, f"best pixel {miss:.2f} deg from the truth"
    # the fitted vertex of the best pixel lies near the true track (m)
    row = result.maps[64][result.maps[64]["index"] == pixel][0]
    rel = np.array([row["X"] - truth["x_m"], row["Y"] - truth["y_m"], row["Z"] - truth["z_m"]])
    d = -sim.comes_from_unit(truth["zenith_rad"], truth["azimuth_rad"])
    assert np.linalg.norm(rel - (rel @ d) * d) < 30.0

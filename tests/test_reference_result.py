"""Behaviour unchanged: scans of the sample event equal the results stored from main before the refactor.

The in-process transports (stub, embedded, RabbitMQ, NATS) are compared with the same stored files by the
contract tests (tests/test_transport_contract.py); here the server's command line writes the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import healpy as hp
import numpy as np
import pytest
from reference import DUMMY, POISON, SAMPLE, Reference, assert_equals_reference, load_arrays

from skymap_scanner.coords import local_to_equatorial
from skymap_scanner.events import load_event
from skymap_scanner.recos.dummy import planted_direction


def run_embedded(ref: Reference, out: Path) -> tuple[Path, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update(ref.env)
    proc = subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE),
                           *ref.server_args(), "--output-dir", str(out), "--local-workers", "2", "--no-products"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (npz,) = out.glob("*.npz")
    return npz, proc.stderr


def test_stored_references_are_what_they_claim() -> None:
    """The stored files themselves: complete, the documented sizes, the poison one has NaN pixels."""
    for ref in (DUMMY, POISON):
        assert ref.path.exists(), f"{ref.path} is missing (see tests/data/README.md)"
    d = load_arrays(DUMMY.path)
    assert [d[f"nside-{n}"].size for n in (8, 64, 512)] == [768, 576, 1472]
    assert d["header"]["complete"].all() and not any(np.isnan(d[f"nside-{n}"]["llh"]).any() for n in (8, 64, 512))
    p = load_arrays(POISON.path)
    assert int(np.isnan(p["nside-8"]["llh"]).sum()) == 15 and int(np.isnan(p["nside-64"]["llh"]).sum()) == 8


def test_embedded_server_scan_equals_stored_result(tmp_path: Path) -> None:
    """The default progression: the stored result, which skyreader reads, with its best pixel within one
    nside-512 pixel of the dummy landscape's planted minimum; the manifest and JSON twin are written."""
    skyreader = pytest.importorskip("skyreader", reason="icecube-skyreader is a test dependency")
    npz, stderr = run_embedded(DUMMY, tmp_path)
    assert npz.name == "run00136662.evt000035405932.neutrino_8_64_512.npz"
    assert "mode: embedded" in stderr and "progress:" in stderr
    assert_equals_reference(npz, DUMMY)
    event = load_event(SAMPLE)
    zen, azi = planted_direction(event)
    ra, dec = local_to_equatorial(zen, azi, event.mjd)
    res = skyreader.SkyScanResult.read_npz(npz)
    best512 = res.result["nside-512"][np.argmin(res.result["nside-512"]["llh"])]
    dist = hp.rotator.angdist(hp.pix2ang(512, int(best512["index"])), [np.pi / 2 - float(dec), float(ra)])[0]
    assert dist <= hp.nside2resol(512), f"best pixel {np.degrees(dist):.3f} deg from the planted minimum"
    manifest = json.loads((tmp_path / "scan-manifest.json").read_text())
    assert manifest["complete"] and manifest["dropped"]["duplicates"] == 0
    assert [p["nside"] for p in manifest["progress"]] == [8, 64, 512]
    assert npz.with_suffix(".json").exists()


@pytest.mark.slow  # the same comparison runs in-process on every backend (test_transport_contract.py)
def test_embedded_server_scan_with_poison_pixels_equals_stored_result(tmp_path: Path) -> None:
    npz, _ = run_embedded(POISON, tmp_path)
    assert npz.name == "run00136662.evt000035405932.neutrino_8_64.npz"
    assert_equals_reference(npz, POISON)
    manifest = json.loads((tmp_path / "scan-manifest.json").read_text())
    assert manifest["failures"]["failed_fits"] == 23
    assert manifest["failures"]["failed_attempts"] == 2 * 23


def test_the_comparison_can_fail(tmp_path: Path) -> None:
    """A single changed fit value is caught (so the check above is not vacuous)."""
    arrays = load_arrays(DUMMY.path)
    arrays["nside-64"] = arrays["nside-64"].copy()
    arrays["nside-64"]["E_tot"][17] += 1e-9
    with pytest.raises(AssertionError, match="nside-64: E_tot differs"):
        assert_equals_reference(arrays, DUMMY)
    arrays = load_arrays(DUMMY.path)
    arrays["nside-8"] = arrays["nside-8"].copy()
    arrays["nside-8"]["X"][3] += 1e-9  # far more than a last-bit difference
    with pytest.raises(AssertionError, match="nside-8: X differs"):
        assert_equals_reference(arrays, DUMMY)
    arrays = load_arrays(DUMMY.path)
    arrays["nside-512"] = arrays["nside-512"][:-1]
    with pytest.raises(AssertionError, match="different pixels"):
        assert_equals_reference(arrays, DUMMY)

"""End-to-end embedded scans through the server CLI (real worker processes). The scans compared with
the stored results are in test_reference_result.py; the transport's faults in-process in
test_transport_contract.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.results import load_result

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
BRONZE_PKL = Path(__file__).resolve().parent / "data" / "events" / "run00136662-evt000035405932-BRONZE.pkl"


def run_server(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "skymap_scanner.server", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def test_server_reads_realtime_pickle(tmp_path: Path) -> None:
    assert BRONZE_PKL.exists(), f"{BRONZE_PKL} is missing (a copy of /work/shared/data, see tests/data/README.md)"
    proc = run_server(["--event-file", str(BRONZE_PKL), "--reco-algo", "dummy", "--output-dir", str(tmp_path),
                       "--local-workers", "1", "--nsides", "8:0", "64:4", "--no-products"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = load_result(tmp_path / "run00136662.evt000035405932.neutrino_8_64.npz")
    assert res.meta.run_id == 136662 and res.meta.is_real_event
    assert res.maps[8].size == 768


@pytest.mark.slow
# 768 random draws at 1%: no crash at all has probability 0.99**768 = 4e-4 (at 0.3% it was 10%, a flaky test)
def test_dying_workers_are_replaced_and_nothing_is_lost(tmp_path: Path) -> None:
    proc = run_server(["--event-file", str(SAMPLE), "--reco-algo", "crash_dummy", "--reco-option",
                       "crash_probability=0.01", "--reco-option", "flaky=true", "--reco-option", "crash_mode=exit",
                       "--reco-option", "n_posvar=1", "--output-dir", str(tmp_path), "--local-workers", "2",
                       "--nsides", "8:0", "--no-products"],
                      env={"SKYSCAN_LEASE_MIN_SEC": "2", "SKYSCAN_MAX_ATTEMPTS": "50", "SKYSCAN_BATCH_SIZE": "16"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "exited with code 1; starting a replacement" in proc.stderr
    arr = load_result(tmp_path / "run00136662.evt000035405932.neutrino_8.npz").maps[8]
    assert arr.size == 768 and np.isfinite(arr["llh"]).all()


@pytest.mark.slow
def test_sigkill_server_and_resume_from_checkpoint(tmp_path: Path) -> None:
    args = ["--event-file", str(SAMPLE), "--reco-algo", "dummy", "--reco-option", "sleep_s=0.004",
            "--local-workers", "2", "--nsides", "8:0", "64:12", "--no-products", "--cache-dir", str(tmp_path / "cache")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env["SKYSCAN_BATCH_SIZE"] = "8"
    p = subprocess.Popen([sys.executable, "-m", "skymap_scanner.server", *args, "--output-dir", str(tmp_path / "a")],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    cache = tmp_path / "cache"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until some, but not all, results are checkpointed
        logs = list(cache.glob("*.results.bin"))
        if logs and logs[0].stat().st_size > 88 * 400:
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    saved = list(cache.glob("*.results.bin"))[0].stat().st_size // 88
    assert 400 <= saved < 2 * (768 + 768)
    proc = run_server([*args, "--output-dir", str(tmp_path / "a")], env={"SKYSCAN_BATCH_SIZE": "8"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from checkpoint" in proc.stderr
    resumed = load_result(tmp_path / "a" / "run00136662.evt000035405932.neutrino_8_64.npz")
    manifest = json.loads((tmp_path / "a" / "scan-manifest.json").read_text())
    # only the missing fits were redone
    assert sum(n for n in manifest["per_client_fits"].values()) <= 2 * (768 + 768) - saved + 64
    ref = run_server(["--event-file", str(SAMPLE), "--reco-algo", "dummy", "--local-workers", "2", "--nsides", "8:0",
                      "64:12", "--no-products", "--output-dir", str(tmp_path / "b")])
    assert ref.returncode == 0
    full = load_result(tmp_path / "b" / "run00136662.evt000035405932.neutrino_8_64.npz")
    for n in (8, 64):
        assert np.array_equal(resumed.maps[n]["index"], full.maps[n]["index"])
        assert np.allclose(resumed.maps[n]["llh"], full.maps[n]["llh"])

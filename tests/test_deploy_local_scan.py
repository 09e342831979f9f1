"""resources/launch_scripts/local_scan.py: process orchestration (with stand-in server and client
programs), and one real distributed scan over the local RabbitMQ (marked ``broker``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (  # tests/ is on pytest's pythonpath
    RABBITMQ,
    minimal_event_doc,
    need_broker,
    pulses_on_doms,
)

ROOT = Path(__file__).resolve().parents[1]
LOCAL_SCAN = ROOT / "resources" / "launch_scripts" / "local_scan.py"

# A stand-in for `python -m skymap_scanner.server|client`: behaviour chosen by FAKE_MODE.
FAKE_PYTHON = r"""#!{python}
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
assert args[0] == "-m", args
module, rest = args[1], args[2:]
mode = os.environ.get("FAKE_MODE", "ok")

def opt(name):
    return rest[rest.index(name) + 1]

if module == "skymap_scanner.server":
    startup = Path(opt("--client-startup-json"))
    out = Path(opt("--output-dir"))
    (out / "server-argv.json").write_text(json.dumps(rest))
    if mode == "server-fails":
        print("server: bad event", file=sys.stderr)
        sys.exit(3)
    if mode == "server-hangs":
        time.sleep(3600)
    time.sleep(0.3)
    tmp = startup.with_suffix(".tmp")
    tmp.write_text(json.dumps({{"scan": 1}}))
    os.replace(tmp, startup)
    deadline = time.monotonic() + 30
    n = int(os.environ["FAKE_CLIENTS"])
    while len(list(startup.parent.glob("client-done-*"))) < n:
        if time.monotonic() > deadline:
            sys.exit(4)
        time.sleep(0.05)
    (out / "result.npz").write_text("x")
    sys.exit(0)

if module == "skymap_scanner.client":
    startup = Path(opt("--client-startup-json"))
    assert json.loads(startup.read_text()) == {{"scan": 1}}
    marker = startup.parent / f"client-done-{{os.getpid()}}"
    marker.write_text(json.dumps({{k: v for k, v in os.environ.items() if k.startswith("SKYSCAN_")}}))
    if mode == "client-hangs":
        (startup.parent / f"client-pid-{{os.getpid()}}").write_text("")
        time.sleep(3600)
    sys.exit(0)
sys.exit(99)
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    return path


def run_local_scan(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    return subprocess.run(
        [sys.executable, str(LOCAL_SCAN), *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def scan_args(tmp_path: Path, fake_python: Path, *more: str) -> list[str]:
    event = tmp_path / "event.json"
    event.write_text("{}")
    return [
        "--event-file", str(event), "--reco-algo", "dummy", "--output-dir", str(tmp_path / "out"),
        "--python", str(fake_python), *more,
    ]  # fmt: skip


def test_starts_server_then_clients_against_the_broker(tmp_path: Path, fake_python: Path) -> None:
    args = scan_args(
        tmp_path, fake_python, "--clients", "3", "--nsides", "8:0", "64:12", "--", "--extra", "x"
    )
    env = {"FAKE_CLIENTS": "3", "SKYSCAN_MQ_TIMEOUT_TO_CLIENTS": "5"}
    proc = run_local_scan([*args[:-3], "--broker-address", "mq.local", *args[-3:]], env)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    work = out / "local_scan"
    assert (out / "result.npz").exists()
    server_argv = json.loads((out / "server-argv.json").read_text())
    assert server_argv == [
        "--event-file", str(tmp_path / "event.json"), "--reco-algo", "dummy", "--output-dir", str(out),
        "--cache-dir", str(work / "cache"), "--client-startup-json", str(work / "startup.json"),
        "--nsides", "8:0", "64:12", "--extra", "x",
    ]  # fmt: skip
    markers = sorted(work.glob("client-done-*"))
    assert len(markers) == 3
    for m in markers:  # each client sees the broker settings and the inherited SKYSCAN_ variables
        assert json.loads(m.read_text()) == {
            "SKYSCAN_BROKER_CLIENT": "rabbitmq",
            "SKYSCAN_BROKER_ADDRESS": "mq.local",
            "SKYSCAN_MQ_TIMEOUT_TO_CLIENTS": "5",
        }
    assert {p.name for p in (work / "logs").iterdir()} == {
        "server.log",
        "client-0.log",
        "client-1.log",
        "client-2.log",
    }
    for i in range(3):
        assert f"client-{i} exited with 0" in proc.stderr


def test_broker_settings_come_from_the_environment(tmp_path: Path, fake_python: Path) -> None:
    env = {"FAKE_CLIENTS": "1", "SKYSCAN_BROKER_CLIENT": "nats", "SKYSCAN_BROKER_ADDRESS": "127.0.0.1:4222"}
    proc = run_local_scan(scan_args(tmp_path, fake_python, "--clients", "1"), env)
    assert proc.returncode == 0, proc.stderr
    (marker,) = (tmp_path / "out" / "local_scan").glob("client-done-*")
    seen = json.loads(marker.read_text())
    assert seen["SKYSCAN_BROKER_CLIENT"] == "nats" and seen["SKYSCAN_BROKER_ADDRESS"] == "127.0.0.1:4222"


def test_server_failing_before_startup_starts_no_client(tmp_path: Path, fake_python: Path) -> None:
    proc = run_local_scan(
        scan_args(tmp_path, fake_python), {"FAKE_MODE": "server-fails", "FAKE_CLIENTS": "2"}
    )
    assert proc.returncode == 3
    assert "the server exited before writing the startup JSON" in proc.stderr
    work = tmp_path / "out" / "local_scan"
    assert not list(work.glob("client-done-*"))
    assert "server: bad event" in (work / "logs" / "server.log").read_text()


def test_stale_startup_json_is_removed_first(tmp_path: Path, fake_python: Path) -> None:
    work = tmp_path / "out" / "local_scan"
    work.mkdir(parents=True)
    (work / "startup.json").write_text('{"scan": "old"}')
    proc = run_local_scan(
        scan_args(tmp_path, fake_python), {"FAKE_MODE": "server-fails", "FAKE_CLIENTS": "2"}
    )
    assert proc.returncode == 3
    assert not (work / "startup.json").exists()


def test_lingering_clients_are_stopped_after_the_grace_period(tmp_path: Path, fake_python: Path) -> None:
    t0 = time.monotonic()
    proc = run_local_scan(
        scan_args(tmp_path, fake_python, "--clients", "2", "--client-grace", "1"),
        {"FAKE_MODE": "client-hangs", "FAKE_CLIENTS": "2"},
    )
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 60
    pids = [int(p.name.split("-")[-1]) for p in (tmp_path / "out" / "local_scan").glob("client-pid-*")]
    assert len(pids) == 2
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "stopping client-0" in proc.stderr and "stopping client-1" in proc.stderr


def test_overall_timeout_stops_everything(tmp_path: Path, fake_python: Path) -> None:
    t0 = time.monotonic()
    proc = run_local_scan(
        scan_args(tmp_path, fake_python, "--timeout", "2", "--startup-timeout", "30"),
        {"FAKE_MODE": "server-hangs", "FAKE_CLIENTS": "2"},
    )
    assert proc.returncode == 1
    assert time.monotonic() - t0 < 60
    assert "wrote no" in proc.stderr and "within --timeout 2 s" in proc.stderr
    assert "stopping server" in proc.stderr


@pytest.mark.parametrize(
    ("more", "message"),
    [(["--clients", "0"], "--clients must be at least 1")],
)
def test_bad_arguments(tmp_path: Path, fake_python: Path, more: list[str], message: str) -> None:
    proc = run_local_scan(scan_args(tmp_path, fake_python, *more))
    assert proc.returncode == 2
    assert message in proc.stderr


def test_missing_event_file(tmp_path: Path, fake_python: Path) -> None:
    args = scan_args(tmp_path, fake_python)
    (tmp_path / "event.json").unlink()
    proc = run_local_scan(args)
    assert proc.returncode == 2
    assert "--event-file: no such file" in proc.stderr


# --- the real thing: server and clients over the local RabbitMQ ----------------------------------------


def native_event(path: Path) -> None:
    """A small synthetic event in the project's own format (the dummy reco needs only pulses)."""
    rng = np.random.default_rng(7)
    doms = sorted(
        {(int(s), int(o)) for s, o in zip(rng.integers(30, 50, 40), rng.integers(10, 50, 40), strict=True)}
    )
    doc = minimal_event_doc(run_id=424242, event_id=17, event_type="deploy_test", mjd=60000.25,
                            pulses=pulses_on_doms(doms, dt_ns=5.0, dq_pe=0.1))
    path.write_text(json.dumps(doc))


@pytest.mark.broker
@pytest.mark.slow
def test_local_scan_end_to_end_over_rabbitmq(tmp_path: Path) -> None:
    need_broker("RabbitMQ", *RABBITMQ)
    skyreader = pytest.importorskip("skyreader", reason="icecube-skyreader reads the result file")

    event = tmp_path / "event.json"
    native_event(event)
    out = tmp_path / "out"
    env = {
        "SKYSCAN_BROKER_CLIENT": "rabbitmq",
        "SKYSCAN_BROKER_ADDRESS": "127.0.0.1",
        # a client can start after the other one has done the whole (small) scan: it then waits for a
        # first message that never comes, and must give up within --client-grace to exit cleanly
        "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE": "20",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE": "10",  # clients exit 10 s after the last work item
        "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS": "120",
    }
    proc = run_local_scan(
        [
            "--event-file", str(event), "--reco-algo", "dummy", "--output-dir", str(out), "--clients", "2",
            "--nsides", "8:0", "--timeout", "400", "--client-grace", "60",
        ],
        env,
        timeout=600,
    )  # fmt: skip
    logs = out / "local_scan" / "logs"
    tail = "".join(f"\n--- {p.name}\n" + p.read_text()[-1500:] for p in sorted(logs.glob("*.log")))
    # with SKYSCAN_BROKER_ADDRESS set the server runs in broker mode (embedded mode refuses
    # --client-startup-json), so a complete result means the clients did the fits over RabbitMQ
    assert proc.returncode == 0, proc.stderr + tail
    for i in range(2):
        assert f"client-{i} exited with 0" in proc.stderr, proc.stderr + tail
    (npz,) = out.glob("*.npz")
    result = skyreader.SkyScanResult.read_npz(npz)
    pixels = result.result["nside-8"]
    assert len(pixels) == 12 * 8**2
    assert np.array_equal(pixels["index"], np.arange(12 * 8**2))
    assert np.isfinite(pixels["llh"]).all()

"""Scan lifecycle over a real broker (RabbitMQ; NATS for the stop), with real server and client processes (issue 12, defects 5 and 6):
a SIGTERM'd server tells its clients in-band that the scan is over (they exit within seconds, and a client
started later exits at once), and two servers with the same arguments no longer share queues."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import test_broker
from brokers import publish
from conftest import NATS, RABBITMQ, need_broker
from test_broker import Scan, base_env, write_event

from skymap_scanner.messages import ScanOverMessage
from skymap_scanner.results import load_result
from skymap_scanner.signing import seal

pytestmark = pytest.mark.broker
rabbitmq = test_broker.rabbitmq  # the fixtures of the broker tests
scans = test_broker.scans

# clients that would otherwise wait 10 min for more work, and 10 min for their first message
PATIENT = {"SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE": "600", "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE": "600"}


@pytest.mark.parametrize("broker", ["rabbitmq", "nats"])
def test_sigterm_stops_the_server_and_its_clients_within_seconds(broker: str, scans: Callable[..., Scan]) -> None:
    """Defect 6: SIGTERM was silent and clients left only at their idle timeout (600 s by default)."""
    host, port = RABBITMQ if broker == "rabbitmq" else NATS
    need_broker(broker, host, port)
    env = base_env(**PATIENT, SKYSCAN_BROKER_CLIENT=broker, SKYSCAN_BROKER_ADDRESS=host)
    scan = scans(["--reco-algo", "dummy", "--reco-option", "sleep_s=0.02", "--nsides", "8:0", "64:12",
                  "--cache-dir", "cache"], env)
    scan.start_server()
    scan.start_client()
    scan.start_client()
    scan.wait_for(lambda: scan.fits_done() > 100, "the first fits")
    assert scan.server is not None
    t0 = time.monotonic()
    scan.server.send_signal(signal.SIGTERM)
    code = scan.wait_server(timeout_s=30)
    server_s = time.monotonic() - t0
    clients = scan.wait_clients(timeout_s=30)
    clients_s = time.monotonic() - t0
    logs = scan.logs(6000)
    assert code == 143, logs
    assert clients == [0, 0], logs
    assert server_s < 15 and clients_s < 20, f"server {server_s:.1f} s, clients {clients_s:.1f} s\n{logs}"
    server_log = (scan.dir / "server-1.log").read_text()
    assert len([line for line in server_log.splitlines() if "scan stopped (SIGTERM received)" in line]) == 1
    for i in (1, 2):
        assert "the server says the scan is over (stopped: SIGTERM received)" in (scan.dir / f"client-{i}.log").read_text()
    assert [p.name for p in (scan.dir / "out").glob("*.npz")] == [
        f"{load_result(next((scan.dir / 'out').glob('*.npz'))).filename('.npz', partial=True)}"]
    assert scan.startup()["scan_over"]["reason"] == "stopped: SIGTERM received"
    # a client started for the stopped scan exits at once
    t1 = time.monotonic()
    late = scan.start_client()
    assert late.wait(timeout=30) == 0
    late_s = time.monotonic() - t1
    assert late_s < 10 and "is over" in (scan.dir / "client-3.log").read_text()
    print(f"{broker} SIGTERM: server exit {code} after {server_s:.2f} s; both clients exit 0 by {clients_s:.2f} s; "
          f"a late client exits 0 after {late_s:.2f} s")


def test_a_resumed_scan_s_clients_ignore_the_scan_over_of_the_run_before(rabbitmq: None,
                                                                        scans: Callable[..., Scan]) -> None:
    """Stop, then resume with the same --cache-dir (same instance, same queues) while the first run's
    scan-over is still in the work queue (the first run deletes its queues after its linger; a run
    killed during the linger leaves it there, as put back here): the second run's client drops it and
    the scan completes."""
    scan = scans(["--reco-algo", "dummy", "--reco-option", "sleep_s=0.005", "--nsides", "8:0",
                  "--cache-dir", "cache"], base_env(**PATIENT))
    scan.start_server()
    scan.start_client()
    scan.wait_for(lambda: scan.fits_done() > 50, "the first fits")
    queues = scan.startup()["queue_to_clients"]
    assert scan.server is not None
    scan.server.send_signal(signal.SIGTERM)
    assert scan.wait_server(30) == 143
    assert scan.wait_clients(30) == [0]
    first = scan.startup()
    (scan.dir / "startup.json").unlink()
    over = ScanOverMessage(first["scan_id"], first["server_run"], "stopped: SIGTERM received")
    publish(queues, [seal(over.to_dict(), "work", bytes.fromhex(first["scan_key"]))])
    scan.start_server(base_env(SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="2"))
    assert scan.startup()["queue_to_clients"] == queues  # a resume: the same instance
    scan.start_client(base_env(SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="2"))
    assert scan.wait_server(120) == 0, scan.logs()
    assert "a scan-over of an earlier run" in (scan.dir / "client-2.log").read_text()


def test_two_servers_with_the_same_arguments_do_not_share_queues(rabbitmq: None, scans: Callable[..., Scan],
                                                                 tmp_path: Path) -> None:
    """Defect 5: the scan id (so the queues) came from the arguments: two such servers took each other's
    replies (~80 NaN pixels each, then both stalled). Each start now has its own instance (and queues)."""
    event = write_event(tmp_path / "event.json")
    args = ["--reco-algo", "dummy", "--reco-option", "sleep_s=0.002", "--nsides", "8:0", "64:12"]
    a = scans([*args, "--cache-dir", "cache"], name="a", event=event)
    b = scans(args, name="b", event=event)  # no cache dir
    a.start_server()
    b.start_server()
    doc_a, doc_b = a.startup(), b.startup()
    assert doc_a["scan_id"] == doc_b["scan_id"]  # the same scan ...
    assert doc_a["queue_to_clients"] != doc_b["queue_to_clients"]  # ... on queues of its own
    for s in (a, b):
        s.start_client()
        s.start_client()
    assert a.wait_server(180) == 0, a.logs()
    assert b.wait_server(180) == 0, b.logs()
    ma, mb = load_result(a.result_npz()), load_result(b.result_npz())
    for nside in (8, 64):
        assert np.array_equal(ma.maps[nside]["index"], mb.maps[nside]["index"])
        assert np.isfinite(ma.maps[nside]["llh"]).all() and np.isfinite(mb.maps[nside]["llh"]).all()
    assert ma.maps[8].size == 768
    for s in (a, b):
        m = json.loads((s.dir / "out" / "scan-manifest.json").read_text())
        assert m["failures"]["failed_fits"] == 0 and m["dropped"]["unsolicited_fits"] == 0


@pytest.mark.parametrize("broker", ["rabbitmq", "nats"])
def test_a_client_with_an_old_copy_of_the_startup_json_exits_promptly(broker: str,
                                                                      scans: Callable[..., Scan]) -> None:
    """Defect 6: clients started for a finished scan waited up to an hour for a first message. An HTCondor
    job gets a copy of the startup JSON when it is submitted, not the file the server marks at the end:
    such a client finds the scan's work queue gone (deleted when the scan ended) and exits 0 at once,
    without declaring the queue again (a leftover)."""
    host, port = RABBITMQ if broker == "rabbitmq" else NATS
    need_broker(broker, host, port)
    scan = scans(["--reco-algo", "dummy", "--reco-option", "n_posvar=1", "--nsides", "8:0"],
                 base_env(**PATIENT, SKYSCAN_BROKER_CLIENT=broker, SKYSCAN_BROKER_ADDRESS=host))
    scan.start_server()
    doc = scan.startup()
    copy = scan.dir / "startup-copy.json"  # the job's copy, taken while the scan runs
    copy.write_text(json.dumps(doc))
    copy.chmod(0o600)
    scan.start_client()
    assert scan.wait_server(timeout_s=120) == 0, scan.logs()
    assert scan.wait_clients(timeout_s=60) == [0], scan.logs()
    from brokers import queue_exists

    deadline = time.monotonic() + 30  # the server deletes the queues 3 s after its scan-over
    while queue_exists(broker, doc["queue_to_clients"]):
        assert time.monotonic() < deadline, "the scan's work queue was not deleted"
        time.sleep(0.2)
    t0 = time.monotonic()
    late = scan._popen(["-m", "skymap_scanner.client", "--client-startup-json", str(copy)],
                       scan.dir / "client-late.log", scan.env)
    assert late.wait(timeout=60) == 0, (scan.dir / "client-late.log").read_text()
    late_s = time.monotonic() - t0
    log = (scan.dir / "client-late.log").read_text()
    assert late_s < 20 and "the scan is over or unknown" in log, f"{late_s:.1f} s\n{log}"
    assert not queue_exists(broker, doc["queue_to_clients"])  # not created again

"""Distributed scans over a real broker (RabbitMQ, NATS, Pulsar) with real server and client processes.

One end-to-end scan per broker, and the faults that need real processes (SIGKILL of a client or of
the server, a broker restart). The other faults run in-process on every backend in
tests/test_transport_contract.py. Each scan here has a scan id (so queues) of its own: the sample
event with a reco option that changes no fit (a few picoseconds more ``sleep_s``), so that the result
can be compared with the stored one (tests/reference.py). Every process started is stopped and the
queues deleted. Outside CI an unreachable broker skips these tests with the reason; under ``CI=true``
it fails them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from brokers import BROKER_ADDRESSES, broker_address, delete_queues, rabbitmq_queue_exists, start_pulsar_lite
from conftest import IN_CI, NATS, RABBITMQ, need_broker, reachable  # tests/ is on pytest's pythonpath
from reference import DUMMY, SAMPLE, SMALL, Reference, assert_equals_reference

from skymap_scanner.checkpoint import RECORD_DTYPE
from skymap_scanner.collector import FIT_FIELDS
from skymap_scanner.results import load_result

pytestmark = pytest.mark.broker


# -- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture
def rabbitmq() -> None:
    need_broker("RabbitMQ", *RABBITMQ)


@pytest.fixture
def nats() -> None:
    need_broker("NATS", *NATS)


def own_scan(ref: Reference, sleep_s: float = 0.0) -> list[str]:
    """Server arguments for ``ref``'s scan under a scan id (so queues) of its own: ``sleep_s`` plus a
    random few picoseconds, which changes the scan id and no fit."""
    jitter = random.randrange(1, 10**6) * 1e-15
    return [*ref.server_args(), "--reco-option", f"sleep_s={sleep_s + jitter:.15f}"]


def write_event(path: Path, run_id: int = 777) -> Path:
    """The sample Bronze event under a fresh random event id (so a fresh scan id and fresh queues)."""
    doc = json.loads(SAMPLE.read_text())
    doc["run_id"] = run_id
    doc["event_id"] = random.randrange(1, 2**31)
    path.write_text(json.dumps(doc))
    return path


def base_env(**more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update({
        "SKYSCAN_BROKER_CLIENT": "rabbitmq",
        "SKYSCAN_BROKER_ADDRESS": f"{RABBITMQ[0]}",
        # a client started after the others finished a small scan gets no message at all: it must give
        # up well within wait_clients()'s 60 s (clients start only once the startup JSON exists)
        "SKYSCAN_MQ_CLIENT_TIMEOUT_WAIT_FOR_FIRST_MESSAGE": "20",
        "SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE": "2",  # clients exit ~2 s after the last work item
        "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS": "120",
        "SKYSCAN_PROGRESS_INTERVAL_SEC": "0.5",
    })
    env.update(more)
    return env


class Scan:
    """One broker scan: a server process and any number of client processes in ``workdir``."""

    def __init__(self, workdir: Path, event: Path, args: list[str], env: dict[str, str]) -> None:
        self.dir = workdir
        self.event = event
        self.args = ["--event-file", str(event), *args, "--output-dir", str(workdir / "out"),
                     "--client-startup-json", str(workdir / "startup.json"), "--no-products"]
        self.env = env
        self.server: subprocess.Popen[str] | None = None
        self.clients: list[subprocess.Popen[str]] = []
        self.all_procs: list[subprocess.Popen[str]] = []
        self.n_servers = 0

    def _popen(self, argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[str]:
        f = open(log, "w")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=f, text=True, env=env,
                             cwd=self.dir, start_new_session=True)
        f.close()
        self.all_procs.append(p)
        return p

    def start_server(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        self.n_servers += 1
        self.server = self._popen(["-m", "skymap_scanner.server", *self.args],
                                  self.dir / f"server-{self.n_servers}.log", {**self.env, **(extra_env or {})})
        return self.server

    def startup(self, timeout_s: float = 60) -> dict[str, Any]:
        path = self.dir / "startup.json"
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            assert self.server is not None and self.server.poll() is None, self.logs()
            assert time.monotonic() < deadline, "the server wrote no client-startup JSON in time"
            time.sleep(0.05)
        doc: dict[str, Any] = json.loads(path.read_text())
        return doc

    def start_client(self, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        self.startup()
        p = self._popen(["-m", "skymap_scanner.client", "--client-startup-json", str(self.dir / "startup.json")],
                        self.dir / f"client-{len(self.clients) + 1}.log", {**self.env, **(extra_env or {})})
        self.clients.append(p)
        return p

    def wait_server(self, timeout_s: float = 120) -> int:
        assert self.server is not None
        try:
            return self.server.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not finish within {timeout_s} s\n{self.logs()}")

    def wait_clients(self, timeout_s: float = 60) -> list[int | None]:
        deadline = time.monotonic() + timeout_s
        for p in self.clients:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        return [p.poll() for p in self.clients]

    def manifest(self) -> dict[str, Any] | None:
        path = self.dir / "out" / "scan-manifest.json"
        try:
            m: dict[str, Any] = json.loads(path.read_text())
            return m
        except (OSError, ValueError):
            return None

    def wait_for(self, cond: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.02)

    def fits_done(self) -> int:
        m = self.manifest()
        return 0 if m is None else sum(int(p["items_received"]) for p in m["progress"])

    def logs(self, tail: int = 2500) -> str:
        return "".join(f"\n--- {p.name}\n{p.read_text()[-tail:]}" for p in sorted(self.dir.glob("*.log")))

    def result_npz(self) -> Path:
        (npz,) = (self.dir / "out").glob("*.npz")
        return npz

    def close(self) -> None:
        for p in self.all_procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
                pass
        doc = (self.dir / "startup.json")
        if doc.exists():
            d = json.loads(doc.read_text())
            delete_queues(self.env.get("SKYSCAN_BROKER_CLIENT", "rabbitmq"),
                          [d["queue_to_clients"], d["queue_from_clients"]])


@pytest.fixture
def scans(tmp_path: Path) -> Iterator[Callable[..., Scan]]:
    made: list[Scan] = []

    def make(args: list[str], env: dict[str, str] | None = None, name: str = "scan",
             event: Path | None = None) -> Scan:
        d = tmp_path / name
        d.mkdir()
        s = Scan(d, event or write_event(d / "event.json"), args, env or base_env())
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


class Embedded:
    """The embedded scan of the same event with the same server arguments, run alongside the broker
    scan (started first, collected at the end)."""

    def __init__(self, event: Path, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> None:
        self.out = tmp / "embedded"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(event),
                                      *args, "--output-dir", str(self.out), "--local-workers", "2",
                                      "--no-products"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=full_env, start_new_session=True)

    def maps(self, timeout_s: float = 180) -> dict[int, Any]:
        try:
            _, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.close()
            pytest.fail("the embedded reference scan did not finish in time")
        assert self.proc.returncode == 0, err[-3000:]
        (npz,) = self.out.glob("*.npz")
        return load_result(npz).maps

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Callable[..., Embedded]]:
    made: list[Embedded] = []

    def make(event: Path, args: list[str], env: dict[str, str] | None = None) -> Embedded:
        e = Embedded(event, args, tmp_path, env)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def assert_same_maps(got: dict[int, Any], want: dict[int, Any]) -> None:
    assert sorted(got) == sorted(want)
    for nside in want:
        g, w = got[nside], want[nside]
        assert np.array_equal(g["index"], w["index"]), f"nside {nside}: different pixels"
        assert np.unique(g["index"]).size == g.size, f"nside {nside}: a pixel appears twice"
        for name in FIT_FIELDS:
            assert np.array_equal(g[name], w[name], equal_nan=True), f"nside {nside}: {name} differs"


def assert_manifest_consistent(m: dict[str, Any], maps: dict[int, Any], allow_unknown: bool = False) -> None:
    """Complete; every expected fit received exactly once; the counters add up."""
    assert m["complete"] is True
    for p in m["progress"]:
        assert p["items_received"] == p["items_expected"], p
        assert p["pixels_done"] == p["pixels_expected"] == maps[p["nside"]].size, p
    if not allow_unknown:
        assert m["dropped"]["unknown_pixels"] == 0


# -- end to end -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_rabbitmq_scan_equals_stored_result(rabbitmq: None, scans: Callable[..., Scan]) -> None:
    # each fit sleeps 4 ms, so one client alone would need >10 s: long enough for the second (started at
    # the same time) to connect and take work, which the per-client assertion below relies on; a plain
    # dummy fit is so fast that the first client connected could do the whole scan alone
    scan = scans(own_scan(DUMMY, sleep_s=0.004), event=SAMPLE)
    scan.start_server()
    startup = scan.startup()
    assert startup["format"] == "skymap-scanner-client-startup/1" and startup["reco_algo"] == "dummy"
    clients = [scan.start_client(), scan.start_client()]
    assert scan.wait_server() == 0, scan.logs()
    assert scan.wait_clients() == [0, 0], scan.logs()
    assert_equals_reference(scan.result_npz(), DUMMY)
    got = load_result(scan.result_npz())
    m = scan.manifest()
    assert m is not None and m["mode"] == "broker"
    assert_manifest_consistent(m, got.maps)
    assert m["dropped"] == {"bad_messages": 0, "foreign_messages": 0, "unsigned_messages": 0, "forged_messages": 0,
                            "replayed_messages": 0, "unsolicited_fits": 0, "duplicates": 0, "unknown_pixels": 0,
                            "work_messages_dropped_by_clients": 0}
    # the startup JSON holds the scan's key: owner-only, and the key is in no log
    assert (scan.dir / "startup.json").stat().st_mode & 0o777 == 0o600
    assert startup["scan_key"] not in scan.logs(tail=10**9)
    # both clients did work, and the per-client counts add up to the fits in the result
    assert len(m["per_client_fits"]) == len(clients) == 2
    assert sum(m["per_client_fits"].values()) == sum(p["items_expected"] for p in m["progress"])
    for i in (1, 2):
        log = (scan.dir / f"client-{i}.log").read_text()
        assert "done after" in log, log[-2000:]
    d = scan.startup()
    # nothing left behind: the server deleted the scan's queues once its clients had read the scan-over
    assert not rabbitmq_queue_exists(d["queue_to_clients"])
    assert not rabbitmq_queue_exists(d["queue_from_clients"])


@pytest.mark.slow
def test_nats_scan_equals_stored_result(nats: None, scans: Callable[..., Scan]) -> None:
    # clients wait 10 s for more work (not 2): on a loaded machine the gap between nside 8's last reply
    # and nside 64's first work message over NATS exceeded 2 s, and both clients left a stalled scan
    env = base_env(SKYSCAN_BROKER_CLIENT="nats", SKYSCAN_BROKER_ADDRESS=NATS[0], SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="10")
    scan = scans(own_scan(SMALL), env, event=SAMPLE)
    scan.start_server()
    assert scan.startup()["broker_client"] == "nats"
    scan.start_client()
    scan.start_client()
    assert scan.wait_server() == 0, scan.logs()
    assert scan.wait_clients() == [0, 0], scan.logs()
    assert_equals_reference(scan.result_npz(), SMALL)
    m = scan.manifest()
    assert m is not None
    assert_manifest_consistent(m, load_result(scan.result_npz()).maps)
    assert m["dropped"]["bad_messages"] == m["dropped"]["foreign_messages"] == 0


# -- faults that need real processes ---------------------------------------------------------------
def n_fits(m: dict[str, Any]) -> int:
    """Fits the whole scan needs (how many nside 64 pixels 12 refined ones give depends on the direction)."""
    return sum(int(p["items_expected"]) for p in m["progress"])


@pytest.mark.slow
def test_sigkill_client_mid_scan(rabbitmq: None, scans: Callable[..., Scan]) -> None:
    """SIGKILL the only client mid-scan, start another: the result equals the stored one.

    The killed client's unacked message goes back to the queue (or its lease expires): a duplicate is
    possible (its reply may have been published before the kill), but never counted twice.
    """
    scan = scans(own_scan(SMALL, sleep_s=0.002), base_env(SKYSCAN_BATCH_SIZE="16", SKYSCAN_LEASE_MIN_SEC="5"),
                 event=SAMPLE)
    scan.start_server()
    victim = scan.start_client()
    scan.wait_for(lambda: scan.fits_done() >= 300, "the first client to do some work")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    at_kill = scan.manifest()
    assert at_kill is not None and not at_kill["complete"], "the scan finished before the client was killed"
    done_by_victim = at_kill["per_client_fits"]
    assert len(done_by_victim) == 1 and sum(done_by_victim.values()) >= 300
    scan.start_client()
    assert scan.wait_server() == 0, scan.logs()
    assert_equals_reference(scan.result_npz(), SMALL)
    m = scan.manifest()
    assert m is not None
    assert_manifest_consistent(m, load_result(scan.result_npz()).maps)
    # two clients answered: the victim (with at least what it had done at the kill) and its successor,
    # which did the rest; everything beyond the scan's fits is a counted duplicate
    assert len(m["per_client_fits"]) == 2
    (victim_name,) = done_by_victim
    successor = sum(n for name, n in m["per_client_fits"].items() if name != victim_name)
    assert m["per_client_fits"][victim_name] >= done_by_victim[victim_name] and successor > 0
    assert sum(m["per_client_fits"].values()) - m["dropped"]["duplicates"] == n_fits(m)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["rabbitmq", "nats", "pulsar"])
def test_client_sigkill_mid_scan_equals_embedded(broker: str, scans: Callable[..., Scan],
                                                 embedded: Callable[..., Embedded]) -> None:
    """On every broker (Pulsar: pulsar-lite): SIGKILL the only client mid-scan, start another; the
    server ends with exit 0 and the result equals the embedded scan's (issue 12: Pulsar had never run)."""
    if broker == "pulsar":
        start_pulsar_lite()
    need_broker(broker, *BROKER_ADDRESSES[broker])
    args = own_scan(SMALL, sleep_s=0.002)
    env = base_env(SKYSCAN_BROKER_CLIENT=broker, SKYSCAN_BROKER_ADDRESS=broker_address(broker),
                   SKYSCAN_BATCH_SIZE="16", SKYSCAN_LEASE_MIN_SEC="5", SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="10")
    scan = scans(args, env, event=SAMPLE)
    reference = embedded(SAMPLE, args)
    scan.start_server()
    victim = scan.start_client()
    scan.wait_for(lambda: scan.fits_done() >= 300, "the first client to do some work", timeout_s=120)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    at_kill = scan.manifest()
    assert at_kill is not None and not at_kill["complete"], "the scan finished before the client was killed"
    scan.start_client()
    assert scan.wait_server(timeout_s=240) == 0, scan.logs()
    maps = load_result(scan.result_npz()).maps
    assert_same_maps(maps, reference.maps())
    m = scan.manifest()
    assert m is not None
    assert_manifest_consistent(m, maps)
    assert len(m["per_client_fits"]) == 2


@pytest.mark.slow
def test_sigkill_server_and_resume(rabbitmq: None, scans: Callable[..., Scan], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    scan = scans([*own_scan(SMALL, sleep_s=0.002), "--cache-dir", str(cache)],
                 base_env(SKYSCAN_BATCH_SIZE="16", SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="30"), event=SAMPLE)
    server = scan.start_server()
    scan.start_client()
    scan.start_client()

    def checkpointed() -> int:
        logs = list(cache.glob("*.results.bin"))
        return logs[0].stat().st_size // RECORD_DTYPE.itemsize if logs else 0

    scan.wait_for(lambda: checkpointed() >= 600, "some results to be checkpointed")
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=10)
    saved = checkpointed()
    at_kill = scan.manifest()
    assert at_kill is not None and not at_kill["complete"], "the scan finished before the server was killed"
    # the same arguments again: the same scan id, so the same queues, and the checkpoint is replayed;
    # the clients (still running) reconnect and also answer work left over from the first run
    scan.start_server()
    assert scan.wait_server() == 0, scan.logs()
    log = (scan.dir / "server-2.log").read_text()
    assert "resumed from checkpoint" in log
    assert_equals_reference(scan.result_npz(), SMALL)
    m = scan.manifest()
    assert m is not None
    # replies to the first run's work may come in before the second run expects their nside 64
    # pixels: those are "unknown" (dropped) and re-done
    assert_manifest_consistent(m, load_result(scan.result_npz()).maps, allow_unknown=True)
    # nothing counted twice: what the second run accepted is exactly what the checkpoint lacked
    accepted_now = (sum(m["per_client_fits"].values()) - m["dropped"]["duplicates"]
                    - m["dropped"]["unknown_pixels"])
    assert saved < n_fits(m) and accepted_now == n_fits(m) - saved


def _rabbitmqctl(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout_s)


@pytest.mark.skipif(not IN_CI and os.environ.get("SKYSCAN_TEST_BROKER_RESTART") != "1",
                    reason="stops and restarts the shared RabbitMQ (rabbitmqctl stop_app/start_app): runs under "
                           "CI=true or with SKYSCAN_TEST_BROKER_RESTART=1")
@pytest.mark.slow
def test_broker_restart_mid_scan(rabbitmq: None, scans: Callable[..., Scan]) -> None:
    import shutil

    if shutil.which("rabbitmqctl") is None:
        if IN_CI:
            pytest.fail("CI=true but rabbitmqctl is not installed (the RabbitMQ server package has it)")
        pytest.skip("rabbitmqctl is not installed")
    scan = scans(own_scan(SMALL, sleep_s=0.004), base_env(SKYSCAN_BATCH_SIZE="16", SKYSCAN_MQ_CLIENT_TIMEOUT_IDLE="60",
                                                         SKYSCAN_LEASE_MIN_SEC="20"), event=SAMPLE)
    scan.start_server()
    scan.start_client()
    scan.start_client()
    scan.wait_for(lambda: scan.fits_done() >= 300, "some work done before the restart")
    try:
        stop = _rabbitmqctl("stop_app")
        assert stop.returncode == 0, stop.stderr
        time.sleep(2)
        m0 = scan.manifest()
        assert m0 is not None and not m0["complete"], "the scan finished before the broker went away"
    finally:
        start = _rabbitmqctl("start_app")
        deadline = time.monotonic() + 120
        while not reachable(*RABBITMQ) and time.monotonic() < deadline:
            time.sleep(0.5)
        _rabbitmqctl("await_startup", timeout_s=120)
    assert start.returncode == 0, start.stderr
    assert scan.wait_server(timeout_s=240) == 0, scan.logs()
    assert_equals_reference(scan.result_npz(), SMALL)
    m = scan.manifest()
    assert m is not None
    assert_manifest_consistent(m, load_result(scan.result_npz()).maps)
    assert "reconnecting" in (scan.dir / "server-1.log").read_text()


@pytest.mark.slow
def test_server_without_clients_gives_up_and_keeps_a_partial_result(rabbitmq: None,
                                                                     scans: Callable[..., Scan]) -> None:
    scan = scans(["--reco-algo", "dummy", "--nsides", "8:0"], base_env(SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS="3"))
    scan.start_server()
    assert scan.wait_server(timeout_s=60) == 2
    err = (scan.dir / "server-1.log").read_text()
    assert err.strip().splitlines()[-1].startswith("skymap_scanner.server: error: no reply from any worker")
    assert "SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS" in err and "Traceback" not in err
    m = scan.manifest()
    assert m is not None and m["complete"] is False
    assert load_result(scan.result_npz()).maps[8].size == 0  # the (empty) partial result is on disk
    # a scan that gave up leaves no queues behind (nobody will fit the work it had published)
    d = scan.startup()
    assert not rabbitmq_queue_exists(d["queue_to_clients"])
    assert not rabbitmq_queue_exists(d["queue_from_clients"])


_DIES_WITHOUT_CLOSE = """
import sys
from pathlib import Path
from skymap_scanner.config import EnvConfig
from skymap_scanner.events import load_event
from skymap_scanner.scan import ScanSpec
from skymap_scanner.transport.registry import TransportOptions, make_server_transport
cfg = EnvConfig(SKYSCAN_BROKER_CLIENT=sys.argv[1], SKYSCAN_BROKER_ADDRESS="127.0.0.1")
spec = ScanSpec(load_event(Path(sys.argv[2])), "dummy", {}, "8:0", scan_id=sys.argv[3])
t = make_server_transport(cfg, spec, TransportOptions(startup_json=Path(sys.argv[4])))
t.start()
raise RuntimeError("the server died here, before closing its transport")
"""


@pytest.mark.parametrize("broker", ["rabbitmq", "nats"])
def test_a_server_dying_without_closing_its_transport_still_exits(broker: str, tmp_path: Path) -> None:
    """An exception that skips the transport's close() must still end the process (non-zero), not leave
    it waiting at interpreter exit for a publisher thread blocked on its outbox (CI hung on this)."""
    need_broker(broker, *(RABBITMQ if broker == "rabbitmq" else NATS))
    scan_id = f"dies-{broker}-{random.randrange(10**12)}"
    try:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _DIES_WITHOUT_CLOSE, broker, str(SAMPLE), scan_id,
                               str(tmp_path / "startup.json")], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1
        assert "the server died here" in proc.stderr
        assert time.monotonic() - t0 < 30
    finally:
        from skymap_scanner.transport.mq import queue_names
        delete_queues(broker, list(queue_names(scan_id)))

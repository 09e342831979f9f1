"""Scan lifecycle (issue 12): leases that start when a worker takes a batch, SKYSCAN_MAX_PIXEL_RECO_TIME,
one set of queues per server start, the scan-over message, graceful stop (SIGTERM / SIGINT / SkyDriver
kill switch). Pure core with a fake clock first, then the stub transport, then embedded server processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from reference import SAMPLE

from skymap_scanner.checkpoint import scan_instance_id
from skymap_scanner.engine import ScanEngine, WorkItems
from skymap_scanner.errors import MessageError, SkyScanError
from skymap_scanner.events import load_event
from skymap_scanner.intake import accept_result, accept_work
from skymap_scanner.leases import FIT_TIME_FACTOR, LeaseBook
from skymap_scanner.messages import (
    ResultMessage,
    ScanOverMessage,
    StartedMessage,
    WorkMessage,
    decode_delivery,
    decode_reply,
)
from skymap_scanner.pixels import parse_progression
from skymap_scanner.protocol import ScanProtocol
from skymap_scanner.scan import ScanRunner, ScanSpec
from skymap_scanner.signing import Verifier, new_key, seal
from skymap_scanner.skydriver import KillSwitch, says_deleted
from skymap_scanner.transport.contract import ServerTransport, WorkerChannel, WorkerSession
from skymap_scanner.transport.stub import StubTransport
from skymap_scanner.transport.worker_loop import serve

REPO = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self, t: float = 1000.0, tick: float = 0.0) -> None:
        self.t, self.tick = t, tick

    def __call__(self) -> float:
        self.t += self.tick
        return self.t


def px(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def protocol(clock: Clock, lease_min_s: float = 5.0, max_pixel_reco_s: float = 10.0,
             max_attempts: int = 3) -> ScanProtocol:
    engine = ScanEngine(parse_progression("8:0"), 1, 1.0, max_attempts)
    return ScanProtocol(engine, lease_min_s, clock, 100, batch_size=4, max_pixel_reco_s=max_pixel_reco_s)


def started(batch_id: int, client: str = "w1") -> StartedMessage:
    return StartedMessage("s", batch_id, client, os.urandom(4).hex())


def reply(work: WorkItems, batch_id: int, runtime_s: float = 0.01) -> ResultMessage:
    n = len(work)
    return ResultMessage("s", batch_id, work.nside, work.pixels, work.posvars, np.full((n, 7), 1.0),
                         (None,) * n, np.full(n, runtime_s), "w1")


# -- messages -------------------------------------------------------------------------------------------
def test_started_and_scan_over_messages_round_trip_through_json() -> None:
    s = StartedMessage("scan-1", 7, "host:1:abc", "00ff")
    back = decode_reply(json.dumps(s.to_dict()))
    assert back == s and back.to_dict()["schema"] == "skymap-scanner-started/1"
    o = ScanOverMessage("scan-1", "run9", "stopped: SIGTERM received")
    assert decode_delivery(json.dumps(o.to_dict()).encode()) == o
    assert o.to_dict()["schema"] == "skymap-scanner-scan-over/1"
    with pytest.raises(MessageError):
        decode_reply({**s.to_dict(), "batch_id": -1})
    with pytest.raises(MessageError):
        decode_delivery({**o.to_dict(), "reason": 5})
    key = new_key()  # signed: a started signal travels as a result, the scan-over as work
    assert accept_result(seal(s.to_dict(), "result", key), "scan-1", Verifier(key, "result")) == s
    assert accept_work(seal(o.to_dict(), "work", key), "scan-1", Verifier(key, "work")) == o
    with pytest.raises(MessageError):
        accept_work(seal(o.to_dict(), "result", key), "scan-1", Verifier(key, "work"))


# -- leases: pure core, fake clock ---------------------------------------------------------------------
def test_a_started_batch_has_a_lease_of_n_fits_times_the_max_reco_time_plus_slack() -> None:
    clock = Clock()
    book = LeaseBook(lease_min_s=5.0, clock=clock, max_pixel_reco_s=10.0)
    book.add(1, 8, px(1, 2, 3, 4), px(0, 0, 0, 0))
    clock.t += 100.0  # waiting in the queue (nothing else is running: a lost delivery is suspected ...)
    book.start(1, "w1")  # ... but it was only waiting: now it is taken, its lease starts
    clock.t += 5.0 + 4 * 10.0  # 45 s: exactly the lease
    assert book.overdue() == []
    clock.t += 0.01
    (lease,) = book.overdue()
    assert lease.batch_id == 1 and lease.started_by == "w1"


def test_once_fits_were_timed_a_started_batch_s_lease_follows_them() -> None:
    """Issue 12: with the lease at n x SKYSCAN_MAX_PIXEL_RECO_TIME (30 min a fit), the batch of a SIGKILLed
    client was never re-sent and the scan gave up. Once started batches have been answered, a started
    batch's lease is lease_min + n x FIT_TIME_FACTOR x the slowest recent per-fit time (capped)."""
    clock = Clock()
    book = LeaseBook(lease_min_s=5.0, clock=clock, max_pixel_reco_s=10.0)
    assert book.fit_s == 10.0  # nothing timed yet: the cap
    book.add(1, 8, px(1, 2), px(0, 0))
    book.start(1, "w1")
    clock.t += 1.0  # 0.5 s a fit
    assert book.done(1) is not None
    assert book.fit_s == FIT_TIME_FACTOR * 0.5
    book.add(2, 8, px(3, 4, 5, 6), px(0, 0, 0, 0))
    book.start(2, "w2")  # and then its worker is killed
    clock.t += 5.0 + 4 * FIT_TIME_FACTOR * 0.5
    assert book.overdue() == []
    clock.t += 0.01
    (lease,) = book.overdue()
    assert lease.batch_id == 2 and lease.started_by == "w2"
    book.add(3, 8, px(7), px(0))  # a slow fit raises the allowance, up to the cap
    book.start(3, "w1")
    clock.t += 9.0
    assert book.done(3) is not None and book.fit_s == 10.0


def test_waiting_in_the_queue_behind_busy_workers_is_not_a_failure() -> None:
    """Defect 3: a batch queued behind long fits used to be re-sent and charged an attempt."""
    clock = Clock()
    p = protocol(clock, lease_min_s=5.0, max_pixel_reco_s=100.0)
    first, second = p.engine.pop_work(4), p.engine.pop_work(4)
    assert first is not None and second is not None
    b1, b2 = p.open_batch(first), p.open_batch(second)
    p.on_started(started(b1))
    for _ in range(39):  # 390 s: batch 1 is still within its lease (5 + 4 x 100 s); batch 2 waits
        clock.t += 10.0
        assert p.expire().notes == []
    p.on_result(reply(first, b1, runtime_s=97.0))
    p.on_started(started(b2))
    clock.t += 300.0
    p.on_result(reply(second, b2, runtime_s=70.0))
    assert p.stats.resent_batches == 0 and p.engine.counts.failed_attempts == 0


def test_a_lost_delivery_is_re_sent_without_costing_an_attempt() -> None:
    clock = Clock()
    p = protocol(clock, lease_min_s=5.0)
    work = p.engine.pop_work(4)
    assert work is not None
    p.open_batch(work)  # never taken by any worker, nothing else in a worker's hands ...
    p.leases.start(-1, "w0")  # ... though a worker is at work (its start of a batch no longer out)
    clock.t += 5.01
    fx = p.expire()
    assert "lost delivery" in fx.notes[0][1] and fx.rows == []
    assert p.stats.lost_batches == 1 and p.engine.counts.failed_attempts == 0
    again = p.engine.pop_work(4)
    assert again is not None and again.pixels.tolist() == work.pixels.tolist()


def test_a_batch_overtaken_by_a_later_one_is_lost_after_lease_min() -> None:
    clock = Clock()
    p = protocol(clock, lease_min_s=5.0, max_pixel_reco_s=100.0)
    a, b = p.engine.pop_work(4), p.engine.pop_work(4)
    assert a is not None and b is not None
    ba, bb = p.open_batch(a), p.open_batch(b)
    p.on_started(started(bb))  # the later batch is taken first: the earlier one went missing
    clock.t += 5.0
    assert p.expire().notes == []
    clock.t += 0.01
    fx = p.expire()
    assert p.stats.lost_batches == 1 and str(ba) in fx.notes[0][1] and p.engine.counts.failed_attempts == 0
    assert len(p.leases) == 1  # batch bb is still being fitted


def test_only_a_started_then_expired_batch_or_an_error_costs_an_attempt() -> None:
    clock = Clock()
    p = protocol(clock, lease_min_s=5.0, max_pixel_reco_s=10.0, max_attempts=2)
    work = p.engine.pop_work(4)
    assert work is not None
    p.on_started(started(p.open_batch(work)))
    clock.t += 45.01
    fx = p.expire()
    assert p.stats.expired_batches == 1 and p.engine.counts.failed_attempts == 4 and fx.rows == []
    again = p.engine.pop_work(4)
    assert again is not None
    b = p.open_batch(again)
    p.on_started(started(b))
    p.on_started(started(b, "w2"))  # taken again (the broker redelivered it): the second attempt
    assert p.stats.retaken_batches == 1 and p.engine.counts.failed_items == 4  # max_attempts=2: given up
    assert p.engine.pop_work(4) is not None  # the redelivery is the retry: nothing of these was re-queued ...
    assert p.engine.counts.failed_attempts == 8


def test_workers_that_never_signal_a_start_are_charged_as_before() -> None:
    """The single-message mode (the EWMS pilot) sends no "started": once a reply shows such workers, an
    overdue batch costs an attempt (a crash there must still end in a give-up, not in endless re-sends)."""
    clock = Clock()
    p = protocol(clock, lease_min_s=5.0)
    a, b = p.engine.pop_work(4), p.engine.pop_work(4)
    assert a is not None and b is not None
    p.on_result(reply(a, p.open_batch(a)))  # answered, never started
    p.open_batch(b)
    clock.t += 5.01
    fx = p.expire()
    assert "got no reply in time" in fx.notes[0][1] and p.stats.lost_batches == 0
    assert p.engine.counts.failed_attempts == 4


def test_a_fit_longer_than_max_pixel_reco_time_is_a_failure() -> None:
    clock = Clock()
    p = protocol(clock, max_pixel_reco_s=10.0, max_attempts=1)
    work = p.engine.pop_work(4)
    assert work is not None
    msg = reply(work, p.open_batch(work))
    slow = ResultMessage(msg.scan_id, msg.batch_id, msg.nside, msg.pixels, msg.posvars, msg.fits, msg.errors,
                         np.array([0.5, 11.0, 0.5, 0.5]), msg.client)
    fx = p.on_result(slow)
    assert p.stats.slow_fits == 1 and p.engine.counts.failed_items == 1
    assert any("SKYSCAN_MAX_PIXEL_RECO_TIME" in text for _, text in fx.notes)
    assert sum(int(r.failed.sum()) for r in fx.rows) == 1 and sum(int((~r.failed).sum()) for r in fx.rows) == 3


def test_a_dead_embedded_worker_gives_its_batch_back_at_once() -> None:
    clock = Clock()
    p = protocol(clock, max_pixel_reco_s=1e6)
    work = p.engine.pop_work(4)
    assert work is not None
    p.on_started(started(p.open_batch(work), "local-worker-1"))
    fx = p.workers_lost({"local-worker-1"})
    assert p.stats.expired_batches == 1 and p.engine.counts.failed_attempts == 4 and len(p.leases) == 0
    assert "died with its worker" in fx.notes[0][1]


# -- the scan loop over a one-worker transport with a fake clock ----------------------------------------
class SlowWorker(ServerTransport):
    """One worker taking one batch at a time from a FIFO queue, each fit ``fit_s`` s of the fake clock;
    each receive() is one step (take a batch and signal "started", or finish it and reply)."""

    mode = "slow-stub"
    max_in_flight_batches = 8

    def __init__(self, clock: Clock, key: bytes, fit_s: float, signal_start: bool = True) -> None:
        self.clock, self.key, self.fit_s, self.signal_start = clock, key, fit_s, signal_start
        self.queue: deque[WorkMessage] = deque()
        self.current: WorkMessage | None = None
        self.fitted = 0
        self.scan_over: list[Any] = []

    def start(self) -> None:
        pass

    def send(self, payload: dict[str, Any]) -> None:
        msg = accept_work(payload, None, Verifier(self.key, "work"))
        if isinstance(msg, ScanOverMessage):
            self.scan_over.append(msg)
        else:
            self.queue.append(msg)

    def receive(self, timeout_s: float) -> list[Any]:
        if self.current is None:
            if not self.queue:
                return []
            self.current = w = self.queue.popleft()
            if not self.signal_start:
                return []
            return [seal(StartedMessage(w.scan_id, w.batch_id, "slow", os.urandom(4).hex()).to_dict(), "result",
                         self.key)]
        w, self.current = self.current, None
        self.clock.t += self.fit_s * len(w)
        self.fitted += len(w)
        n = len(w)
        return [seal(ResultMessage(w.scan_id, w.batch_id, w.nside, w.pixels, w.posvars, np.full((n, 7), 1.0),
                                   (None,) * n, np.full(n, self.fit_s), "slow").to_dict(), "result", self.key)]

    def close(self) -> None:
        pass


def slow_spec(**kw: Any) -> ScanSpec:
    kw.setdefault("lease_min_s", 120.0)
    return ScanSpec(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "8:0", max_attempts=3, batch_size=8,
                    progress_interval_s=1e9, result_interval_s=1e9, **kw)


def test_seventy_second_fits_queued_behind_each_other_cost_no_attempt_and_no_re_send() -> None:
    """Defect 3 as measured: with 70 s fits, batches only waiting in the queue were re-sent and their fits
    charged "failed attempts". Now a scan of 768 such fits has neither."""
    clock = Clock(tick=0.01)
    s = slow_spec(max_pixel_reco_s=600.0, timeout_no_fit_s=1e9, timeout_from_clients_s=1e9)
    worker = SlowWorker(clock, s.key, fit_s=70.0)
    runner = ScanRunner(s, worker, clock=clock)
    runner.run()
    assert runner.engine.done and worker.fitted == 768  # nothing fitted twice
    assert runner.stats.resent_batches == 0 and runner.engine.counts.failed_attempts == 0
    assert runner.manifest()["failures"]["lost_deliveries"] == 0


def test_a_scan_with_no_workers_charges_no_attempts_and_fails_truthfully() -> None:
    """Defect 3: with no worker, lease expiries used to be recorded as reco failures (and, with enough of
    them, every pixel "failed"). Waiting work is never charged, nor re-sent (with no worker ever seen it is
    not lost, only waiting: copies would pile up in the queue), and the scan fails."""
    s = slow_spec(lease_min_s=5.0, timeout_no_fit_s=60.0)
    no_workers = StubTransport(handler=lambda w: pytest.fail("no worker runs"), scan_id=s.scan_id, key=s.key,
                               auto_join=False)
    runner = ScanRunner(s, no_workers, clock=Clock(tick=0.5))
    with pytest.raises(SkyScanError, match="no fit succeeded"):
        runner.run()
    assert runner.stats.resent_batches == 0 and runner.engine.counts.failed_attempts == 0
    assert runner.engine.counts.failed_items == 0


# -- the worker loop and the scan-over message ---------------------------------------------------------
class ListChannel(WorkerChannel):
    """A worker channel over a list of raw deliveries; records the replies."""

    name = "list-worker"

    def __init__(self, deliveries: list[Any]) -> None:
        self.deliveries = deque(deliveries)
        self.replies: list[dict[str, Any]] = []

    @property
    def closed(self) -> bool:
        return not self.deliveries

    @asynccontextmanager
    async def session(self, idle_s: float) -> AsyncIterator[WorkerSession]:
        channel = self

        class Session(WorkerSession):
            async def __aiter__(self) -> AsyncIterator[Any]:  # type: ignore[override]
                while channel.deliveries:
                    yield channel.deliveries.popleft()

            async def reply(self, payload: dict[str, Any]) -> None:
                channel.replies.append(payload)

        yield Session()


def _work(key: bytes, batch_id: int) -> dict[str, Any]:
    w = WorkMessage("s", batch_id, 8, px(3), px(0), np.array([0.5]), np.array([1.0]), np.full((1, 4), np.nan))
    return seal(w.to_dict(), "work", key)


def _echo(work: WorkMessage) -> ResultMessage:
    return ResultMessage(work.scan_id, work.batch_id, work.nside, work.pixels, work.posvars, np.zeros((1, 7)),
                         (None,), np.zeros(1), "list-worker")


def test_the_worker_signals_started_before_fitting_and_stops_on_scan_over() -> None:
    key = new_key()
    over = seal(ScanOverMessage("s", "run-2", "complete").to_dict(), "work", key)
    stale = seal(ScanOverMessage("s", "run-1", "stopped").to_dict(), "work", key)
    ch = ListChannel([_work(key, 1), stale, _work(key, 2), over, _work(key, 3)])
    stats = asyncio.run(serve(ch, _echo, "s", key, server_run="run-2", log_every=0))
    assert stats.done == 2 and stats.dropped == 1  # the scan-over of an earlier run is dropped
    assert stats.scan_over == over and stats.scan_over_reason == "complete"
    assert len(ch.deliveries) == 1  # batch 3 is left for nobody: the scan is over
    kinds = [decode_reply(Verifier(key, "result").open(r)) for r in ch.replies]
    assert [type(k).__name__ for k in kinds] == ["StartedMessage", "ResultMessage"] * 2
    assert [k.batch_id for k in kinds] == [1, 1, 2, 2]


def test_the_runner_announces_the_end_in_band() -> None:
    s = slow_spec()
    worker = SlowWorker(Clock(), s.key, fit_s=0.0)
    ScanRunner(s, worker).announce_scan_over("complete")
    (msg,) = worker.scan_over
    assert msg.reason == "complete" and msg.server_run == s.server_run and msg.scan_id == s.scan_id


# -- one scan, one set of queues -----------------------------------------------------------------------
def test_every_server_start_gets_its_own_instance_and_a_resume_keeps_it(tmp_path: Path) -> None:
    """Defect 5: the queues were named by the scan id alone, so two servers with the same arguments shared them."""
    from skymap_scanner.transport.mq import queue_names

    sid = "136662-35405932-1b8e1beea736"
    a, b = scan_instance_id(None, sid), scan_instance_id(None, sid)
    assert a != b and a.startswith(sid) and queue_names(a) != queue_names(b)
    c1 = scan_instance_id(tmp_path / "one", sid)
    assert scan_instance_id(tmp_path / "one", sid) == c1  # a resume: the same queues
    assert scan_instance_id(tmp_path / "two", sid) != c1


def test_the_broker_transport_names_its_queues_by_the_instance(tmp_path: Path) -> None:
    from skymap_scanner.config import EnvConfig
    from skymap_scanner.transport.mq import make_server_transport, queue_names

    s = slow_spec()
    s.instance_id = scan_instance_id(None, s.scan_id)
    t = make_server_transport(EnvConfig(SKYSCAN_BROKER_ADDRESS="127.0.0.1"), s, tmp_path / "startup.json")
    assert (t.to_clients, t.from_clients) == queue_names(s.instance_id)
    assert t.startup_doc["queue_to_clients"] == queue_names(s.instance_id)[0]


# -- SkyDriver kill switch -----------------------------------------------------------------------------
class StatusStub:
    """``GET /scan/<id>/status``: not deleted for the first ``alive_polls`` polls, then deleted."""

    def __init__(self, alive_polls: int) -> None:
        self.polls = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                stub.polls += 1
                body = json.dumps({"scan_state": "IN_PROGRESS", "is_deleted": stub.polls > alive_polls}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PATCH(self) -> None:  # noqa: N802 - manifest updates
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_PUT = do_PATCH  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def status_stub() -> Iterator[Any]:
    made: list[StatusStub] = []

    def make(alive_polls: int) -> StatusStub:
        made.append(StatusStub(alive_polls))
        return made[-1]

    yield make
    for s in made:
        s.server.shutdown()
        s.server.server_close()


def test_the_kill_switch_fires_once_when_skydriver_says_deleted(status_stub: Any) -> None:
    assert says_deleted({"is_deleted": True}) and says_deleted({"scan_state": "DELETED"})
    assert not says_deleted({"is_deleted": False}) and not says_deleted(["deleted"])
    stub = status_stub(alive_polls=2)
    fired: list[str] = []
    ks = KillSwitch(stub.url, "tok", "sd-1", 0.05, fired.append)
    ks.start()
    ks.join(timeout=10)
    assert fired == ["SkyDriver says scan sd-1 is deleted (kill switch)"] and ks.polls == 3


def test_a_kill_switch_that_cannot_reach_skydriver_stops_nothing() -> None:
    fired: list[str] = []
    ks = KillSwitch("http://127.0.0.1:9", "", "sd-2", 0.05, fired.append)
    assert ks.poll() is False and ks.poll() is False and fired == []


# -- graceful stop of a real (embedded) server process -------------------------------------------------
def _server(tmp: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    e.update({"SKYSCAN_PROGRESS_INTERVAL_SEC": "0.3", **(env or {})})
    return subprocess.Popen([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE),
                             "--reco-algo", "dummy", "--reco-option", "sleep_s=0.02", "--nsides", "8:0", "64:12",
                             "--local-workers", "2", "--output-dir", str(tmp / "out"), "--cache-dir",
                             str(tmp / "cache"), "--no-products"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=tmp)


def _wait_for_fits(tmp: Path, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    manifest = tmp / "out" / "scan-manifest.json"
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "no fit within the time"
        try:
            if sum(p["items_received"] for p in json.loads(manifest.read_text())["progress"]) > 0:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_server_gracefully(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """Defect 6: SIGTERM was silent (exit 143, no line); now one line, a flushed checkpoint, a partial
    result under the partial name, and the exit code of the signal, within seconds."""
    proc = _server(tmp_path)
    try:
        _wait_for_fits(tmp_path, proc)
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err[-3000:]
    assert took < 10, f"took {took:.1f} s to stop"
    stops = [line for line in err.splitlines() if "scan stopped" in line]
    assert len(stops) == 1 and f"{sig.name} received" in stops[0], err[-3000:]
    out = tmp_path / "out"
    assert [p.name for p in out.glob("*.npz")] == ["run00136662.evt000035405932.neutrino_8_64.partial.npz"]
    assert json.loads((out / "scan-manifest.json").read_text())["stopped"] == f"{sig.name} received"
    (log,) = (tmp_path / "cache").glob("*.results.bin")
    assert log.stat().st_size > 0 and log.stat().st_size % 88 == 0  # flushed: whole records only
    print(f"{sig.name}: exit {proc.returncode} {took:.2f} s after the signal")


def test_the_skydriver_kill_switch_stops_the_server_with_exit_0(tmp_path: Path, status_stub: Any) -> None:
    stub = status_stub(alive_polls=1)
    proc = _server(tmp_path, {"SKYSCAN_SKYDRIVER_ADDRESS": stub.url, "SKYSCAN_SKYDRIVER_POLL_SEC": "3",
                              "SKYSCAN_SKYDRIVER_SCAN_ID": "sd-7"})
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - t0
    assert proc.returncode == 0, err[-3000:]
    assert "scan stopped (SkyDriver says scan sd-7 is deleted (kill switch))" in err
    assert stub.polls == 2
    assert [p.name for p in (tmp_path / "out").glob("*.npz")] == [
        "run00136662.evt000035405932.neutrino_8_64.partial.npz"]
    print(f"kill switch: exit 0 after {took:.2f} s (polls every 3 s, deleted at the 2nd poll)")

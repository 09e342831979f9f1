"""The broker edge (issue 12): poison-proof intake on both sides, no leftover queues, heartbeats, and a
server that exits whatever its broker connections do. Broker tests run on every broker where the
defect applies; results are compared with an embedded scan of the same spec."""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from backends import BROKERS, AfterReplies, Harness, ServerCrash, Wrapper, crash
from brokers import queue_exists, rabbitmq_queue_depth, settings, zstd_bomb
from conftest import RABBITMQ, need_broker
from reference import SMALL

from skymap_scanner.collector import FIT_FIELDS
from skymap_scanner.config import EnvConfig
from skymap_scanner.scan import ScanRunner, ScanSpec
from skymap_scanner.signing import seal
from skymap_scanner.transport import ServerTransport, mq_wire
from skymap_scanner.transport.mq import MQServerTransport, MQWorkerChannel, broker_settings, queue_names
from skymap_scanner.transport.mq_wire import UndecodableMessage, decode_payload, encode_payload
from skymap_scanner.transport.worker_loop import ServeStats, serve
from skymap_scanner.worker import PixelWorker

LIMIT_IN_TESTS = 512 * 1024  # compressed-size limit while testing (NATS refuses payloads over 1 MB)


def run(spec: ScanSpec, transport: ServerTransport) -> ScanRunner:
    runner = ScanRunner(spec, transport)
    try:
        runner.run()
    finally:
        runner.close()
        transport.close()
    return runner


def maps(runner: ScanRunner) -> dict[str, Any]:
    return {f"nside-{n}": np.sort(arr, order="index") for n, arr in runner.result().maps.items()}


@pytest.fixture(scope="module")
def embedded_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The SMALL scan run embedded (local worker processes): what every broker's result must equal."""
    h = Harness("embedded", tmp_path_factory.mktemp("embedded"))
    spec = h.spec(SMALL)
    return maps(run(spec, h.server(spec)))


def assert_same_maps(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert np.array_equal(got[key]["index"], want[key]["index"]), key
        for name in FIT_FIELDS:
            assert np.array_equal(got[key][name], want[key][name], equal_nan=True), f"{key}: {name}"


@pytest.fixture(params=[pytest.param(b, marks=pytest.mark.broker) for b in BROKERS])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path)
    yield h
    h.close()


# -- decoding, no broker ------------------------------------------------------------------------------

def test_a_good_payload_decodes() -> None:
    assert decode_payload(encode_payload({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}


@pytest.mark.parametrize("payload, why", [
    (b"this is not zstd", "not zstd"),
    (zstandard.ZstdCompressor().compress(b"{not json"), "not JSON"),
    (zstandard.ZstdCompressor().compress(b'{"headers": {}}'), "'data'"),
    (b"\x28\xb5\x2f\xfd" + b"\xff" * 40, "corrupt"),
    # seeded bytes, not os.urandom: pytest-xdist's workers must collect the same parameters
    (b"\x28\xb5\x2f\xfd" + random.Random(12).randbytes(LIMIT_IN_TESTS), "over the limit"),
], ids=["not-zstd", "not-json", "no-data", "corrupt", "over-limit"])
def test_an_undecodable_payload_is_refused_with_its_reason(payload: bytes, why: str) -> None:
    with pytest.raises(UndecodableMessage, match=why):
        decode_payload(payload, max_compressed=LIMIT_IN_TESTS)


def test_a_zstd_bomb_is_refused_without_unpacking_it() -> None:
    """Issue 12: a 33 KB zstd bomb (1 GB unpacked) took the server from 210 MB to 2.2 GB."""
    bomb = zstd_bomb(1 << 30)
    assert len(bomb) < 100_000
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, the peak so far
    with pytest.raises(UndecodableMessage, match="decompresses to more than"):
        decode_payload(bomb)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mib < 300, f"peak memory grew by {grown_mib:.0f} MiB"


# -- poison-proof intake, on every broker ---------------------------------------------------------------

def poison() -> list[bytes]:
    """Garbage, an oversized (otherwise valid) message and a zstd bomb: what a broker may hold."""
    big = encode_payload({"junk": os.urandom(LIMIT_IN_TESTS).hex()})
    assert len(big) > LIMIT_IN_TESTS
    return [b"garbage, not zstd", big, zstd_bomb(1 << 30)]


def test_undecodable_deliveries_are_dropped_on_both_sides(broker: Harness, embedded_small: dict[str, Any],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: one garbage message on the results queue froze the scan (requeued for ever); on the
    work queue it took the clients down. Now each is acked, dropped and counted; the scan finishes with
    the embedded scan's result."""
    monkeypatch.setattr(mq_wire, "MAX_COMPRESSED_BYTES", LIMIT_IN_TESTS)
    spec = broker.spec(SMALL)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    transport = broker.server(spec)
    bad = poison()
    broker.inject_raw_work(bad)
    broker.inject_raw_replies(bad)
    runner = ScanRunner(spec, transport)
    try:
        runner.run()
        # the clients' reconnects while the scan ran: once it is over, the end of the scan may cut a
        # session still waiting (on pulsar-lite, unsubscribing a subscription a consumer waits on times
        # out and drops that consumer), which is not what this test is about
        reconnects = sum(s.reconnects for s in broker.client_stats)
    finally:
        runner.close()
        transport.close()
    assert runner.engine.done
    assert_same_maps(maps(runner), embedded_small)
    assert runner.manifest()["dropped"]["bad_messages"] == len(bad)
    assert transport.undecodable_replies == len(bad)  # type: ignore[attr-defined]
    assert broker.work_dropped(transport) == len(bad)
    # the clients told the server (with their next "started" signal): the manifest counts them too
    assert runner.manifest()["dropped"]["work_messages_dropped_by_clients"] == len(bad)
    assert reconnects == 0  # the clients never lost their sessions to the garbage
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    assert grown_mib < 400, f"peak memory grew by {grown_mib:.0f} MiB (two 1 GB bombs were delivered)"


# -- no leftovers -----------------------------------------------------------------------------------------

class ClientsLeaveFirst(Wrapper):
    """Stops the harness's clients before the server's transport closes (real clients leave when told
    the scan is over; these would re-declare the queues when their sessions re-open)."""

    def __init__(self, inner: ServerTransport, harness: Harness) -> None:
        super().__init__(inner)
        self.harness = harness

    def close(self) -> None:
        for c in self.harness._channels:
            c.close()
        for th in self.harness._threads:
            th.join(timeout=15)
        self.inner.close()


@pytest.mark.broker
@pytest.mark.parametrize("name", ["rabbitmq", "nats", "pulsar"])
def test_the_scans_queues_are_gone_after_it_ends(name: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 12: every scan left its queues / streams. Now a scan that ends, or dies on the way (the
    server's close path runs in a finally), deletes them. Pulsar has no topic deletion over its binary
    protocol (and pulsar-lite no admin API): there the scan's subscription is removed."""
    h = Harness(name, tmp_path)
    try:
        spec = h.spec(SMALL)
        with caplog.at_level("INFO", logger="skymap_scanner.transport.mq"):
            run(spec, ClientsLeaveFirst(h.server(spec), h))
        assert "deleted the scan's queues" in caplog.text
        if name == "pulsar":
            return
        assert not any(queue_exists(name, q) for q in queue_names(spec.scan_id))
    finally:
        h.close()
    h2 = Harness(name, tmp_path)
    try:
        spec = h2.spec(SMALL)
        transport = ClientsLeaveFirst(h2.server(spec), h2)
        runner = ScanRunner(spec, AfterReplies(transport, 5, crash))
        with pytest.raises(ServerCrash):
            try:
                runner.run()
            finally:
                runner.close()
                transport.close()
        assert not any(queue_exists(name, q) for q in queue_names(spec.scan_id))
    finally:
        h2.close()


@pytest.mark.broker
@pytest.mark.parametrize("name", ["rabbitmq", "nats"])
def test_queues_left_by_a_crash_expire(name: str, tmp_path: Path) -> None:
    """The safety net for a server that dies without closing: RabbitMQ deletes the unused queue after
    ``x-expires``; a NATS stream drops messages older than ``max_age``."""
    h = Harness(name, tmp_path)
    base = broker_settings(h.cfg)
    s = type(base)(base.client, base.address, base.auth, base.timeout_to_clients_s, expiry_s=3.0)
    scan_id = f"expiry-{uuid.uuid4().hex[:12]}"
    t = MQServerTransport(s, scan_id, tmp_path / "startup.json", {})
    t.start()
    t.send({"hello": 1})
    time.sleep(1.0)
    t.close(delete=False)  # as if the server had died: nothing deletes the queues
    to_q, from_q = queue_names(scan_id)
    try:
        if name == "rabbitmq":
            deadline = time.monotonic() + 30
            while queue_exists(name, to_q) or queue_exists(name, from_q):
                assert time.monotonic() < deadline, "the queues did not expire"
                time.sleep(0.5)
        else:
            info = asyncio.run(_nats_stream_info(f"{to_q}-stream"))
            assert info.config.max_age == pytest.approx(3.0)
            deadline = time.monotonic() + 30
            while asyncio.run(_nats_stream_info(f"{to_q}-stream")).state.messages:
                assert time.monotonic() < deadline, "the stream's message did not expire"
                time.sleep(0.5)
    finally:
        h.close()
        from brokers import delete_queues

        delete_queues(name, [to_q, from_q])


@pytest.mark.broker
def test_a_queue_declared_with_other_arguments_is_used_as_it_is(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """A RabbitMQ queue of this name made without x-expires (by an older version, or a resumed scan
    started with SKYSCAN_MQ_QUEUE_EXPIRY_SEC=0) used to fail the server with PRECONDITION_FAILED."""
    import pika

    h = Harness("rabbitmq", tmp_path)
    scan_id = f"inequivalent-{uuid.uuid4().hex[:12]}"
    to_q, from_q = queue_names(scan_id)
    conn = pika.BlockingConnection(pika.ConnectionParameters(*RABBITMQ, connection_attempts=1))
    try:
        for q in (to_q, from_q):  # as stock mqclient declares them
            conn.channel().queue_declare(queue=q, durable=True, arguments={"x-queue-type": "quorum"})
    finally:
        conn.close()
    base = broker_settings(h.cfg)
    assert base.expiry_s > 0  # the default has the expiry
    t = MQServerTransport(base, scan_id, tmp_path / "startup.json", {})
    try:
        with caplog.at_level("WARNING", logger="skymap_scanner.transport.mq_wire"):
            t.start()
            t.send({"hello": 1})
            deadline = time.monotonic() + 20
            while rabbitmq_queue_depth(to_q) < 1:
                assert time.monotonic() < deadline, "the message was not published"
                time.sleep(0.2)
        assert any("exists with other arguments" in r.getMessage() for r in caplog.records)
    finally:
        t.close()
        h.close()
    assert not queue_exists("rabbitmq", to_q) and not queue_exists("rabbitmq", from_q)


async def _nats_stream_info(stream: str) -> Any:
    import nats

    nc = await nats.connect(settings("nats").address)
    try:
        return await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()


# -- heartbeats -----------------------------------------------------------------------------------------

@pytest.mark.broker
@pytest.mark.parametrize("name, fit_s", [("rabbitmq", 2.0), pytest.param("nats", 6.0, marks=pytest.mark.slow)])
def test_a_fit_of_several_heartbeats_keeps_the_connection(name: str, fit_s: float, tmp_path: Path) -> None:
    """SKYSCAN_MQ_HEARTBEAT_SEC=2 and one batch of 6 fits of ``fit_s`` (12 s: 6 heartbeats; NATS: 36 s,
    past JetStream's 30-s ack wait): the client's connection stays up (no reconnect), the batch is
    delivered once (no redelivery) and answered once."""
    h = Harness(name, tmp_path, heartbeat_s=2.0)
    assert broker_settings(h.cfg).heartbeat_s == 2.0
    spec = h.spec(SMALL)
    to_q, from_q = queue_names(spec.scan_id)
    calls: list[int] = []
    worker = PixelWorker(spec.event, "dummy", {"sleep_s": str(fit_s)}, "slow-client")

    def handle(work: Any) -> Any:
        calls.append(work.batch_id)
        return worker.handle(work)

    server = MQServerTransport(broker_settings(h.cfg), spec.scan_id, tmp_path / "startup.json", {})
    server.start()
    work = {"schema": "skymap-scanner-work/1", "scan_id": spec.scan_id, "batch_id": 7, "nside": 8, "attempt": 1,
            "pixel": [3, 4, 5, 6, 7, 8], "posvar": [0] * 6, "zenith": [0.5] * 6, "azimuth": [1.0] * 6,
            "seed": [None] * 6}
    server.send(seal(work, "work", spec.key))
    channel = MQWorkerChannel(broker_settings(h.cfg), to_q, from_q, "slow-client")
    stats = ServeStats()
    th = threading.Thread(target=lambda: asyncio.run(serve(channel, handle, spec.scan_id, spec.key, first_wait_s=30,
                                                           idle_s=60, session_idle_s=2, stats=stats)), daemon=True)
    th.start()
    results: list[Any] = []
    deadline = time.monotonic() + 6 * fit_s + 30
    try:
        while time.monotonic() < deadline and not any('"skymap-scanner-result/1"' in str(r) for r in results):
            results += server.receive(0.5)
        time.sleep(4)  # a redelivery would show within a few heartbeats
        assert calls == [7], f"the batch was handled {len(calls)} times"
        assert stats.reconnects == 0 and stats.done == 1
        got = [r for r in results if '"skymap-scanner-result/1"' in str(r)]
        assert len(got) == 1
        assert json.loads(got[0]["body"])["batch_id"] == 7
    finally:
        channel.close()
        server.close()
        th.join(timeout=5)
        h.close()


# -- the server exits whatever its broker connections do ---------------------------------------------

@pytest.mark.broker
def close_rabbitmq_connections_of(pid: int) -> int:
    """Have RabbitMQ close the connections of process ``pid`` (found by their local ports; only these:
    ``close_all_connections`` would also cut other tests' clients running in parallel). Returns how many."""
    ss = subprocess.run(["ss", "-tnpH", f"dport = :{RABBITMQ[1]}"], capture_output=True, text=True, timeout=30,
                        check=True).stdout
    ports = {line.split()[3].rsplit(":", 1)[1] for line in ss.splitlines() if f"pid={pid}," in line}
    listed = subprocess.run(["rabbitmqctl", "list_connections", "pid", "peer_port", "-q", "--no-table-headers"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
    n = 0
    for line in listed.splitlines():
        conn, _, port = line.strip().partition("\t")
        if port.strip() in ports:
            subprocess.run(["rabbitmqctl", "close_connection", conn, "test: broker closes connections"],
                           capture_output=True, timeout=60, check=True)
            n += 1
    return n


def test_the_server_exits_after_its_broker_connections_are_closed(tmp_path: Path) -> None:
    """Issue 12: once the broker had closed its idle connection, the server wrote its error and never
    exited. Here RabbitMQ closes every connection under a server that has no client; it must still end
    with its no-fit error (exit 2) within seconds of the timeout."""
    need_broker("RabbitMQ", *RABBITMQ)
    from reference import SAMPLE

    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update(SKYSCAN_BROKER_CLIENT="rabbitmq", SKYSCAN_BROKER_ADDRESS=RABBITMQ[0], SKYSCAN_MQ_HEARTBEAT_SEC="2",
               SKYSCAN_TIMEOUT_NO_FIT_SEC="12", SKYSCAN_PROGRESS_INTERVAL_SEC="1")
    doc = json.loads(SAMPLE.read_text())
    doc["event_id"] = int(uuid.uuid4().int % 2**31)
    event = tmp_path / "event.json"
    event.write_text(json.dumps(doc))
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(event),
                             *SMALL.server_args(), "--output-dir", str(tmp_path / "out"),
                             "--client-startup-json", str(tmp_path / "startup.json"), "--no-products"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=tmp_path, start_new_session=True)
    try:
        while not (tmp_path / "startup.json").exists():
            assert proc.poll() is None and time.monotonic() - t0 < 60, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
        time.sleep(2)
        # its publisher's connection for sure (long-lived); the consumer's too unless it was just re-opening
        # (with no client it re-opens its subscription every 2 s, so its port may change between the listings)
        assert close_rabbitmq_connections_of(proc.pid) >= 1
        t_closed = time.monotonic()
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server did not exit\n{(tmp_path / 'server.log').read_text()[-3000:]}")
        waited = time.monotonic() - t_closed
        assert rc == 2, (tmp_path / "server.log").read_text()[-3000:]
        assert waited < 12 + 15, f"exited {waited:.0f} s after its connections were closed"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        startup = tmp_path / "startup.json"
        if startup.exists():
            from brokers import delete_queues

            d = json.loads(startup.read_text())
            delete_queues("rabbitmq", [d["queue_to_clients"], d["queue_from_clients"]])


def test_the_heartbeat_comes_from_the_environment() -> None:
    assert broker_settings(EnvConfig(SKYSCAN_BROKER_ADDRESS="mq", SKYSCAN_MQ_HEARTBEAT_SEC=7.0)).heartbeat_s == 7.0

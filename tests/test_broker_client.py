"""The long-lived client's fit loop helpers (no broker needed): broker connections are serviced while a
long batch is fitted, and results and errors come back unchanged. Also the client CLI's argument errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from skymap_scanner.transport.mq import _MQSession
from skymap_scanner.transport.worker_loop import fit_keeping_alive


class FakePikaConnection:
    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[int] = set()

    def process_data_events(self, time_limit: float = 0) -> None:
        self.calls += 1
        self.threads.add(threading.get_ident())


class FakeSub:  # shaped like mq_wire.RawSub over RabbitMQ
    def __init__(self) -> None:
        self.connection = FakePikaConnection()

    async def keepalive(self) -> None:
        self.connection.process_data_events(time_limit=0)


class FakePub:  # shaped like mq_wire.RawPub over RabbitMQ
    def __init__(self) -> None:
        self.connection = FakePikaConnection()

    def pika_connection(self) -> FakePikaConnection:
        return self.connection


def test_connections_are_serviced_while_a_long_fit_runs() -> None:
    sub, pub = FakeSub(), FakePub()
    session = _MQSession(sub, pub)
    fit_threads: list[int] = []

    def slow_fit(work: Any) -> Any:
        fit_threads.append(threading.get_ident())
        time.sleep(0.5)
        return work.upper()

    async def main() -> tuple[str, int]:
        return await fit_keeping_alive(slow_fit, "batch", session, every_s=0.05), threading.get_ident()

    result, loop_thread = asyncio.run(main())
    assert result == "BATCH"
    for conn in (sub.connection, pub.connection):
        assert conn.calls >= 5  # ~every 0.05 s during 0.5 s
        assert conn.threads == {loop_thread}  # pika is only touched from the event-loop thread
    assert fit_threads and fit_threads[0] != loop_thread  # the fit ran elsewhere


def test_the_session_pump_services_connections_every_half_heartbeat() -> None:
    """While the loop is free (a fit in a thread), the session's own pump services the connections,
    whatever the worker loop's keep-alive period."""
    sub, pub = FakeSub(), FakePub()
    session = _MQSession(sub, pub)

    async def main() -> None:
        pump = asyncio.ensure_future(session.pump(0.05))
        await asyncio.to_thread(time.sleep, 0.5)
        pump.cancel()

    asyncio.run(main())
    assert sub.connection.calls >= 5 and pub.connection.calls >= 5


def test_a_quick_fit_is_not_slowed_and_errors_propagate() -> None:
    sub = FakeSub()
    session = _MQSession(sub, FakePub())

    async def quick() -> Any:
        return await fit_keeping_alive(lambda w: w * 2, 21, session, every_s=10)

    t0 = time.monotonic()
    assert asyncio.run(quick()) == 42 and time.monotonic() - t0 < 1
    assert sub.connection.calls == 0

    def broken(work: Any) -> Any:
        raise RuntimeError("worker bug")

    async def failing() -> Any:
        return await fit_keeping_alive(broken, 1, session, every_s=0.01)

    with pytest.raises(RuntimeError, match="worker bug"):
        asyncio.run(failing())


def _client(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "skymap_scanner.client", *args], capture_output=True, text=True,
                          env=full, timeout=60)


def test_client_cli_errors_are_one_line(tmp_path: Path) -> None:
    proc = _client(["--client-startup-json", str(tmp_path / "missing.json")])
    assert proc.returncode == 2 and "no such client-startup JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something/1"}))
    proc = _client(["--client-startup-json", str(bad)])
    assert proc.returncode == 2 and "not a skymap-scanner-client-startup/1 document" in proc.stderr
    proc = _client(["--client-startup-json", str(bad), "--infile", "x.json"])
    assert proc.returncode == 2 and "--infile and --outfile go together" in proc.stderr


def test_single_message_mode(tmp_path: Path) -> None:
    """--infile/--outfile (the EWMS pilot's task): one work message in, its reply out; work for another
    scan or a corrupt file is a one-line error (exit 2), so the pilot reports the task as failed."""
    from skymap_scanner.config import EnvConfig
    from skymap_scanner.events import load_event
    from skymap_scanner.intake import accept_result
    from skymap_scanner.scan import ScanSpec
    from skymap_scanner.signing import Verifier, new_key, seal
    from skymap_scanner.transport.mq import make_server_transport

    sample = Path(__file__).resolve().parent.parent / "resources" / "sample_events"
    spec = ScanSpec(load_event(next(sample.glob("*.json"))), "dummy", {}, "8:0")
    transport = make_server_transport(EnvConfig(SKYSCAN_BROKER_ADDRESS="127.0.0.1"), spec, tmp_path / "s.json")
    startup = tmp_path / "startup.json"
    startup.write_text(json.dumps(transport.startup_doc))
    work = {"schema": "skymap-scanner-work/1", "scan_id": spec.scan_id, "batch_id": 7, "nside": 8, "attempt": 1,
            "pixel": [3, 4], "posvar": [0, 1], "zenith": [0.5, 0.5], "azimuth": [1.0, 1.0], "seed": [None, None]}
    infile, outfile = tmp_path / "in.json", tmp_path / "out.json"
    infile.write_text(json.dumps(seal(work, "work", spec.key)))
    proc = _client(["--client-startup-json", str(startup), "--infile", str(infile), "--outfile", str(outfile)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    reply = accept_result(outfile.read_bytes(), spec.scan_id, Verifier(spec.key, "result"))  # signed
    assert reply.scan_id == spec.scan_id and reply.batch_id == 7 and reply.pixels.tolist() == [3, 4]
    assert reply.errors == (None, None) and reply.fits[1, 0] - reply.fits[0, 0] == pytest.approx(0.01)

    infile.write_text(json.dumps(work))  # unsigned: refused
    proc = _client(["--client-startup-json", str(startup), "--infile", str(infile), "--outfile", str(tmp_path / "o1")])
    assert proc.returncode == 2 and "unsigned" in proc.stderr and not (tmp_path / "o1").exists()
    infile.write_text(json.dumps(seal(work, "work", new_key())))  # signed with another key: refused
    proc = _client(["--client-startup-json", str(startup), "--infile", str(infile), "--outfile", str(tmp_path / "o1")])
    assert proc.returncode == 2 and "wrong signature" in proc.stderr and not (tmp_path / "o1").exists()
    assert spec.key.hex() not in proc.stderr
    infile.write_text(json.dumps(seal({**work, "scan_id": "another-scan"}, "work", spec.key)))
    proc = _client(["--client-startup-json", str(startup), "--infile", str(infile), "--outfile", str(tmp_path / "o2")])
    assert proc.returncode == 2 and "another-scan" in proc.stderr and "Traceback" not in proc.stderr
    infile.write_text("{not json")
    proc = _client(["--client-startup-json", str(startup), "--infile", str(infile), "--outfile", str(tmp_path / "o3")])
    assert proc.returncode == 2 and "not JSON" in proc.stderr and not (tmp_path / "o3").exists()

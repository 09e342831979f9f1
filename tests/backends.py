"""Every transport backend behind one harness, so that the contract tests are written once.

``stub`` and ``embedded`` need nothing; ``rabbitmq``, ``nats`` and ``pulsar`` (pulsar-lite, started here
when none answers) talk to the real brokers (their clients
run the real worker loop in threads of the test process, over the real broker). Each harness uses a
scan id of its own, so its queues are its own, and deletes them at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from brokers import BROKER_ADDRESSES, broker_address, delete_queues, publish, publish_raw, start_pulsar_lite
from conftest import need_broker
from reference import SAMPLE, Reference

from skymap_scanner.client.__main__ import relay_scan_over
from skymap_scanner.config import EnvConfig
from skymap_scanner.events import load_event
from skymap_scanner.messages import ResultMessage, WorkMessage
from skymap_scanner.scan import ScanSpec
from skymap_scanner.transport import ServerTransport
from skymap_scanner.transport.mq import MQServerTransport, MQWorkerChannel, broker_settings, queue_names
from skymap_scanner.transport.registry import TransportOptions, make_server_transport
from skymap_scanner.transport.worker_loop import ServeStats, serve
from skymap_scanner.worker import PixelWorker

BROKERS = ("rabbitmq", "nats", "pulsar")
BACKENDS = ("stub", "embedded", *BROKERS)
EVENT = load_event(SAMPLE)


class SimulatedCrash(RuntimeError):
    """A worker dying in the middle of a batch (before its reply went out)."""


class Deaths:
    """Worker deaths still to happen: the next batches taken, by whichever worker takes them, fail."""

    def __init__(self) -> None:
        self.pending = 0
        self.lock = threading.Lock()


class FlakyHandler:
    """A worker's handler that fails on a batch it takes while ``deaths`` has one pending."""

    def __init__(self, handle: Callable[[WorkMessage], ResultMessage], deaths: Deaths) -> None:
        self.handle = handle
        self.deaths = deaths
        self.failed = 0

    def __call__(self, work: WorkMessage) -> ResultMessage:
        with self.deaths.lock:
            fail = self.deaths.pending > 0
            if fail:
                self.deaths.pending -= 1
                self.failed += 1
        if fail:
            raise SimulatedCrash(f"worker died in batch {work.batch_id}")
        return self.handle(work)


class Harness:
    """One backend: makes server transports for a scan and runs its workers."""

    def __init__(self, name: str, tmp: Path, heartbeat_s: float = 30.0) -> None:
        self.name = name
        self.tmp = tmp
        self.scan_id = f"contract-{name}-{uuid.uuid4().hex[:12]}"
        self.cfg = EnvConfig()
        if name in BROKERS:
            if name == "pulsar":
                start_pulsar_lite()
            need_broker(name, *BROKER_ADDRESSES[name])
            self.cfg = EnvConfig(SKYSCAN_BROKER_CLIENT=name, SKYSCAN_BROKER_ADDRESS=broker_address(name),
                                 SKYSCAN_MQ_HEARTBEAT_SEC=heartbeat_s)
        self.handlers: list[FlakyHandler] = []
        self.deaths = Deaths()
        self.client_stats: list[ServeStats] = []
        self._channels: list[MQWorkerChannel] = []
        self._threads: list[threading.Thread] = []

    @property
    def is_broker(self) -> bool:
        return self.name in BROKERS

    # -- the scan ---------------------------------------------------------------------------------
    def spec(self, ref: Reference, reco: str | None = None, reco_options: dict[str, str] | None = None,
             **kw: Any) -> ScanSpec:
        kw.setdefault("lease_min_s", 5.0)
        return ScanSpec(EVENT, reco or ref.reco, reco_options or ref.reco_options, " ".join(ref.nsides),
                        max_attempts=ref.max_attempts, progress_interval_s=3600, result_interval_s=3600,
                        timeout_from_clients_s=90, scan_id=self.scan_id, **kw)

    def server(self, spec: ScanSpec) -> ServerTransport:
        """A started server-side transport, chosen by the registry (and its workers running)."""
        opts = TransportOptions(local_workers=2, startup_json=self.tmp / "startup.json" if self.is_broker else None)
        t = make_server_transport(self.cfg, spec, opts, backend=self.name)
        if self.name == "stub":
            handler = FlakyHandler(t.handler, self.deaths)  # type: ignore[attr-defined]
            t.handler = handler  # type: ignore[attr-defined]
            self.handlers = [handler]
        t.start()
        if self.is_broker and not self._threads:
            self._start_clients(spec, 2)
        return t

    def _start_clients(self, spec: ScanSpec, n: int) -> None:
        """``n`` clients running the real worker loop over the broker, in threads of this process."""
        to_q, from_q = queue_names(spec.scan_id)
        settings = broker_settings(self.cfg)
        for i in range(n):
            handler = FlakyHandler(PixelWorker(spec.event, spec.reco_name, spec.reco_options, f"client-{i}").handle,
                                   self.deaths)
            channel = MQWorkerChannel(settings, to_q, from_q, f"client-{i}")
            stats = ServeStats()
            async def client(c: MQWorkerChannel = channel, h: Any = handler, s: ServeStats = stats) -> None:
                await serve(c, h, spec.scan_id, spec.key, first_wait_s=120, idle_s=120, session_idle_s=1, stats=s)
                if s.scan_over is not None:  # as skymap_scanner.client does: pass it on to the next client
                    await relay_scan_over(settings, to_q, s.scan_over)

            th = threading.Thread(target=lambda coro=client: asyncio.run(coro()), daemon=True)
            th.start()
            self.handlers.append(handler)
            self.client_stats.append(stats)
            self._channels.append(channel)
            self._threads.append(th)

    # -- faults -----------------------------------------------------------------------------------
    def worker_dies_mid_batch(self, transport: ServerTransport) -> None:
        """A worker dies holding a batch: in-process workers raise before replying; an embedded worker
        process is SIGKILLed (the real thing)."""
        if self.name == "embedded":
            procs = transport._procs  # type: ignore[attr-defined]
            os.kill(next(iter(procs)).pid, signal.SIGKILL)
        else:
            # the next batch taken dies, whichever worker takes it (a named one might take none: on Pulsar
            # one consumer was seen to get every remaining batch)
            with self.deaths.lock:
                self.deaths.pending += 1

    def inject_work(self, transport: ServerTransport, raws: list[Any]) -> None:
        """Raw payloads straight onto the workers' input, past the server."""
        if self.name == "stub":
            transport.queues.work.extend(raws)  # type: ignore[attr-defined]
        elif self.name == "embedded":
            for raw in raws:
                transport._in.put(raw)  # type: ignore[attr-defined]
        else:
            publish(queue_names(self.scan_id)[0], raws, self.name)

    def inject_replies(self, transport: ServerTransport, raws: list[Any]) -> ServerTransport:
        """Raw payloads onto the server's input (embedded workers own their pipes: there the payloads
        are added to what the transport receives)."""
        if self.name == "stub":
            transport.queues.replies.extend(raws)  # type: ignore[attr-defined]
        elif self.name == "embedded":
            return Injected(transport, raws)
        else:
            publish(queue_names(self.scan_id)[1], raws, self.name)
        return transport

    def inject_raw_work(self, raws: list[bytes]) -> None:
        """Raw bytes (not mqclient messages) onto the work queue."""
        publish_raw(queue_names(self.scan_id)[0], raws, self.name)

    def inject_raw_replies(self, raws: list[bytes]) -> None:
        """Raw bytes (not mqclient messages) onto the results queue."""
        publish_raw(queue_names(self.scan_id)[1], raws, self.name)

    def work_dropped(self, transport: ServerTransport) -> int | None:
        """Work messages the workers refused (None where the workers are other processes)."""
        if self.name == "stub":
            return transport.stats.dropped  # type: ignore[attr-defined, no-any-return]
        if self.is_broker:
            return sum(s.dropped for s in self.client_stats)
        return None

    def close(self) -> None:
        for c in self._channels:
            c.close()
        for th in self._threads:
            # a client waiting for a delivery notices within its session's idle time (1 s); it need not be
            # waited for: deleting its queues ends its session at once, and its thread is a daemon. On
            # Pulsar it is: a thread still inside the Pulsar library when Python exits aborts the process
            th.join(timeout=20.0 if self.name == "pulsar" else 0.1)
        if self.is_broker:
            delete_queues(self.name, list(queue_names(self.scan_id)))


class Wrapper(ServerTransport):
    """A server transport around another, for faults made on the server's side of the wire."""

    def __init__(self, inner: ServerTransport) -> None:
        self.inner = inner
        self.mode = inner.mode

    @property  # type: ignore[override]
    def max_in_flight_batches(self) -> int:
        return self.inner.max_in_flight_batches

    def start(self) -> None:
        self.inner.start()

    def send(self, payload: dict[str, Any]) -> None:
        self.inner.send(payload)

    def receive(self, timeout_s: float) -> list[Any]:
        return self.inner.receive(timeout_s)

    def maintain(self) -> list[str]:
        return self.inner.maintain()

    def lost_workers(self) -> set[str]:
        return self.inner.lost_workers()

    def close(self) -> None:
        self.inner.close()


class Injected(Wrapper):
    def __init__(self, inner: ServerTransport, raws: list[Any]) -> None:
        super().__init__(inner)
        self.pending = list(raws)

    def receive(self, timeout_s: float) -> list[Any]:
        out, self.pending = self.pending + self.inner.receive(timeout_s), []
        return out


class Lossy(Wrapper):
    """Loses the work messages numbered in ``lose`` (1-based) on the way out."""

    def __init__(self, inner: ServerTransport, lose: set[int]) -> None:
        super().__init__(inner)
        self.lose, self.sent, self.lost = lose, 0, 0

    def send(self, payload: dict[str, Any]) -> None:
        self.sent += 1
        if self.sent in self.lose:
            self.lost += 1
            return
        self.inner.send(payload)


class Doubling(Wrapper):
    """Every reply arrives twice."""

    doubled = 0

    def receive(self, timeout_s: float) -> list[Any]:
        out = self.inner.receive(timeout_s)
        self.doubled += len(out)
        return [r for raw in out for r in (raw, raw)]


class AfterReplies(Wrapper):
    """Calls ``action`` once, when ``n`` replies have come in."""

    def __init__(self, inner: ServerTransport, n: int, action: Callable[[], None]) -> None:
        super().__init__(inner)
        self.n, self.action, self.seen, self.fired = n, action, 0, False

    def receive(self, timeout_s: float) -> list[Any]:
        out = self.inner.receive(timeout_s)
        self.seen += len(out)
        if not self.fired and self.seen >= self.n:
            self.fired = True
            self.action()
        return out


class ServerCrash(BaseException):
    """The server process dying (not an Exception: nothing on the way should catch it)."""


def crash() -> None:
    raise ServerCrash("server killed")


__all__ = ["BACKENDS", "BROKERS", "AfterReplies", "Doubling", "Harness", "Injected", "Lossy", "MQServerTransport",
           "ServerCrash", "SimulatedCrash", "crash"]

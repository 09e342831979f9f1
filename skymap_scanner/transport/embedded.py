"""Embedded transport: N local worker processes, fed through one queue, answering on their own pipes.

Messages cross the process boundary as the same JSON bytes the broker mode sends.
A worker that dies (e.g. a reco that kills its process) is replaced; its lost
batch is re-sent by the scan loop's lease book.

Known limit (from how ``multiprocessing.Queue.get`` works, not reproduced in a test): a worker killed
from outside (SIGKILL, the OOM killer) while it waits for work on the shared queue dies holding the
queue's read lock, so the other workers would wait forever and the scan would stop only after
SKYSCAN_MQ_TIMEOUT_FROM_CLIENTS. A worker dying inside a fit, the usual case, is handled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import queue
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from ..errors import SkyScanError
from .contract import ServerTransport, WorkerChannel, WorkerSession
from .worker_loop import serve

LOGGER = logging.getLogger(__name__)


class _PipeSession(WorkerSession):
    def __init__(self, channel: EmbeddedWorkerChannel) -> None:
        self.channel = channel

    async def __aiter__(self) -> AsyncIterator[Any]:  # type: ignore[override]
        while True:
            try:  # bounded, so no executor thread outlives its process's exit (see mq._Publisher)
                raw = await asyncio.to_thread(self.channel.in_q.get, True, 1.0)
            except queue.Empty:
                continue
            if raw is None:  # the server's stop sign
                self.channel.stopped = True
                return
            yield raw

    async def reply(self, payload: dict[str, Any]) -> None:
        self.channel.out.send_bytes(json.dumps(payload, separators=(",", ":")).encode())


class EmbeddedWorkerChannel(WorkerChannel):
    """The worker side: work from the shared queue, replies on this worker's own pipe. No acks: a
    batch lost with its worker comes back through the server's lease."""

    def __init__(self, in_q: Any, out: Connection, name: str) -> None:
        self.in_q, self.out, self.name = in_q, out, name
        self.stopped = False

    @property
    def closed(self) -> bool:
        return self.stopped

    @asynccontextmanager
    async def session(self, idle_s: float) -> AsyncIterator[WorkerSession]:
        yield _PipeSession(self)


def _worker_main(event_doc: dict[str, Any], reco_name: str, reco_options: dict[str, str],
                 in_q: Any, out: Connection, name: str, scan_id: str | None, key: bytes) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C and stops us
    from ..events import event_from_json_dict
    from ..worker import PixelWorker

    try:
        worker = PixelWorker(event_from_json_dict(event_doc, "<scan event>"), reco_name, reco_options, name)
    except Exception as e:
        out.send_bytes(f"failed:{name}:{type(e).__name__}: {e}".encode())
        return
    out.send_bytes(f"ready:{name}".encode())
    asyncio.run(serve(EmbeddedWorkerChannel(in_q, out, name), worker.handle, scan_id, key, log_every=0))


class EmbeddedTransport(ServerTransport):
    """Work goes out on one shared queue; each worker answers on a pipe of its own, so a worker that
    dies mid-write (a reco calling ``os._exit``, a SIGKILL) can corrupt or lock only its own pipe,
    never the others' replies."""

    mode = "embedded"

    def __init__(self, event_doc: dict[str, Any], reco_name: str, reco_options: Mapping[str, str] | None,
                 n_workers: int, scan_id: str | None, key: bytes) -> None:
        if n_workers < 1:
            raise ValueError("n_workers must be >= 1")
        self._ctx = mp.get_context("spawn")
        self._args = (event_doc, reco_name, dict(reco_options or {}))
        self.scan_id = scan_id
        self._key = key
        self.n_workers = n_workers
        self.max_in_flight_batches = 3 * n_workers
        self._in: Any = self._ctx.Queue()
        self._procs: dict[Any, Connection] = {}  # process -> the read end of its result pipe
        self._names: dict[Any, str] = {}  # process -> its worker name (as in its "started" signals)
        self._lost: set[str] = set()
        self._spawned = 0
        self.replaced = 0  # workers that died and were replaced

    def _spawn(self) -> None:
        self._spawned += 1
        reader, writer = self._ctx.Pipe(duplex=False)
        p = self._ctx.Process(target=_worker_main, args=(*self._args, self._in, writer,
                                                        f"local-worker-{self._spawned}", self.scan_id, self._key),
                             daemon=True)
        p.start()
        writer.close()  # only the worker writes: its death then reads as EOF here
        self._procs[p] = reader
        self._names[p] = f"local-worker-{self._spawned}"

    def _read(self, timeout_s: float) -> list[bytes]:
        """Messages from every worker pipe that has one, waiting up to ``timeout_s``."""
        out = []
        for ready in wait(list(self._procs.values()), timeout=timeout_s):
            reader = cast(Connection, ready)
            try:
                while reader.poll():
                    out.append(reader.recv_bytes())
            except (EOFError, OSError):
                pass  # the worker died (maybe mid-message); maintain() replaces it
        return out

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the workers and wait until each has prepared the event."""
        from ..threads import single_threaded_math

        single_threaded_math()  # inherited by the spawned workers
        for _ in range(self.n_workers):
            self._spawn()
        ready = 0
        deadline = time.monotonic() + timeout_s
        while ready < self.n_workers:
            if time.monotonic() > deadline:
                self.close()
                raise SkyScanError(f"local workers did not get ready within {timeout_s:.0f} s")
            for note in self._read(timeout_s=0.5):
                if note.startswith(b"failed:"):
                    self.close()
                    raise SkyScanError("a local worker could not prepare the event: "
                                       + note.decode(errors="replace").split(":", 2)[2])
                ready += 1
            if ready < self.n_workers and not all(p.is_alive() for p in self._procs):
                self.close()
                raise SkyScanError("a local worker died while preparing the event")
        LOGGER.info("%d local workers ready", ready)

    def send(self, payload: dict[str, Any]) -> None:
        self._in.put(json.dumps(payload, separators=(",", ":")).encode())

    def receive(self, timeout_s: float) -> list[Any]:
        # replacements announce themselves too: those notes are not results
        return [m for m in self._read(timeout_s) if not m.startswith((b"ready:", b"failed:"))]

    def maintain(self) -> list[str]:
        notes = []
        for p in [p for p in self._procs if not p.is_alive()]:
            self._procs.pop(p).close()
            self._lost.add(self._names.pop(p, ""))
            self.replaced += 1
            notes.append(f"local worker {p.name} exited with code {p.exitcode}; starting a replacement")
            self._spawn()
        return notes

    def lost_workers(self) -> set[str]:
        lost, self._lost = self._lost, set()
        return lost

    def close(self) -> None:
        # work still queued is nobody's now (the scan ended or was stopped): drop it, so that each worker
        # stops after the batch in hand instead of fitting the queue first (best effort: a put not yet
        # flushed by the queue's feeder thread may remain)
        try:
            while True:
                self._in.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass
        for _ in self._procs:
            try:
                self._in.put(None)
            except (OSError, ValueError):
                pass
        for p, reader in self._procs.items():
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
            reader.close()
        self._procs.clear()
        self._in.cancel_join_thread()
        self._in.close()

"""Embedded transport: N local worker processes fed through multiprocessing queues.

Messages cross the process boundary as the same JSON bytes the broker mode sends.
A worker that dies (e.g. a reco that kills its process) is replaced; its lost
batch is re-sent by the scan loop's lease book.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import queue
import time
from collections.abc import Mapping
from typing import Any

from ..errors import SkyScanError
from ..messages import decode_work, encode
from . import Transport

LOGGER = logging.getLogger(__name__)


def _worker_main(event_doc: dict[str, Any], reco_name: str, reco_options: dict[str, str],
                 in_q: Any, out_q: Any, name: str) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C and stops us
    from ..events import event_from_json_dict
    from ..worker import PixelWorker

    try:
        worker = PixelWorker(event_from_json_dict(event_doc, "<scan event>"), reco_name, reco_options, name)
    except Exception as e:
        out_q.put(f"failed:{name}:{type(e).__name__}: {e}".encode())
        return
    out_q.put(f"ready:{name}".encode())
    while True:
        raw = in_q.get()
        if raw is None:
            return
        out_q.put(encode(worker.handle(decode_work(raw))))


class EmbeddedTransport(Transport):
    mode = "embedded"

    def __init__(self, event_doc: dict[str, Any], reco_name: str, reco_options: Mapping[str, str] | None,
                 n_workers: int) -> None:
        if n_workers < 1:
            raise ValueError("n_workers must be >= 1")
        self._ctx = mp.get_context("spawn")
        self._args = (event_doc, reco_name, dict(reco_options or {}))
        self.n_workers = n_workers
        self.max_in_flight_batches = 3 * n_workers
        self._in: Any = self._ctx.Queue()
        self._out: Any = self._ctx.Queue()
        self._procs: list[Any] = []
        self._spawned = 0

    def _spawn(self) -> None:
        self._spawned += 1
        p = self._ctx.Process(target=_worker_main, args=(*self._args, self._in, self._out,
                                                        f"local-worker-{self._spawned}"), daemon=True)
        p.start()
        self._procs.append(p)

    def start(self, timeout_s: float = 300.0) -> None:
        """Start the workers and wait until each has prepared the event."""
        from ..utils import single_threaded_math

        single_threaded_math()  # inherited by the spawned workers
        for _ in range(self.n_workers):
            self._spawn()
        ready = 0
        deadline = time.monotonic() + timeout_s
        while ready < self.n_workers:
            try:
                note = self._out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                raise SkyScanError(f"local workers did not get ready within {timeout_s:.0f} s") from None
            if note.startswith(b"failed:"):
                self.close()
                raise SkyScanError("a local worker could not prepare the event: "
                                   + note.decode(errors="replace").split(":", 2)[2])
            ready += 1
        LOGGER.info("%d local workers ready", ready)

    def send(self, payload: dict[str, Any]) -> None:
        self._in.put(json.dumps(payload, separators=(",", ":")).encode())

    def receive(self, timeout_s: float) -> list[Any]:
        out = []
        try:
            out.append(self._out.get(timeout=timeout_s))
            while True:
                out.append(self._out.get_nowait())
        except queue.Empty:
            pass
        return [m for m in out if not m.startswith((b"ready:", b"failed:"))]  # replacements announce too

    def maintain(self) -> list[str]:
        notes = []
        for p in list(self._procs):
            if not p.is_alive():
                self._procs.remove(p)
                notes.append(f"local worker {p.name} exited with code {p.exitcode}; starting a replacement")
                self._spawn()
        return notes

    def close(self) -> None:
        for _ in self._procs:
            try:
                self._in.put(None)
            except (OSError, ValueError):
                pass
        for p in self._procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
        self._procs.clear()
        for q in (self._in, self._out):
            q.cancel_join_thread()
            q.close()

"""The in-memory stub transport (the idea of dramatiq's ``StubBroker``): no processes, no broker, no
clock; deterministic. Work waits in a list until :meth:`StubTransport.join` runs the worker loop
(:func:`~skymap_scanner.transport.worker_loop.serve`) in this process over every queued message;
:meth:`StubTransport.receive` joins first unless ``auto_join=False``.

It keeps the broker promises of the contract: payloads travel as JSON bytes, a delivery is acknowledged
only when the worker asks for the next one, and a worker failing mid-message gives its delivery back.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from ..events.model import Event
from ..messages import ResultMessage, WorkMessage
from ..signing import new_key
from .backoff import Backoff
from .contract import ServerTransport, WorkerChannel, WorkerSession
from .worker_loop import ServeStats, serve

Handler = Callable[[WorkMessage], ResultMessage]


class StubQueues:
    """The two in-memory queues and the unacknowledged deliveries."""

    def __init__(self) -> None:
        self.work: deque[Any] = deque()
        self.replies: deque[Any] = deque()
        self.unacked: list[Any] = []
        self.delivered = 0
        self.acked = 0
        self.requeued = 0


class _StubSession(WorkerSession):
    def __init__(self, queues: StubQueues) -> None:
        self.q = queues

    async def __aiter__(self) -> AsyncIterator[Any]:  # type: ignore[override]
        while self.q.work:
            self._ack()
            raw = self.q.work.popleft()
            self.q.unacked.append(raw)
            self.q.delivered += 1
            yield raw
        self._ack()

    def _ack(self) -> None:
        self.q.acked += len(self.q.unacked)
        self.q.unacked.clear()

    def give_back(self) -> None:
        self.q.requeued += len(self.q.unacked)
        self.q.work.extendleft(reversed(self.q.unacked))
        self.q.unacked.clear()

    async def reply(self, payload: dict[str, Any]) -> None:
        self.q.replies.append(json.dumps(payload, separators=(",", ":")).encode())


class StubChannel(WorkerChannel):
    """The worker side: sessions over the in-memory work queue; closed once a session finds it empty."""

    def __init__(self, queues: StubQueues, name: str = "stub-worker") -> None:
        self.q = queues
        self.name = name
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def session(self, idle_s: float) -> AsyncIterator[WorkerSession]:
        s = _StubSession(self.q)
        try:
            yield s
            s._ack()  # a clean end acknowledges the last delivery, as mqclient's does
        except BaseException:
            s.give_back()  # like a broker's nack: the delivery is queued again
            raise
        finally:
            if not self.q.work:
                self._closed = True


class StubTransport(ServerTransport):
    """Server side of the stub; the worker is a :class:`~skymap_scanner.worker.PixelWorker` in this
    process (or any ``handler``)."""

    mode = "stub"

    def __init__(self, event: Event | None = None, reco_name: str = "", reco_options: Mapping[str, str] | None = None,
                 scan_id: str | None = None, key: bytes | None = None, *, handler: Handler | None = None, max_in_flight_batches: int = 8,
                 auto_join: bool = True) -> None:
        if handler is None:
            if event is None:
                raise ValueError("a StubTransport needs an event and a reco, or a handler")
            from ..worker import PixelWorker

            handler = PixelWorker(event, reco_name, reco_options, "stub-worker").handle
        self.handler: Handler = handler
        self.scan_id = scan_id
        self.key = key or new_key()
        self.max_in_flight_batches = max_in_flight_batches
        self.auto_join = auto_join
        self.queues = StubQueues()
        self.stats = ServeStats()
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    def send(self, payload: dict[str, Any]) -> None:
        self.queues.work.append(json.dumps(payload, separators=(",", ":")).encode())

    def join(self) -> ServeStats:
        """Run the worker loop until every queued work message is handled (replies are then waiting)."""
        # no clock in the stub: a failing handler is retried at once (a broker would wait its back-off)
        quick = Backoff(first_s=1e-4, max_s=1e-4)
        stats = asyncio.run(serve(StubChannel(self.queues), self.handler, self.scan_id, self.key, backoff=quick, log_every=0))
        self.stats.done += stats.done
        self.stats.dropped += stats.dropped
        self.stats.reconnects += stats.reconnects
        return stats

    def receive(self, timeout_s: float) -> list[Any]:
        if self.auto_join and self.queues.work:
            self.join()
        out = list(self.queues.replies)
        self.queues.replies.clear()
        return out

    def close(self) -> None:
        self.closed = True

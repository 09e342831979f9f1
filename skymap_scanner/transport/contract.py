"""The transport contract: what the scan loop needs from the server side, and what the one worker loop
(:func:`skymap_scanner.transport.worker_loop.serve`) needs from the worker side.

Every backend (embedded worker processes, the in-memory stub, RabbitMQ / NATS / Pulsar through
oms-mqclient) implements both halves; ``tests/test_transport_contract.py`` checks the promises below
once, on every backend.

Server side (:class:`ServerTransport`): work payloads out, raw result payloads in. A payload sent may be
delivered more than once (redelivery, a re-sent lease) and a reply may be anything at all (garbage,
another scan's, a duplicate): the scan loop validates and deduplicates, the transport only carries.

Worker side (:class:`WorkerChannel`): a channel opens *sessions*; iterating a session yields raw work
payloads. The delivery being handled is acknowledged only when the loop asks for the next one, which it
does after the reply went out, so work taken by a worker that fails before replying comes back (the
broker redelivers it, or the server's lease re-sends it). An exception out of the session's ``async
with`` gives the delivery back at once where the backend can.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any


class ServerTransport(ABC):
    """Send work payloads (JSON-ready dicts), receive result payloads."""

    mode: str = "?"
    #: how many batches the scan loop keeps in flight
    max_in_flight_batches: int = 8

    @abstractmethod
    def start(self) -> None:
        """Connect / start workers."""

    @abstractmethod
    def send(self, payload: dict[str, Any]) -> None:
        """Send one work message."""

    @abstractmethod
    def receive(self, timeout_s: float) -> list[Any]:
        """Result payloads that arrived (raw: bytes, str or dict), waiting up to ``timeout_s``."""

    def maintain(self) -> list[str]:
        """Periodic upkeep (e.g. replace dead workers); returns notes to log."""
        return []

    def lost_workers(self) -> set[str]:
        """Names of workers found dead since the last call (their batches need not wait for a lease)."""
        return set()

    @abstractmethod
    def close(self) -> None:
        """Stop workers / disconnect; safe to call twice."""


class WorkerSession(ABC):
    """One stretch of deliveries on an open connection (see the module docstring for acks)."""

    #: True if a long fit must let :meth:`keepalive` service the connection (pika heartbeats)
    needs_keepalive: bool = False

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[Any]:
        """Raw work payloads (bytes, str or dict), until the session ends (idle, closed)."""

    @abstractmethod
    async def reply(self, payload: dict[str, Any]) -> None:
        """Send the reply (a signed envelope, see :mod:`skymap_scanner.signing`) for the delivery being handled."""

    async def keepalive(self) -> None:  # noqa: B027 - optional hook; most backends need nothing
        """Service the connection while a fit runs in a thread."""


class WorkerChannel(ABC):
    """Where a worker gets work and sends replies."""

    #: names the worker in logs and in the manifest's per-client counts
    name: str = "worker"

    @abstractmethod
    def session(self, idle_s: float) -> AbstractAsyncContextManager[WorkerSession]:
        """Open a session that ends after ``idle_s`` s without a delivery (or when the channel closes)."""

    @property
    def closed(self) -> bool:
        """True once no more work will come: the worker loop returns."""
        return False

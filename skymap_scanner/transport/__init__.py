"""Transports carry work messages to workers and results back.

One small interface (:class:`Transport`), two kinds of backend: ``embedded``
(local worker processes) and ``mq`` (a message broker through oms-mqclient).
The scan loop in :mod:`skymap_scanner.scan` is the same for both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Transport(ABC):
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

    @abstractmethod
    def close(self) -> None:
        """Stop workers / disconnect; safe to call twice."""

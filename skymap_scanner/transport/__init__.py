"""Transports carry work messages to workers and results back.

The contract (:mod:`.contract`) has a server side (:class:`ServerTransport`, driven by the scan loop in
:mod:`skymap_scanner.scan`) and a worker side (:class:`WorkerChannel`, driven by the one worker loop
:func:`.worker_loop.serve`). The backends: ``embedded`` (local worker processes), ``stub`` (in memory,
for tests), and ``rabbitmq`` / ``nats`` / ``pulsar`` (a message broker through oms-mqclient); the
registry (:mod:`.registry`) picks one from the configuration.
"""

from __future__ import annotations

from .contract import ServerTransport, WorkerChannel, WorkerSession

Transport = ServerTransport  # the name the scan loop has always used

__all__ = ["ServerTransport", "Transport", "WorkerChannel", "WorkerSession"]

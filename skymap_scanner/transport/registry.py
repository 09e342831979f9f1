"""Which transport a scan uses, chosen from the configuration in one place.

No ``SKYSCAN_BROKER_ADDRESS``: ``embedded``; with one: the broker ``SKYSCAN_BROKER_CLIENT`` names
(``rabbitmq``, ``nats``, ``pulsar``). ``stub`` (in memory) is for tests and is only chosen by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import BROKER_CLIENTS, EnvConfig
from ..errors import ConfigError
from .contract import ServerTransport

if TYPE_CHECKING:
    from ..scan import ScanSpec


@dataclass(frozen=True)
class TransportOptions:
    """What the command line adds to the configuration."""

    local_workers: int = 1  # embedded
    startup_json: Path | None = None  # brokers: where the client-startup JSON goes


Factory = Callable[[EnvConfig, "ScanSpec", TransportOptions], ServerTransport]


def _embedded(cfg: EnvConfig, spec: ScanSpec, opts: TransportOptions) -> ServerTransport:
    from ..events import native
    from .embedded import EmbeddedTransport

    if opts.startup_json is not None:
        raise ConfigError("--client-startup-json is for broker mode; set SKYSCAN_BROKER_ADDRESS "
                          "(or drop the option for an embedded scan)")
    return EmbeddedTransport(native.to_dict(spec.event), spec.reco_name, spec.reco_options, opts.local_workers,
                             scan_id=spec.scan_id, key=spec.key)


def _stub(cfg: EnvConfig, spec: ScanSpec, opts: TransportOptions) -> ServerTransport:
    from .stub import StubTransport

    return StubTransport(spec.event, spec.reco_name, spec.reco_options, spec.scan_id, spec.key)


def _broker(cfg: EnvConfig, spec: ScanSpec, opts: TransportOptions) -> ServerTransport:
    from .mq import make_server_transport

    if opts.startup_json is None:
        raise ConfigError("broker mode (SKYSCAN_BROKER_ADDRESS is set) needs --client-startup-json PATH")
    return make_server_transport(cfg, spec, opts.startup_json)


BACKENDS: dict[str, Factory] = {"embedded": _embedded, "stub": _stub, **{name: _broker for name in BROKER_CLIENTS}}


def backend_name(cfg: EnvConfig) -> str:
    """The backend the configuration asks for."""
    return cfg.SKYSCAN_BROKER_CLIENT if cfg.broker_mode else "embedded"


def make_server_transport(cfg: EnvConfig, spec: ScanSpec, opts: TransportOptions | None = None,
                          backend: str | None = None) -> ServerTransport:
    """The server side of the transport ``backend`` (default: the one the configuration asks for)."""
    name = backend or backend_name(cfg)
    if name not in BACKENDS:
        raise ConfigError(f"unknown transport {name!r} (one of {', '.join(BACKENDS)})")
    return BACKENDS[name](cfg, spec, opts or TransportOptions())

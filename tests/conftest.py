"""Shared fixtures: small events, paths to shipped data."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
DATA = TESTS / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"
RABBITMQ = ("127.0.0.1", 5672)
NATS = ("127.0.0.1", 4222)


def reachable(host: str, port: int, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def need_broker(name: str, host: str, port: int) -> None:
    """Outside CI an unreachable broker skips the test with the reason; under ``CI=true`` it fails it."""
    if not reachable(host, port):
        why = f"no {name} answers on {host}:{port}"
        if IN_CI:
            pytest.fail(f"CI=true but {why}")
        pytest.skip(f"{why} (start it to run the broker tests)")


def minimal_event_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": "skymap-scanner-event/1",
        "run_id": 123,
        "event_id": 456,
        "event_type": "test",
        "mjd": 60000.25,
        "is_real_event": False,
        "geometry": "icecube86",
        "pulses": {
            "string": [36, 36, 35, 46, 79],
            "om": [30, 31, 29, 40, 50],
            "time": [10000.0, 10050.5, 10120.0, 10300.0, 10500.0],
            "charge": [1.2, 3.4, 0.8, 2.0, 5.5],
            "lc": [True, True, False, True, False],
        },
    }
    doc.update(overrides)
    return doc


def pulses_on_doms(doms: list[tuple[int, int]], dt_ns: float, dq_pe: float) -> dict[str, list[Any]]:
    """One LC pulse per (string, om): times 10000 ns + i*dt_ns, charges 1 PE + i*dq_pe."""
    return {
        "string": [s for s, _ in doms],
        "om": [o for _, o in doms],
        "time": [10000.0 + dt_ns * i for i in range(len(doms))],
        "charge": [1.0 + dq_pe * i for i in range(len(doms))],
        "lc": [True] * len(doms),
    }


@pytest.fixture
def event_doc() -> dict[str, Any]:
    return minimal_event_doc()


@pytest.fixture
def event_file(tmp_path: Path, event_doc: dict[str, Any]) -> Path:
    p = tmp_path / "event.json"
    p.write_text(json.dumps(event_doc))
    return p

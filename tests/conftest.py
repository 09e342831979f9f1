"""Shared fixtures: small events, paths to shipped data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
REPO = TESTS.parent
DATA = TESTS / "data"


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


@pytest.fixture
def event_doc() -> dict[str, Any]:
    return minimal_event_doc()


@pytest.fixture
def event_file(tmp_path: Path, event_doc: dict[str, Any]) -> Path:
    p = tmp_path / "event.json"
    p.write_text(json.dumps(event_doc))
    return p

"""SkyDriver reporting against a local HTTP stub (http.server in a thread): manifest PATCHes, partial
and final result PUTs, retries of the final one, the token sent as a bearer header and never logged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skymap_scanner.results import load_result
from skymap_scanner.skydriver import SkyDriverReporter

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
TOKEN = "sd-token-Hx7SECRET"


class Stub:
    """Records every request; the first ``fail_final`` PUTs of a final result get a 503."""

    def __init__(self, fail_final: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_final = fail_final
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                doc = json.loads(body) if body else None
                with stub.lock:
                    stub.requests.append({"method": self.command, "path": self.path, "body": doc,
                                          "auth": self.headers.get("Authorization")})
                    fail = (self.command == "PUT" and isinstance(doc, dict) and doc.get("is_final")
                            and stub.fail_final > 0)
                    if fail:
                        stub.fail_final -= 1
                code = 503 if fail else 200
                out = b"{}"
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_PATCH = do_PUT = do_POST = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def of(self, method: str, suffix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method and r["path"].endswith(suffix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub_factory() -> Iterator[Any]:
    made: list[Stub] = []

    def make(fail_final: int = 0) -> Stub:
        s = Stub(fail_final)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


class FakeResult:
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def to_json_dict(self) -> dict[str, Any]:
        return {"tag": self.tag}


def test_manifest_patch_and_result_put(stub_factory: Any) -> None:
    stub = stub_factory()
    rep = SkyDriverReporter(stub.url, TOKEN, "scan-1", final_retries=3, retry_delay_s=0.01)
    rep.send_manifest({"complete": False, "n": 1})
    rep.send_result(FakeResult("partial"), final=False)
    (patch,) = stub.of("PATCH", "/scan/scan-1/manifest")
    assert patch["body"] == {"progress": {"complete": False, "n": 1}}
    assert patch["auth"] == f"Bearer {TOKEN}"
    (put,) = stub.of("PUT", "/scan/scan-1/result")
    assert put["body"] == {"skyscan_result": {"tag": "partial"}, "is_final": False}


def test_final_result_is_retried_until_accepted(stub_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    stub = stub_factory(fail_final=3)
    rep = SkyDriverReporter(stub.url, TOKEN, "scan-2", final_retries=5, retry_delay_s=0.01)
    caplog.set_level(logging.DEBUG)
    rep.send_result(FakeResult("final"), final=True)
    puts = stub.of("PUT", "/scan/scan-2/result")
    assert len(puts) == 4 and stub.fail_final == 0  # three refusals, then accepted
    assert all(p["body"]["is_final"] for p in puts)
    assert "never accepted" not in caplog.text
    assert TOKEN not in caplog.text


def test_final_result_gives_up_without_raising(stub_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    stub = stub_factory(fail_final=100)
    rep = SkyDriverReporter(stub.url, TOKEN, "scan-3", final_retries=3, retry_delay_s=0.01)
    rep.send_result(FakeResult("final"), final=True)  # must not raise: the result is on disk anyway
    assert len(stub.of("PUT", "/scan/scan-3/result")) >= 3
    assert "never accepted the final result" in caplog.text


def test_partial_failures_do_not_stop_anything(stub_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    """Nothing answers: each update is tried once, logged as a warning (without the token), never raised."""
    rep = SkyDriverReporter("http://127.0.0.1:9", TOKEN, "scan-4", final_retries=3, retry_delay_s=0.01)
    caplog.set_level(logging.WARNING)
    rep.send_manifest({"x": 1})  # connection refused: logged, not raised
    rep.send_result(FakeResult("partial"), final=False)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno == logging.WARNING and r.name == "skymap_scanner.skydriver"]
    assert len(warnings) == 2, warnings  # a partial result is tried once, not final_retries times
    assert warnings[0].startswith("SkyDriver manifest update failed") and "the scan goes on" in warnings[0]
    assert warnings[1].startswith("SkyDriver result upload 1/1 failed")
    assert "never accepted" not in caplog.text and TOKEN not in caplog.text


@pytest.mark.slow
def test_server_reports_to_skydriver(stub_factory: Any, tmp_path: Path) -> None:
    """An embedded scan with SKYSCAN_SKYDRIVER_ADDRESS: progress PATCHes while it runs, and the final
    result PUT (refused twice first) equal to the result file."""
    stub = stub_factory(fail_final=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update(SKYSCAN_SKYDRIVER_ADDRESS=stub.url, SKYSCAN_SKYDRIVER_AUTH=TOKEN, SKYSCAN_SKYDRIVER_SCAN_ID="sd-42",
               SKYSCAN_PROGRESS_INTERVAL_SEC="0.2", SKYSCAN_LOG="DEBUG", SKYSCAN_LOG_THIRD_PARTY="DEBUG")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE), "--reco-algo",
                           "dummy", "--reco-option", "sleep_s=0.001", "--nsides", "8:0", "64:4", "--local-workers",
                           "2", "--output-dir", str(out), "--no-products"], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert TOKEN not in proc.stderr and TOKEN not in proc.stdout
    patches = stub.of("PATCH", "/scan/sd-42/manifest")
    assert len(patches) >= 2 and all(p["auth"] == f"Bearer {TOKEN}" for p in patches)
    assert patches[-1]["body"]["progress"]["complete"] is True
    assert any(p["body"]["progress"]["complete"] is False for p in patches)
    finals = [p for p in stub.of("PUT", "/scan/sd-42/result") if p["body"]["is_final"]]
    assert len(finals) == 3 and stub.fail_final == 0
    sent = finals[-1]["body"]["skyscan_result"]
    (npz,) = out.glob("*.npz")
    assert sent == load_result(npz).to_json_dict()
    # and it really is the scan: every nside 8 pixel is in it
    on_disk = load_result(npz)
    assert np.array_equal(on_disk.maps[8]["index"], np.arange(768))

"""The scan driven by the real EWMS pilot (ewms-pilot 0.21.0) over RabbitMQ.

The server publishes work as usual; the pilot consumes the to-clients queue, writes each message
to ``{{INFILE}}`` (.json), runs ``python -m skymap_scanner.client --infile ... --outfile ...`` as its
task (0.21.0 runs a plain command, no container), and publishes ``{{OUTFILE}}`` to the
from-clients queue. The result must equal the embedded scan of the same event.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_broker import (  # tests/ is on pytest's pythonpath
    RABBITMQ,
    Embedded,
    Scan,
    assert_manifest_consistent,
    assert_same_maps,
    base_env,
    embedded,
    need_broker,
    scans,
)

from skymap_scanner.results import load_result

__all__ = ["embedded", "scans"]  # fixtures used here
PILOT_VERSION = "0.21.0"

# ewms-pilot 0.21.0's ``python -m ewms_pilot`` reads ``args.log``, which its parser never defines, so it
# cannot start; the pilot's API entry point (what the CLI would call) is used instead.
PILOT_MAIN = """
import asyncio, logging, sys
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logging.getLogger("ewms-pilot").setLevel(logging.INFO)
from ewms_pilot import consume_and_reply
asyncio.run(consume_and_reply(cmd=sys.argv[1], infile_type=".json", outfile_type=".json"))
"""


def pilot_missing() -> str | None:
    try:
        from importlib.metadata import version

        v = version("ewms-pilot")
    except Exception:
        return "ewms-pilot is not installed (pip install .[pilot])"
    if v != PILOT_VERSION:
        return f"ewms-pilot {v} is installed; this test drives {PILOT_VERSION} (plain-command tasks)"
    return None


@pytest.mark.slow
@pytest.mark.broker
def test_scan_through_the_ewms_pilot(scans: Callable[..., Scan], embedded: Callable[..., Embedded],
                                     tmp_path: Path) -> None:
    need_broker("RabbitMQ", *RABBITMQ)
    missing = pilot_missing()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    # few, large messages: each pilot task is a process start (~1 s)
    args = ["--reco-algo", "dummy", "--reco-option", "n_posvar=1", "--nsides", "8:0"]
    # the pilot declares the queues with stock mqclient, which RabbitMQ refuses for a queue with x-expires
    scan = scans(args, base_env(SKYSCAN_BATCH_SIZE="200", SKYSCAN_MQ_QUEUE_EXPIRY_SEC="0"))
    ref = embedded(scan.event, args)
    scan.start_server()
    startup = scan.startup()
    startup_json = scan.dir / "startup.json"
    task = (f"{sys.executable} -m skymap_scanner.client --client-startup-json {startup_json} "
            "--infile {{INFILE}} --outfile {{OUTFILE}}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SKYSCAN_", "EWMS_"))}
    env.update({
        "EWMS_PILOT_QUEUE_INCOMING": startup["queue_to_clients"],
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_TYPE": "rabbitmq",
        "EWMS_PILOT_QUEUE_INCOMING_BROKER_ADDRESS": RABBITMQ[0],
        "EWMS_PILOT_QUEUE_OUTGOING": startup["queue_from_clients"],
        "EWMS_PILOT_QUEUE_OUTGOING_BROKER_TYPE": "rabbitmq",
        "EWMS_PILOT_QUEUE_OUTGOING_BROKER_ADDRESS": RABBITMQ[0],
        "EWMS_PILOT_TIMEOUT_QUEUE_WAIT_FOR_FIRST_MESSAGE": "60",
        "EWMS_PILOT_TIMEOUT_QUEUE_INCOMING": "5",  # the pilot stops 5 s after the last message
        "EWMS_PILOT_MAX_CONCURRENT_TASKS": "2",
        "EWMS_PILOT_TASK_TIMEOUT": "120",
    })
    pilot_dir = scan.dir / "pilot"
    pilot_dir.mkdir()
    with open(scan.dir / "pilot.log", "w") as log:
        pilot = subprocess.Popen([sys.executable, "-c", PILOT_MAIN, task], cwd=pilot_dir, env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, text=True)
    scan.all_procs.append(pilot)  # stopped by the fixture whatever happens
    assert scan.wait_server(timeout_s=180) == 0, scan.logs()
    try:
        pilot_rc = pilot.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the pilot did not stop after the scan\n" + scan.logs())
    pilot_log = (scan.dir / "pilot.log").read_text()
    assert pilot_rc == 0, pilot_log[-4000:]
    got = load_result(scan.result_npz())
    assert_same_maps(got.maps, ref.maps())
    m = scan.manifest()
    assert m is not None
    assert_manifest_consistent(m, got.maps)
    assert m["dropped"] == {"bad_messages": 0, "foreign_messages": 0, "unsigned_messages": 0, "forged_messages": 0,
                            "replayed_messages": 0, "unsolicited_fits": 0, "duplicates": 0, "unknown_pixels": 0,
                            "work_messages_dropped_by_clients": 0}
    n_tasks = -(-768 // 200)
    # one more task: the server's scan-over message (the client writes a harmless outfile and exits 0)
    assert f"completed {n_tasks + 1} task(s)" in pilot_log, pilot_log[-4000:]
    # the task wrote JSON replies the server accepted: the per-client names are the task processes
    assert sum(m["per_client_fits"].values()) == 768 and len(m["per_client_fits"]) == n_tasks

"""A restarted server shares its queues with the crashed run (same scan id): replies to the old run's
work must not be mistaken for replies to the new run's batches. In-process, no broker needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skymap_scanner.events import load_event
from skymap_scanner.messages import decode_work, encode
from skymap_scanner.scan import ScanRunner, ScanSpec
from skymap_scanner.transport import Transport
from skymap_scanner.worker import PixelWorker

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"


class RecordingTransport(Transport):
    """Keeps what was sent; replies are handed to the runner by the test."""

    mode = "test"
    max_in_flight_batches = 4

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def start(self) -> None:
        pass

    def send(self, payload: dict[str, Any]) -> None:
        self.sent.append(payload)

    def receive(self, timeout_s: float) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def spec() -> ScanSpec:
    return ScanSpec(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "8:0", batch_size=8)


def test_a_reply_to_the_crashed_run_does_not_close_a_lease_of_the_new_run() -> None:
    old_t, new_t = RecordingTransport(), RecordingTransport()
    old, new = ScanRunner(spec(), old_t), ScanRunner(spec(), new_t)
    assert old.spec.scan_id == new.spec.scan_id  # same arguments: same scan, same queues
    old._fill()
    new._fill()  # the restarted run sends the same pixels again
    assert len(new.leases) == 4
    assert [d["pixel"] for d in old_t.sent] == [d["pixel"] for d in new_t.sent]
    assert not {d["batch_id"] for d in old_t.sent} & {d["batch_id"] for d in new_t.sent}
    # a client answers the crashed run's first batch; the new server receives it
    worker = PixelWorker(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "late-client")
    reply = worker.handle(decode_work(old_t.sent[0]))
    new._handle_reply(encode(reply))
    assert new.stats.stale_replies == 1
    assert len(new.leases) == 4  # all four of the new run's batches still await their replies
    assert new.engine.counts.accepted == 8  # its fits are still welcome (same scan)
    # the new run's own reply for the same batch: its lease closes, its fits are duplicates
    new._handle_reply(encode(worker.handle(decode_work(new_t.sent[0]))))
    assert len(new.leases) == 3 and new.engine.counts.duplicates == 8 and new.stats.stale_replies == 1

"""A restarted server shares its queues with the crashed run (same scan id): replies to the old run's
work must not be mistaken for replies to the new run's batches. In-process, no broker needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skymap_scanner.events import load_event
from skymap_scanner.intake import accept_work
from skymap_scanner.messages import WorkMessage
from skymap_scanner.scan import ScanRunner, ScanSpec
from skymap_scanner.signing import Verifier, new_key, seal
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


KEY = new_key()  # a resumed run reads the crashed run's key from --cache-dir: both sign with it


def spec(key: bytes = KEY) -> ScanSpec:
    return ScanSpec(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "8:0", batch_size=8, key=key)


def work(payload: dict[str, Any]) -> WorkMessage:
    return accept_work(payload, None, Verifier(KEY, "work"))


def signed(msg: Any) -> dict[str, Any]:
    return seal(msg.to_dict(), "result", KEY)


def test_a_reply_to_the_crashed_run_does_not_close_a_lease_of_the_new_run() -> None:
    old_t, new_t = RecordingTransport(), RecordingTransport()
    old, new = ScanRunner(spec(), old_t), ScanRunner(spec(), new_t)
    assert old.spec.scan_id == new.spec.scan_id  # same arguments: same scan, same queues
    old._fill()
    new._fill()  # the restarted run sends the same pixels again
    assert len(new.leases) == 4
    assert [work(d).pixels.tolist() for d in old_t.sent] == [work(d).pixels.tolist() for d in new_t.sent]
    assert not {work(d).batch_id for d in old_t.sent} & {work(d).batch_id for d in new_t.sent}
    # a client answers the crashed run's first batch; the new server receives it
    worker = PixelWorker(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "late-client")
    reply = worker.handle(work(old_t.sent[0]))
    new._handle_reply(signed(reply))
    assert new.stats.stale_replies == 1
    assert len(new.leases) == 4  # all four of the new run's batches still await their replies
    assert new.engine.counts.accepted == 8  # its fits are still welcome (same scan)
    # the new run's own reply for the same batch: its lease closes, its fits are duplicates
    new._handle_reply(signed(worker.handle(work(new_t.sent[0]))))
    assert len(new.leases) == 3 and new.engine.counts.duplicates == 8 and new.stats.stale_replies == 1


def test_a_run_with_another_key_is_not_heard(tmp_path: Path) -> None:
    """Two runs with their own keys (no shared --cache-dir): the other run's signed replies are forged
    here; a run resumed from the same --cache-dir reads the same key (file mode 600)."""
    other, mine = ScanRunner(spec(new_key()), RecordingTransport()), ScanRunner(spec(new_key()), RecordingTransport())
    other._fill()
    mine._fill()
    worker = PixelWorker(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "late-client")
    payload = other.transport.sent[0]  # type: ignore[attr-defined]
    reply = worker.handle(accept_work(payload, None, Verifier(other.spec.key, "work")))
    mine._handle_reply(seal(reply.to_dict(), "result", other.spec.key))
    assert mine.stats.refused["forged"] == 1 and mine.engine.counts.accepted == 0
    first = ScanSpec(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "8:0", cache_dir=tmp_path)
    again = ScanSpec(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "8:0", cache_dir=tmp_path)
    assert first.key == again.key and len(first.key) == 32
    (key_file,) = tmp_path.glob("*.key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.key.hex() not in repr(first)

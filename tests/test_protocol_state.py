"""The scan protocol's pure state, unit by unit: leases (with an injected clock), attempts, what an
ingest accepted, the "already received" test, the result log (the checkpoint), the protocol as a whole
and the intake of messages."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.checkpoint import RECORD_DTYPE, ResultLog
from skymap_scanner.collector import FIT_FIELDS, NsideStore
from skymap_scanner.engine import ScanEngine, WorkItems
from skymap_scanner.errors import MessageError
from skymap_scanner.intake import DropLog, ForeignMessage, accept_result, accept_work
from skymap_scanner.leases import LOST_BACKOFF_MAX, Attempts, LeaseBook
from skymap_scanner.messages import ResultMessage
from skymap_scanner.pixels import parse_progression
from skymap_scanner.protocol import ScanProtocol
from skymap_scanner.signing import ForgedMessage, ReplayedMessage, UnsignedMessage, Verifier, new_key, seal
from skymap_scanner.transport.backoff import Backoff


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def px(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


# -- leases -------------------------------------------------------------------------------------------
def a_worker_was_seen(book: LeaseBook) -> None:
    """A worker signalled it took a batch (one this book does not know): workers are at work."""
    book.start(-1, "w0")


def test_a_lease_is_overdue_after_lease_min_s_once_a_worker_was_seen() -> None:
    clock = Clock()
    book = LeaseBook(lease_min_s=10.0, clock=clock)
    book.add(1, 8, px(1, 2), px(0, 0))
    a_worker_was_seen(book)
    clock.t += 10.0
    assert book.overdue() == []  # not past the deadline yet (strictly greater)
    clock.t += 0.001
    (lease,) = book.overdue()
    assert lease.batch_id == 1 and lease.pixels.tolist() == [1, 2]
    assert len(book) == 0 and book.items_in_flight == 0
    assert book.overdue() == []  # handed out once
    assert book.done(1) is None  # a late reply finds no lease


def test_done_closes_a_lease_once_and_measures_the_rate() -> None:
    clock = Clock()
    book = LeaseBook(lease_min_s=5.0, clock=clock)
    for b in (1, 2, 3):
        book.add(b, 8, np.arange(100, dtype=np.int64), np.zeros(100, np.int64))
    assert book.items_in_flight == 300 and len(book) == 3
    clock.t += 1.0
    assert book.done(1) is not None
    clock.t += 1.0
    assert book.done(2) is not None  # 100 items in 1 s: the rate is 100/s
    assert book.done(2) is None  # twice: unknown
    assert book.items_in_flight == 100
    # batch 3 had 200 items ahead of it: it may take (200 + 100) / 100 = 3 s, times three, plus 5 s
    clock.t = 1000.0 + 5.0 + 9.0
    assert book.overdue() == []
    clock.t += 0.01
    assert [lease.batch_id for lease in book.overdue()] == [3]


def test_no_re_send_as_lost_while_no_worker_was_ever_seen() -> None:
    """Clients not started yet (HTCondor jobs still idle): work waiting in the queue is not lost, and
    re-sending it every lease_min_s only piled up copies of the whole scan in the queue."""
    clock = Clock()
    book = LeaseBook(lease_min_s=10.0, clock=clock)
    book.add(1, 8, px(1, 2), px(0, 0))
    clock.t += 3600.0
    assert book.overdue() == []
    a_worker_was_seen(book)  # now one is at work: the batch is lost once no worker had it for lease_min_s
    clock.t += 10.001
    assert [lease.batch_id for lease in book.overdue()] == [1]


def test_rule_b_fires_once_per_absence_and_backs_off_when_a_lost_batch_turns_up() -> None:
    """All workers restarting at once (the embedded pool replacing crashed processes) looked like lost
    deliveries: every queued batch was re-sent after each restart (178 re-sends in one scan)."""
    clock = Clock()
    book = LeaseBook(lease_min_s=2.0, clock=clock)
    for b in (1, 2):
        book.add(b, 8, px(b), px(0))
    a_worker_was_seen(book)
    clock.t += 2.001
    assert sorted(lease.batch_id for lease in book.overdue()) == [1, 2]  # called lost: re-sent as 3 and 4
    book.add(3, 8, px(1), px(0))
    book.add(4, 8, px(2), px(0))
    clock.t += 100.0  # no worker seen since: the re-sends are not called lost, however long that lasts
    assert book.overdue() == []
    assert book.start(1, "w1") is None  # batch 1 turns up after all: the workers were only away
    assert book.lost_turned_up == 1 and book.lost_backoff == 2.0
    assert book.done(1) is None and book.lost_turned_up == 1  # once per batch
    clock.t += 4.0  # idle 4 s since that start: the back-off asks for more than 2 x 2 s
    assert book.overdue() == []
    clock.t += 0.01
    assert sorted(lease.batch_id for lease in book.overdue()) == [3, 4]
    clock.t += 0.01
    book.start(4, "w1")
    book.start(3, "w1")
    assert book.lost_backoff == 4.0  # doubled once for the episode, not once per batch
    for b in range(5, 15):  # absence after absence: up to the cap
        book.add(b, 8, px(b), px(0))
        clock.t += 2.0 * LOST_BACKOFF_MAX + 1.0
        assert [lease.batch_id for lease in book.overdue()] == [b]
        clock.t += 0.01
        book.start(b, "w1")
    assert book.lost_backoff == LOST_BACKOFF_MAX


def test_the_rate_is_smoothed() -> None:
    clock = Clock()
    book = LeaseBook(lease_min_s=1.0, clock=clock)
    for b in range(1, 4):
        book.add(b, 8, np.arange(10, dtype=np.int64), np.zeros(10, np.int64))
    clock.t += 1.0
    book.done(1)
    clock.t += 1.0
    book.done(2)  # first rate: 10/s
    clock.t += 0.1
    book.done(3)  # 100/s at once, but smoothed: 0.9 * 10 + 0.1 * 100
    assert book._rate_items_per_s == pytest.approx(19.0)


# -- attempts -----------------------------------------------------------------------------------------
def test_attempts_retry_until_max_then_give_up_once() -> None:
    a = Attempts(max_attempts=3)
    for _ in range(2):
        (rp, rv), (gp, gv) = a.failed(8, px(5, 6), px(0, 1))
        assert rp.tolist() == [5, 6] and rv.tolist() == [0, 1] and gp.size == gv.size == 0
    assert len(a) == 2
    (rp, _), (gp, gv) = a.failed(8, px(5), px(0))
    assert rp.size == 0 and gp.tolist() == [5] and gv.tolist() == [0]
    assert len(a) == 1  # (6, 1) is still being retried; (5, 0) is forgotten
    (rp, _), _ = a.failed(64, px(5), px(0))  # another nside: its own count
    assert rp.tolist() == [5]
    with pytest.raises(ValueError):
        Attempts(0)


def test_one_attempt_gives_up_at_once() -> None:
    (rp, _), (gp, _) = Attempts(1).failed(8, px(1, 2), px(0, 0))
    assert rp.size == 0 and gp.tolist() == [1, 2]


# -- what was received / accepted -------------------------------------------------------------------
def test_received_is_per_pixel_and_posvar() -> None:
    store = NsideStore(8, 3, full_sky=True)
    store.ingest(px(4, 4, 9), px(0, 2, 1), np.zeros((3, len(FIT_FIELDS))))
    got = store.received(px(4, 4, 4, 9, 9, 700, 4, 4), px(0, 1, 2, 1, 0, 0, 3, -1))
    assert got.tolist() == [True, False, True, True, False, False, False, False]  # beyond n_posvar: False


def test_ingest_says_which_results_it_accepted() -> None:
    e = ScanEngine(parse_progression("8:0"), n_posvar=2)
    fits = np.arange(5 * len(FIT_FIELDS), dtype=float).reshape(5, -1)
    c = e.ingest(8, px(1, 1, 2, 1, 9999), px(0, 1, 0, 0, 0), fits)
    # (1, 0) twice in one batch: the first is kept; pixel 9999 is not an nside-8 pixel
    assert c.accepted_index.tolist() == [0, 1, 2]
    assert (c.accepted, c.duplicates, c.unknown) == (3, 1, 1)
    c2 = e.ingest(8, px(2, 3), px(0, 0), fits[:2])
    assert c2.accepted_index.tolist() == [1] and c2.duplicates == 1
    assert e.ingest(64, px(1), px(0), fits[:1]).accepted_index.size == 0  # an nside not in the scan


# -- the result log -----------------------------------------------------------------------------------
def test_result_log_replays_what_was_appended_in_order(tmp_path: Path) -> None:
    log = ResultLog(tmp_path / "sub" / "scan.results.bin")
    f1 = np.arange(14, dtype=float).reshape(2, 7)
    log.append(8, px(3, 4), px(0, 1), f1)
    log.append(8, px(5), px(0), np.full((1, 7), np.nan), np.ones(1, bool))
    log.append(64, px(77), px(1), f1[:1])
    log.close()
    runs = list(ResultLog(tmp_path / "sub" / "scan.results.bin").replay())
    assert [(n, p.tolist(), v.tolist(), fl.tolist()) for n, p, v, _, fl in runs] == [
        (8, [3, 4, 5], [0, 1, 0], [False, False, True]), (64, [77], [1], [False])]
    assert np.array_equal(runs[0][3][:2], f1) and np.isnan(runs[0][3][2]).all()


def test_result_log_drops_a_record_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "scan.results.bin"
    log = ResultLog(path)
    log.append(8, px(3, 4), px(0, 0), np.zeros((2, 7)))
    log.close()
    with open(path, "ab") as f:
        f.write(b"\x01" * (RECORD_DTYPE.itemsize // 2))  # a crash mid-write
    runs = list(ResultLog(path).replay())
    assert len(runs) == 1 and runs[0][1].tolist() == [3, 4]
    assert path.stat().st_size == 2 * RECORD_DTYPE.itemsize  # the partial record was cut off
    assert list(ResultLog(tmp_path / "none.bin").replay()) == []


# -- the protocol as a whole (engine + leases + attempts), driven by hand ------------------------------
def result_msg(work: WorkItems, batch_id: int, errors: list[str | None] | None = None,
               scan_id: str = "s") -> ResultMessage:
    n = len(work)
    fits = np.zeros((n, len(FIT_FIELDS)))
    fits[:, 0] = work.pixels + 0.5 * work.posvars
    return ResultMessage(scan_id, batch_id, work.nside, work.pixels, work.posvars, fits,
                         tuple(errors or [None] * n), np.full(n, 0.01), "w1")


def protocol(clock: Clock, max_attempts: int = 2, batch_size: int = 0) -> ScanProtocol:
    engine = ScanEngine(parse_progression("8:0"), n_posvar=1, max_attempts=max_attempts)
    return ScanProtocol(engine, lease_min_s=10.0, clock=clock, first_batch_id=100, batch_size=batch_size)


def test_protocol_accepts_a_reply_once_and_asks_to_checkpoint_it() -> None:
    clock = Clock()
    p = protocol(clock)
    work = p.engine.pop_work(4)
    assert work is not None
    bid = p.open_batch(work)
    assert bid == 101 and p.last_batch_id == 101 and len(p.leases) == 1
    fx = p.on_result(result_msg(work, bid))
    assert len(p.leases) == 0 and fx.notes == []
    (rows,) = fx.rows
    assert rows.pixels.tolist() == work.pixels.tolist() and not rows.failed.any()
    again = p.on_result(result_msg(work, bid))  # the same reply twice: stale, its fits no longer outstanding
    assert again.rows == [] and p.stats.stale_replies == 1 and p.stats.unsolicited_fits == 4
    assert p.engine.counts.duplicates == 0
    assert p.stats.per_client["w1"] == 4  # the fits it was asked for


def test_protocol_takes_only_fits_sent_out_and_still_outstanding() -> None:
    """A late reply of an overdue batch is welcome while its fits are out again; fits never sent (or
    already answered) are ignored and counted, also when the reply claims an open batch's id."""
    clock = Clock()
    p = protocol(clock)
    work = p.engine.pop_work(4)
    assert work is not None
    first = p.open_batch(work)
    a_worker_was_seen(p.leases)
    clock.t += 11.0
    p.expire()  # overdue: its fits go back to the queue ...
    again = p.engine.pop_work(4)
    assert again is not None
    second = p.open_batch(again)  # ... and out again in another batch
    fx = p.on_result(result_msg(work, first))  # the first batch's late reply: its fits are outstanding
    assert p.engine.counts.accepted == 4 and p.stats.unsolicited_fits == 0 and len(fx.rows) == 1
    p.on_result(result_msg(again, second))  # the re-sent batch's own reply: its fits are duplicates
    assert p.engine.counts.duplicates == 4 and p.engine.counts.accepted == 4 and len(p.leases) == 0
    p.on_result(result_msg(again, second))  # once more: no batch holds these fits any longer
    assert p.stats.unsolicited_fits == 4 and p.engine.counts.duplicates == 4
    more = p.engine.pop_work(2)
    assert more is not None
    bid = p.open_batch(more)
    unsent = WorkItems(8, px(700, 701), px(0, 0), np.full((2, 4), np.nan))
    assert not set(unsent.pixels.tolist()) & set(more.pixels.tolist())
    p.on_result(result_msg(unsent, bid))  # an open batch's id, other fits: none taken
    assert p.stats.unsolicited_fits == 6 and p.engine.counts.accepted == 4 and len(p.leases) == 0


def test_protocol_retries_failed_fits_then_records_them_as_failed() -> None:
    clock = Clock()
    p = protocol(clock, max_attempts=2)
    work = p.engine.pop_work(2)
    assert work is not None
    fx = p.on_result(result_msg(work, p.open_batch(work), errors=["boom", None]))
    assert [r.pixels.tolist() for r in fx.rows] == [[work.pixels[1]]]  # the good one is checkpointed
    assert any("reco failed on 1 fits" in text for _, text in fx.notes)
    retry = p.engine.pop_work(10)  # the failed one comes first, once more
    assert retry is not None and retry.pixels[0] == work.pixels[0]
    first = WorkItems(8, retry.pixels[:1], retry.posvars[:1], retry.seeds[:1])
    fx = p.on_result(result_msg(first, p.open_batch(first), errors=["boom"]))
    (rows,) = fx.rows
    assert rows.failed.tolist() == [True] and np.isnan(rows.fits).all()
    assert p.engine.counts.failed_items == 1 and p.engine.counts.failed_attempts == 2


def test_protocol_sends_an_overdue_batch_again_after_its_lease() -> None:
    clock = Clock()
    p = protocol(clock, max_attempts=3)
    work = p.engine.pop_work(3)
    assert work is not None
    p.open_batch(work)
    a_worker_was_seen(p.leases)
    clock.t += 9.0
    assert p.expire().notes == []
    clock.t += 2.0
    fx = p.expire()
    assert p.stats.resent_batches == 1 and "a lost delivery" in fx.notes[0][1] and fx.rows == []
    assert p.engine.counts.failed_attempts == 0  # never taken by a worker: no attempt spent
    again = p.engine.pop_work(10)
    assert again is not None and again.pixels[:3].tolist() == work.pixels.tolist()


def test_protocol_adapts_the_batch_size_unless_it_is_fixed() -> None:
    clock = Clock()
    p = protocol(clock)
    assert p.batch_size == 8
    work = p.engine.pop_work(10)
    assert work is not None
    p.on_result(result_msg(work, p.open_batch(work)))  # 10 fits of 0.01 s: 25 per 0.25 s message
    assert p.batch_size == 25
    fixed = protocol(clock, batch_size=16)
    work = fixed.engine.pop_work(10)
    assert work is not None
    fixed.on_result(result_msg(work, fixed.open_batch(work)))
    assert fixed.batch_size == 16


def test_intake_refuses_garbage_other_scans_and_bad_signatures() -> None:
    key = new_key()
    msg = result_msg(WorkItems(8, px(1), px(0), np.full((1, 4), np.nan)), 1)
    signed = seal(msg.to_dict(), "result", key)
    assert accept_result(signed, "s", Verifier(key, "result")).pixels.tolist() == [1]
    with pytest.raises(ForeignMessage, match="another scan"):
        accept_result(signed, "other", Verifier(key, "result"))
    with pytest.raises(MessageError, match="not JSON"):
        accept_result(b"\xff", "s", Verifier(key, "result"))
    with pytest.raises(UnsignedMessage):
        accept_result(msg.to_dict(), "s", Verifier(key, "result"))
    with pytest.raises(ForgedMessage):
        accept_result(seal(msg.to_dict(), "result", new_key()), "s", Verifier(key, "result"))
    tampered = signed["body"].replace('"llh":[1.0]', '"llh":[-2e9]')
    assert tampered != signed["body"]
    with pytest.raises(ForgedMessage):  # the body changed after signing
        accept_result({**signed, "body": tampered}, "s", Verifier(key, "result"))
    with pytest.raises(UnsignedMessage):
        accept_work(signed, None, Verifier(key, "work"))  # a result is not work, even signed
    once = Verifier(key, "result", remember=10)
    accept_result(signed, "s", once)
    with pytest.raises(ReplayedMessage):
        accept_result(json.dumps(signed), "s", once)
    assert "key" not in repr(once).replace("key=<hidden>", "") and key.hex() not in repr(once)


def test_drop_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    drops = DropLog(logging.getLogger("test.drops"), "a reply", clock)
    with caplog.at_level(logging.WARNING, "test.drops"):
        for _ in range(1000):
            drops.drop(UnsignedMessage("an unsigned result message"))
        clock.t += 61.0
        drops.drop(UnsignedMessage("an unsigned result message"))
    assert drops.counts["unsigned"] == 1001
    assert len(caplog.records) == 11  # ten one by one, then one summary a minute
    assert "dropped 991 more unsigned" in caplog.records[-1].getMessage()


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    clock = Clock()
    b = Backoff(first_s=0.5, max_s=3.0, clock=clock)
    assert b.failing_for() == 0.0
    assert [b.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    clock.t += 7.5
    assert b.failing_for() == 7.5  # since the first failure of this run
    b.succeeded()
    assert b.failing_for() == 0.0 and b.failed() == 0.5
    with pytest.raises(ValueError):
        Backoff(first_s=2.0, max_s=1.0)

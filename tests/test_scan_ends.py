"""Scans that end truthfully (issue 12, probe 3): no workers, or workers whose every fit fails, make the
scan fail with one line instead of a "complete" all-NaN result. On the stub transport, with a fake clock."""

from __future__ import annotations

import numpy as np
import pytest
from reference import SAMPLE

from skymap_scanner.errors import SkyScanError
from skymap_scanner.events import load_event
from skymap_scanner.messages import ResultMessage, WorkMessage
from skymap_scanner.scan import ScanRunner, ScanSpec
from skymap_scanner.transport.stub import StubTransport


class Ticking:
    """A clock that moves 0.5 s each time it is read."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


def spec(**kw: float) -> ScanSpec:
    return ScanSpec(load_event(SAMPLE), "dummy", {"n_posvar": "1"}, "8:0", max_attempts=2, lease_min_s=5.0,
                    progress_interval_s=1e9, result_interval_s=1e9, **kw)  # type: ignore[arg-type]


def test_a_scan_with_no_workers_fails_after_the_no_fit_timeout() -> None:
    s = spec(timeout_no_fit_s=30.0)
    no_workers = StubTransport(handler=lambda w: pytest.fail("no worker runs"), scan_id=s.scan_id, key=s.key,
                               auto_join=False)
    runner = ScanRunner(s, no_workers, clock=Ticking())
    with pytest.raises(SkyScanError, match=r"no fit succeeded for 30 s \(SKYSCAN_TIMEOUT_NO_FIT_SEC\)"):
        runner.run()
    # and waiting work was not re-sent: with no worker ever seen it is waiting, not lost
    assert not runner.engine.done and runner.stats.resent_batches == 0


def all_errors(work: WorkMessage) -> ResultMessage:
    n = len(work)
    return ResultMessage(work.scan_id, work.batch_id, work.nside, work.pixels, work.posvars, np.full((n, 7), np.nan),
                         ("RuntimeError: broken reco",) * n, np.full(n, 0.01), "broken")


def test_a_scan_whose_every_fit_fails_fails() -> None:
    s = spec()
    runner = ScanRunner(s, StubTransport(handler=all_errors, scan_id=s.scan_id, key=s.key))
    with pytest.raises(SkyScanError, match=r"every fit failed \(768 fits given up on after 2 attempts each\)"):
        runner.run()
    assert runner.engine.counts.failed_items == 768

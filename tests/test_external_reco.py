"""The ``external`` reco: ``skymap-scanner-reco/1`` with two reference children (Python and C).

The Python child (``external_children/dummy_child.py``) wraps the ``dummy`` landscape and can be
told to crash, hang or write garbage once; the C child (``external_children/dummy_child.c``,
compiled here with gcc) computes the same landscape from numbers on its command line. Scans
through either must equal the in-process ``dummy`` scan pixel for pixel.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import IN_CI, RABBITMQ, need_broker
from hypothesis import given
from hypothesis import strategies as st

from skymap_scanner.errors import ConfigError
from skymap_scanner.events import load_event, native
from skymap_scanner.messages import WorkMessage
from skymap_scanner.recos import FitRequest, FitResult, Vertex, fit_batch_arrays, make_reco
from skymap_scanner.recos import _external_protocol as proto
from skymap_scanner.recos.dummy import DummyReco
from skymap_scanner.recos.external import ChildFault, ExternalReco
from skymap_scanner.results import load_result
from skymap_scanner.worker import PixelWorker

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
BRONZE_PKL = TESTS / "data" / "events" / "run00136662-evt000035405932-BRONZE.pkl"
PY_CHILD = f"{shlex.quote(sys.executable)} {shlex.quote(str(TESTS / 'external_children' / 'dummy_child.py'))}"
NSIDES = ["8:0", "64:12"]
NPZ = "run00136662.evt000035405932.neutrino_8_64.npz"


# -- helpers ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def c_child(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C reference child, compiled for this test run."""
    gcc = shutil.which("gcc")
    if gcc is None:
        if IN_CI:
            pytest.fail("CI=true but gcc is not installed (needed to build the C reference child)")
        pytest.skip("gcc is not installed: the C reference child cannot be built")
    exe = tmp_path_factory.mktemp("cchild") / "dummy_child"
    subprocess.run([gcc, "-O2", "-Wall", "-ffp-contract=off", "-o", str(exe),
                    str(TESTS / "external_children" / "dummy_child.c"), "-lm"], check=True)
    return exe


def c_command(exe: Path, event_path: Path, n_posvar: int = 2) -> str:
    """The C child's command line: the dummy landscape's parameters for this event, exactly (repr)."""
    prep = DummyReco().prepare(load_event(event_path))
    v = prep.vertex
    nums = [*prep.planted_unit, prep.qtot_pe, v.x_m, v.y_m, v.z_m, v.t_ns]
    return " ".join([shlex.quote(str(exe)), *map(repr, nums), str(n_posvar)])


def requests(n: int, nside: int = 8) -> list[FitRequest]:
    rng = np.random.default_rng(5)
    out = []
    for i in range(n):
        seed = Vertex(*rng.normal(0, 300, 4).tolist()) if i % 3 else None
        out.append(FitRequest(float(rng.uniform(0, math.pi)), float(rng.uniform(0, 2 * math.pi)), i % 2, seed,
                              nside, i))
    return out


def external(options: dict[str, str], event_path: Path = SAMPLE) -> tuple[ExternalReco, Any]:
    reco = make_reco("external", options)
    assert isinstance(reco, ExternalReco)
    return reco, reco.prepare(load_event(event_path))


def in_process(reqs: list[FitRequest], event_path: Path = SAMPLE) -> list[FitResult | Exception]:
    d = DummyReco()
    return d.fit_batch(d.prepare(load_event(event_path)), reqs)


def run_server(args: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "skymap_scanner.server", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


def scan(out: Path, reco: list[str], env: dict[str, str] | None = None, nsides: list[str] = NSIDES,
         event: Path = SAMPLE) -> subprocess.CompletedProcess[str]:
    return run_server(["--event-file", str(event), *reco, "--output-dir", str(out), "--local-workers", "2",
                       "--nsides", *nsides, "--no-products"], env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[int, np.ndarray]:
    """The in-process ``dummy`` scan of the sample event."""
    out = tmp_path_factory.mktemp("reference")
    proc = scan(out, ["--reco-algo", "dummy"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_result(out / NPZ).maps


def assert_same_maps(npz: Path, ref: dict[int, np.ndarray]) -> None:
    got = load_result(npz).maps
    assert sorted(got) == sorted(ref)
    for nside, arr in ref.items():
        assert np.array_equal(got[nside]["index"], arr["index"]), f"nside {nside}: other pixels"
        for f in ("llh", "E_in", "E_tot", "X", "Y", "Z", "T"):
            assert np.array_equal(got[nside][f], arr[f]), f"nside {nside}: {f} differs"


# -- the protocol, no processes ---------------------------------------------------------------------
def test_messages_round_trip() -> None:
    hello = proto.ChildHello("x", 3, 16, ("a", "b"))
    line = proto.encode(hello)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert proto.decode_line(line, ("hello",)) == hello
    res = proto.Result(7, (proto.FitOutcome((1.5, math.nan, 2.0, 3.0, 4.0, 5.0, 6.0)), proto.FitOutcome(None, "bad")))
    back = proto.decode_line(proto.encode(res), ("result",))
    assert isinstance(back, proto.Result) and back.id == 7 and back.results[1] == proto.FitOutcome(None, "bad")
    assert back.results[0].values is not None and math.isnan(back.results[0].values[1])
    assert back.results[0].values[0] == 1.5
    fit = json.loads(proto.encode(proto.Fit(3, (proto.FitItem(0.5, 1.0, 1, (1.0, 2.0, 3.0, 4.0), 8, 17),))))
    assert fit == {"protocol": proto.PROTOCOL, "type": "fit", "id": 3, "fits": [
        {"nside": 8, "pixel": 17, "zenith": 0.5, "azimuth": 1.0, "posvar": 1, "seed": [1.0, 2.0, 3.0, 4.0]}]}


@given(st.lists(st.floats(allow_infinity=False), min_size=7, max_size=7))
def test_result_values_round_trip_exactly(values: list[float]) -> None:
    line = proto.encode(proto.Result(1, (proto.FitOutcome(tuple(values)),)))
    (out,) = proto.decode_line(line, ("result",)).results  # type: ignore[union-attr]
    assert out.values is not None
    assert [(math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(out.values, values, strict=True)] == [True] * 7


@pytest.mark.parametrize("line, problem", [
    (b"hello there", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"protocol": "skymap-scanner-reco/2", "type": "hello"}', "skymap-scanner-reco/2"),
    (b'{"type": "hello", "reco": "x", "n_posvar": 1}', "no 'protocol'"),
    (b'{"protocol": "skymap-scanner-reco/1", "type": "prepared"}', "'prepared' message where result"),
    (b'{"protocol": "skymap-scanner-reco/1", "type": "result", "id": 1, "results": [{"llh": NaN}]}', "NaN is not JSON"),
    (b'{"protocol": "skymap-scanner-reco/1", "type": "result", "id": 1, "results": [{"llh": 1}]}', "has no E_in"),
    (b'{"protocol": "skymap-scanner-reco/1", "type": "result", "id": 1, "results": [{"llh": "1", "E_in": 1, '
     b'"E_tot": 1, "X": 1, "Y": 1, "Z": 1, "T": 1}]}', "not a number"),
    (b'{"protocol": "skymap-scanner-reco/1", "type": "result", "id": "1", "results": []}', "'id' must be"),
])
def test_garbage_is_refused(line: bytes, problem: str) -> None:
    with pytest.raises(proto.ProtocolError, match=problem.replace("(", r"\(")):
        proto.decode_line(line, ("result",))


def test_hello_fields_are_checked() -> None:
    base = {"protocol": proto.PROTOCOL, "type": "hello", "reco": "x", "n_posvar": 1}
    assert proto.decode_line(json.dumps(base).encode(), ("hello",)) == proto.ChildHello("x", 1)
    for bad in ({"n_posvar": 0}, {"n_posvar": True}, {"reco": ""}, {"max_batch": 0}, {"options_accepted": "a"}):
        with pytest.raises(proto.ProtocolError):
            proto.decode_line(json.dumps({**base, **bad}).encode(), ("hello",))


def test_realtime_frames_travel_with_the_event() -> None:
    event = load_event(BRONZE_PKL)
    assert "".join(s for s, _ in event.realtime_frames) == "GCDQP"
    doc = native.to_dict(event)
    again = native.from_dict(json.loads(json.dumps(doc)), "<copy>")  # as the startup JSON carries it
    assert again.realtime_frames == event.realtime_frames
    msg = json.loads(proto.encode(proto.Prepare(doc, again.realtime_frames)))
    assert "realtime_frames" not in msg["event"]  # once, at the top level
    import base64
    payloads = [base64.b64decode(f["i3frame_b64"]) for f in msg["realtime_frames"]]
    assert [f["stop"] for f in msg["realtime_frames"]] == list("GCDQP")
    assert all(p.startswith(b"[i3]") for p in payloads)  # native I3Frames, as IceTray reads them
    assert native.from_dict(msg["event"], "<prepare>").pulses.qtot_pe == event.pulses.qtot_pe
    with pytest.raises(Exception, match="realtime frame 0"):
        native.from_dict({**doc, "realtime_frames": [{"stop": "P", "i3frame_b64": "%%"}]}, "<bad>")


# -- handshake and in-process fits through the children ---------------------------------------------
def test_handshake_and_batched_fits_equal_dummy() -> None:
    reco, prep = external({"command": PY_CHILD, "batch": "64"})
    try:
        assert reco.n_posvar == 2 and reco.hello is not None and reco.hello.reco == "pydummy"
        reqs = requests(300)
        got = reco.fit_batch(prep, reqs)
        assert got == in_process(reqs)
        assert reco._next_id == 5  # 300 fits in requests of at most 64
        single = reco.fit(prep, reqs[0].zenith_rad, reqs[0].azimuth_rad, 1, None)
        assert single == DummyReco().fit(DummyReco().prepare(load_event(SAMPLE)), reqs[0].zenith_rad,
                                         reqs[0].azimuth_rad, 1, None)
    finally:
        reco.close()


def test_child_options_and_n_posvar() -> None:
    reco = make_reco("external", {"command": PY_CHILD, "n_posvar": "3", "fit_timeout_s": "5"})
    assert reco.n_posvar == 3  # a handshake-only child, stopped again
    with pytest.raises(ConfigError, match="does not accept option.*nonsense"):
        _ = make_reco("external", {"command": PY_CHILD, "nonsense": "1"}).n_posvar


def test_version_refusal() -> None:
    # the child speaks another version: the scanner refuses it
    with pytest.raises(ConfigError, match="skymap-scanner-reco/0.*scanner speaks 'skymap-scanner-reco/1'"):
        _ = make_reco("external", {"command": PY_CHILD, "protocol": "skymap-scanner-reco/0"}).n_posvar
    # the child refuses the scanner's hello (a two-line shell child)
    refuse = ('read line; echo \'{"protocol": "skymap-scanner-reco/1", "type": "error", '
              '"message": "I need skymap-scanner-reco/2"}\'')
    with pytest.raises(ConfigError, match=r"sh\[\d+\] refused the handshake: I need skymap-scanner-reco/2"):
        _ = make_reco("external", {"command": f"sh -c {shlex.quote(refuse)}"}).n_posvar
    with pytest.raises(ConfigError, match="broke the protocol: not JSON: 'hello'"):
        _ = make_reco("external", {"command": "sh -c 'read line; echo hello'"}).n_posvar


def test_bad_commands_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a command"):
        make_reco("external", {})
    with pytest.raises(ConfigError, match="cannot start"):
        _ = make_reco("external", {"command": str(tmp_path / "nothing-here")}).n_posvar
    with pytest.raises(ConfigError, match="exited with code 0"):
        _ = make_reco("external", {"command": "true"}).n_posvar
    with pytest.raises(ConfigError, match="must be positive"):
        make_reco("external", {"command": "true", "fit_timeout_s": "0"})


def test_c_child_equals_dummy_bit_for_bit(c_child: Path) -> None:
    reco, prep = external({"command": c_command(c_child, SAMPLE)})
    try:
        assert reco.hello is not None and reco.hello.reco == "cdummy" and reco.hello.max_batch == 64
        reqs = requests(200)
        assert reco.fit_batch(prep, reqs) == in_process(reqs)
    finally:
        reco.close()


def test_stderr_is_logged_with_the_childs_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="skymap_scanner.recos.external"):
        reco, _ = external({"command": PY_CHILD}, BRONZE_PKL)
        pid = reco._child.proc.pid  # type: ignore[union-attr]
        reco.close()
    lines = [r.getMessage() for r in caplog.records]
    assert f"pydummy[{pid}]: prepared event 136662:35405932 with 5 realtime frames (GCDQP)" in lines


@pytest.mark.parametrize("fault, problem", [
    ("crash_once", r"exited with code 3 \(waiting for the fit request.*crashing on purpose"),
    ("hang_once", r"did not answer the fit request \(2\.5 s\) in time"),
    ("garbage_once", "broke the protocol: not JSON: 'this is not JSON {'"),
])
def test_fault_fails_the_request_then_restarts(tmp_path: Path, fault: str, problem: str) -> None:
    reco, prep = external({"command": PY_CHILD, fault: str(tmp_path / "marker"), "fit_timeout_s": "0.5"})
    try:
        first_pid = reco._child.proc.pid  # type: ignore[union-attr]
        reqs = requests(5)
        failed = reco.fit_batch(prep, reqs)
        assert all(isinstance(o, ChildFault) for o in failed) and len(failed) == 5
        assert str(failed[0]).count("\n") == 0
        assert re.search(problem, str(failed[0])), str(failed[0])
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)  # the faulty child is gone (killed and reaped)
        assert reco.fit_batch(prep, reqs) == in_process(reqs)  # a new child, the same answers
        assert reco.restarts == 1
    finally:
        reco.close()


def test_restarts_are_bounded(tmp_path: Path) -> None:
    reco, prep = external({"command": PY_CHILD, "crash_always": "true", "max_restarts": "2"})
    try:
        for _ in range(3):  # the first child and two restarts crash
            assert all(isinstance(o, ChildFault) and "exited with code 3" in str(o)
                       for o in reco.fit_batch(prep, requests(2)))
        t0 = time.monotonic()
        (out,) = reco.fit_batch(prep, requests(1))
        assert isinstance(out, ChildFault) and "gave up after 2 restarts" in str(out)
        assert time.monotonic() - t0 < 0.1 and reco.restarts == 2 and reco._child is None
    finally:
        reco.close()


def test_error_replies_fail_fits_but_keep_the_child(tmp_path: Path) -> None:
    script = tmp_path / "half.py"  # answers every other fit with an error, in a language-neutral way
    script.write_text(
        "import json, sys\n"
        "P = 'skymap-scanner-reco/1'\n"
        "for line in sys.stdin:\n"
        "    m = json.loads(line)\n"
        "    if m['type'] == 'hello':\n"
        "        r = {'type': 'hello', 'reco': 'half', 'n_posvar': 1, 'max_batch': 10}\n"
        "    elif m['type'] == 'prepare':\n"
        "        r = {'type': 'prepared'}\n"
        "    elif m['type'] == 'fit' and m['id'] == 2:\n"
        "        r = {'type': 'error', 'message': 'not today'}\n"
        "    elif m['type'] == 'fit':\n"
        "        r = {'type': 'result', 'id': m['id'], 'results': [\n"
        "            {'error': 'odd pixel'} if f['pixel'] % 2 else\n"
        "            dict(llh=f['zenith'], E_in=None, E_tot=None, X=1, Y=2, Z=3, T=f['posvar']) for f in m['fits']]}\n"
        "    else:\n"
        "        break\n"
        "    print(json.dumps({'protocol': P, **r}), flush=True)\n")
    reco, prep = external({"command": f"{shlex.quote(sys.executable)} {script}"})
    try:
        out = reco.fit_batch(prep, requests(4))
        assert [type(o).__name__ for o in out] == ["FitResult", "ExternalRecoError"] * 2
        assert isinstance(out[0], FitResult) and math.isnan(out[0].E_in) and out[0].X == 1.0
        assert str(out[1]) == f"half[{reco._child.proc.pid}]: odd pixel"  # type: ignore[union-attr]
        assert all("not today" in str(o) for o in reco.fit_batch(prep, requests(3)))
        assert reco.restarts == 0 and reco.fit_batch(prep, requests(1))[0] == FitResult(
            requests(1)[0].zenith_rad, math.nan, math.nan, 1.0, 2.0, 3.0, 0.0)
    finally:
        reco.close()


def work_message(n: int) -> WorkMessage:
    reqs = requests(n, nside=64)
    seeds = np.array([[r.seed.x_m, r.seed.y_m, r.seed.z_m, r.seed.t_ns] if r.seed else [np.nan] * 4 for r in reqs])
    return WorkMessage("scan", 1, 64, np.array([r.pixel for r in reqs]), np.array([r.posvar for r in reqs]),
                       np.array([r.zenith_rad for r in reqs]), np.array([r.azimuth_rad for r in reqs]), seeds)


def test_worker_hands_whole_messages_to_a_batched_reco() -> None:
    event = load_event(SAMPLE)
    work = work_message(50)
    ext = PixelWorker(event, "external", {"command": PY_CHILD, "batch": "16"}, "w")
    try:
        got = ext.handle(work)
        assert ext.reco._next_id == 4  # type: ignore[attr-defined]  # 50 fits: requests of 16, 16, 16, 2
    finally:
        ext.reco.close()  # type: ignore[attr-defined]
    ref = PixelWorker(event, "dummy", {}, "w").handle(work)
    assert np.array_equal(got.fits, ref.fits) and got.errors == (None,) * 50
    assert np.array_equal(got.pixels, ref.pixels) and np.isfinite(got.reco_runtime_s).all()


def test_a_batch_that_raises_fails_every_item() -> None:
    class Broken(DummyReco):
        batched = True

        def fit_batch(self, prepared: Any, requests: Any) -> list[FitResult | Exception]:
            raise OSError("pipe gone\nsecond line")

    fits, errors, runtimes = fit_batch_arrays(Broken(), None, 8, [1, 2], [0, 1], [0.1, 0.2], [0.3, 0.4],
                                              np.full((2, 4), np.nan))
    assert np.isnan(fits).all() and errors == ("OSError: pipe gone",) * 2 and runtimes.shape == (2,)


# -- whole scans --------------------------------------------------------------------------------------
def test_embedded_scan_python_child_equals_in_process(tmp_path: Path, reference: dict[int, np.ndarray]) -> None:
    proc = scan(tmp_path, ["--reco-algo", "external"], env={"SKYSCAN_EXTERNAL_RECO": PY_CHILD})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_maps(tmp_path / NPZ, reference)
    assert "pydummy[" in proc.stderr and "dummy child" in proc.stderr  # the children's stderr, by name


def test_embedded_scan_c_child_equals_in_process(tmp_path: Path, c_child: Path,
                                                 reference: dict[int, np.ndarray]) -> None:
    proc = scan(tmp_path, ["--reco-algo", "external", "--reco-option", f"command={c_command(c_child, SAMPLE)}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_maps(tmp_path / NPZ, reference)
    assert "cdummy[" in proc.stderr


def test_version_refusal_at_the_server(tmp_path: Path) -> None:
    proc = scan(tmp_path, ["--reco-algo", "external", "--reco-option", f"command={PY_CHILD}",
                           "--reco-option", "protocol=skymap-scanner-reco/9"])
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("skymap_scanner.server: error: external reco") and "skymap-scanner-reco/9" in last


def test_child_killed_mid_scan(tmp_path: Path, reference: dict[int, np.ndarray]) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    args = ["--event-file", str(SAMPLE), "--reco-algo", "external", "--reco-option", f"command={PY_CHILD}",
            "--reco-option", f"pid_dir={pids}", "--reco-option", "sleep_s=0.002", "--output-dir", str(tmp_path),
            "--local-workers", "2", "--nsides", *NSIDES, "--no-products"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    env.update(SKYSCAN_BATCH_SIZE="16", SKYSCAN_PROGRESS_INTERVAL_SEC="0.2")
    p = subprocess.Popen([sys.executable, "-m", "skymap_scanner.server", *args], env=env, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline:  # a worker's child, once fits are flowing
            manifest = tmp_path / "scan-manifest.json"
            done = sum(x["items_received"] for x in json.loads(manifest.read_text())["progress"]) \
                if manifest.exists() else 0
            if done >= 200:
                # the handshake-only child of the server has exited; the workers' children are alive
                alive = [int(f.stem) for f in pids.glob("*.pid") if _alive(int(f.stem))]
                victim = alive[0] if alive else None
            time.sleep(0.05)
        assert victim is not None, "no fits or no child process seen"
        os.kill(victim, signal.SIGKILL)
        _, err = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, err[-3000:]
    assert f"[{victim}] exited with code -9" in err and "again (restart 1 of at most 5)" in err
    assert_same_maps(tmp_path / NPZ, reference)
    manifest = json.loads((tmp_path / "scan-manifest.json").read_text())
    assert 1 <= manifest["failures"]["failed_attempts"] <= 16 and manifest["failures"]["failed_fits"] == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_hanging_and_garbage_children_are_restarted_and_attempts_count(tmp_path: Path,
                                                                       reference: dict[int, np.ndarray]) -> None:
    """One child hangs once, one writes garbage once (each fault happens once in the whole scan)."""
    proc = scan(tmp_path, ["--reco-algo", "external", "--reco-option", f"command={PY_CHILD}",
                           "--reco-option", f"hang_once={tmp_path / 'hung'}",
                           "--reco-option", f"garbage_once={tmp_path / 'garbage'}", "--reco-option", "fit_timeout_s=0.2"],
                env={"SKYSCAN_BATCH_SIZE": "8"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "did not answer the fit request (1.6 s) in time" in proc.stderr
    assert "hanging on purpose" in proc.stderr  # the child's own stderr line
    assert "broke the protocol: not JSON: 'this is not JSON {'" in proc.stderr
    assert proc.stderr.count(" again (restart ") == 2  # one restart per fault
    manifest = json.loads((tmp_path / "scan-manifest.json").read_text())
    assert manifest["failures"]["failed_attempts"] == 16 and manifest["failures"]["failed_fits"] == 0
    assert_same_maps(tmp_path / NPZ, reference)


def test_every_fit_fails_the_scan_ends_non_zero_with_the_nan_partial_kept(tmp_path: Path) -> None:
    """A child that dies at every fit request, on the realtime pickle of the sample alert: every fit counts
    as failed, and a scan with no direction at all fails truthfully (issue 12): one line, exit 2, the all-NaN
    partial result kept under its partial name."""
    proc = scan(tmp_path, ["--reco-algo", "external", "--reco-option", f"command={PY_CHILD}",
                           "--reco-option", "crash_always=true", "--reco-option", "max_restarts=1",
                           "--reco-option", "n_posvar=1"],
                env={"SKYSCAN_MAX_ATTEMPTS": "2"}, event=BRONZE_PKL)
    assert proc.returncode == 2, proc.stderr[-3000:]
    # the error is one line (multiprocessing's resource tracker may still print a warning after it at exit)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("skymap_scanner.server: error: ")]
    assert len(errors) == 1 and errors[0].startswith("skymap_scanner.server: error: every fit failed"), errors
    # the event came from a realtime message: its frames reached the children through the workers
    assert "with 5 realtime frames (GCDQP)" in proc.stderr
    (partial,) = sorted(tmp_path.glob("*.partial.npz"))
    res = load_result(partial)
    assert res.maps[8].size == 768 and np.isnan(res.maps[8]["llh"]).all()
    assert res.maps[64].size == 0  # nothing to refine around
    assert "gave up after 1 restarts" in proc.stderr
    assert "gave up on" in proc.stderr and "recorded as failed (NaN)" in proc.stderr
    manifest = json.loads((tmp_path / "scan-manifest.json").read_text())
    assert manifest["failures"]["failed_fits"] == 768


# -- over RabbitMQ --------------------------------------------------------------------------------------
@pytest.mark.broker
@pytest.mark.parametrize("child", ["python", "c"])
def test_rabbitmq_scan_equals_in_process(tmp_path: Path, child: str, request: pytest.FixtureRequest) -> None:
    need_broker("RabbitMQ", *RABBITMQ)
    from test_broker import Scan, base_env, write_event  # the broker scan harness (tests/ is on the path)

    event = write_event(tmp_path / "event.json")
    ref_out = tmp_path / "reference"
    ref = subprocess.Popen([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(event), "--reco-algo",
                            "dummy", "--output-dir", str(ref_out), "--local-workers", "1", "--nsides", *NSIDES,
                            "--no-products"], env={k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if child == "python":  # the command comes from the server's environment, and reaches clients in the JSON
        args, env = ["--reco-algo", "external"], base_env(SKYSCAN_EXTERNAL_RECO=PY_CHILD)
        command = PY_CHILD
    else:
        command = c_command(request.getfixturevalue("c_child"), event)
        args, env = ["--reco-algo", "external", "--reco-option", f"command={command}"], base_env()
    work = tmp_path / "broker"
    work.mkdir()
    s = Scan(work, event, [*args, "--nsides", *NSIDES], env)
    try:
        s.start_server()
        assert s.startup()["reco_options"]["command"] == command
        client_env = {k: v for k, v in env.items() if k != "SKYSCAN_EXTERNAL_RECO"}
        s.env = client_env
        s.start_client()
        s.start_client()
        assert s.wait_server(180) == 0, s.logs()
        assert s.wait_clients() == [0, 0], s.logs()
        logs = s.logs(tail=10**6)
        assert ("pydummy[" if child == "python" else "cdummy[") in logs
        _, err = ref.communicate(timeout=180)
        assert ref.returncode == 0, err[-3000:]
        (ref_npz,) = ref_out.glob("*.npz")
        assert_same_maps(s.result_npz(), load_result(ref_npz).maps)
    finally:
        s.close()
        if ref.poll() is None:
            ref.kill()
            ref.wait()

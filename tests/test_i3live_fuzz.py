"""Safety of the i3live decoder: allow-listed unpickling, checksums, and fuzzing (only EventError may escape).

The number of fuzz inputs per test is ``FUZZ_EXAMPLES`` (environment, default 150); run with ``-s`` to see
how many inputs were tried in total.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import struct
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skymap_scanner.errors import EventError
from skymap_scanner.events import load_event
from skymap_scanner.events.i3live import envelope, event_from_message, event_from_pickle_bytes
from skymap_scanner.events.i3live.frame import crc32c, parse_frame
from skymap_scanner.events.model import Event

DATA = Path(__file__).parent / "data" / "events"
BRONZE = DATA / "run00136662-evt000035405932-BRONZE.pkl"
N = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=N, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    print(f"\nfuzz inputs tried: {sum(TRIED.values())} ({dict(TRIED)})")


# -- helpers: build frames and messages independently of the decoder --------------------------------------

def frame_pickle(payload: bytes, module: str = "icecube.icetray") -> bytes:
    """Protocol-2 pickle of IceTray's I3Frame: GLOBAL, REDUCE(()), BUILD(({}, payload))."""
    return (b"\x80\x02c" + module.encode() + b"\nI3Frame\n)R}T" + struct.pack("<I", len(payload)) + payload
            + b"\x86b.")


def b64_frame(pickled: bytes) -> str:
    return base64.b64encode(zlib.compress(pickled)).decode()


def native_frame(stop: str, slots: list[tuple[str, str, bytes]]) -> bytes:
    u32 = struct.Struct("<I").pack
    body = b"".join(u32(len(k)) + k.encode() + u32(len(t)) + t.encode() + u32(len(b)) + b for k, t, b in slots)
    crc = crc32c(stop.encode() + u32(len(slots)) + body)
    return b"[i3]" + u32(6) + b"\x00\x00" + stop.encode() + u32(len(slots)) + body + u32(crc)


def _bronze() -> dict[str, Any]:
    return envelope.load_message_pickle(BRONZE.read_bytes())


BRONZE_MSG = _bronze()
FRAMES = {stop: parse_frame(envelope.frame_payload(b64), stop) for stop, b64 in BRONZE_MSG["value"]["data"]["frames"]}
Q_SLOTS = [(s.key, s.type_name, s.buf) for s in FRAMES["Q"].slots]
P_SLOTS = [(s.key, s.type_name, s.buf) for s in FRAMES["P"].slots]


def message(q_slots: list[tuple[str, str, bytes]] = Q_SLOTS, p_slots: list[tuple[str, str, bytes]] = P_SLOTS,
            q_b64: str | None = None, p_b64: str | None = None) -> dict[str, Any]:
    """The Bronze alert reduced to its Q and P frames (fast to decode), with optional replacements."""
    msg = json.loads(json.dumps({k: v for k, v in BRONZE_MSG.items()}, default=str))
    data = msg["value"]["data"]
    q = q_b64 or b64_frame(frame_pickle(native_frame("Q", q_slots)))
    p = p_b64 or b64_frame(frame_pickle(native_frame("P", p_slots)))
    data["frames"] = [["Q", q], ["P", p]]
    return msg


SMALL_MSG = message()
SMALL_PICKLE = pickle.dumps(SMALL_MSG, protocol=3)


def test_the_reduced_message_still_decodes() -> None:
    ev = event_from_message(message(), "small")
    assert (ev.run_id, ev.event_id, len(ev.pulses), ev.pulses.n_doms) == (136662, 35405932, 668, 133)
    ev2 = event_from_pickle_bytes(SMALL_PICKLE, "small.pkl")
    assert ev2.pulses.time_ns.tolist() == ev.pulses.time_ns.tolist()


# -- allow-listed unpickling -------------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_message_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw = pickle.dumps({"value": {"data": _Evil(marker)}}, protocol=3)
    path = tmp_path / "evil.pkl"
    path.write_bytes(raw)
    with pytest.raises(EventError, match=r"refused to load (posix|os)\.system"):
        load_event(path)
    assert not marker.exists()
    # the same payload through a plain pickle.loads WOULD run it: proof the test is meaningful
    pickle.loads(raw)
    assert marker.exists()


def test_malicious_frame_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = b64_frame(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(EventError, match=r"frame 1 \(Physics, P\): refused to load (posix|os)\.system"):
        event_from_message(message(p_b64=evil), "evil.json")
    assert not marker.exists()


def test_frame_pickle_may_not_call_anything_else() -> None:
    sneaky = b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R."
    with pytest.raises(EventError, match=r"refused to load builtins\.eval"):
        event_from_message(message(q_b64=b64_frame(sneaky)), "x")
    odd = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R."
    with pytest.raises(EventError, match="refused _codecs.encode"):
        event_from_message(message(q_b64=b64_frame(odd)), "x")


def test_2023a_frame_pickle_with_codecs_encode_decodes() -> None:
    payload = native_frame("Q", Q_SLOTS)
    text = payload.decode("latin-1")
    enc = text.encode("utf-8")
    pickled = (b"\x80\x02cicecube._icetray\nI3Frame\n)R}c_codecs\nencode\nX" + struct.pack("<I", len(enc)) + enc
               + b"X\x06\x00\x00\x00latin1\x86R\x86b.")
    ev = event_from_message(message(q_b64=b64_frame(pickled)), "x")
    assert len(ev.pulses) == 668


# -- corruption is a clear error naming frame and object ---------------------------------------------------

def test_bit_flip_in_a_frame_fails_its_checksum() -> None:
    raw = bytearray(native_frame("P", P_SLOTS))
    raw[300] ^= 0x10
    with pytest.raises(EventError, match=r"frame 1 \(Physics, P\): checksum mismatch"):
        event_from_message(message(p_b64=b64_frame(frame_pickle(bytes(raw)))), "x")


def test_truncated_object_names_frame_and_object() -> None:
    q = [(k, t, b[:-7] if k == "I3SuperDST" else b) for k, t, b in Q_SLOTS]
    with pytest.raises(EventError, match=r"DAQ frame \(Q\), object 'I3SuperDST' \(I3SuperDST\): .*"):
        event_from_message(message(q_slots=q), "x")
    p = [(k, t, b[:40] if k == "I3EventHeader" else b) for k, t, b in P_SLOTS]
    with pytest.raises(EventError, match=r"Physics frame \(P\), object 'I3EventHeader' \(I3EventHeader\): truncated"):
        event_from_message(message(p_slots=p), "x")


def test_truncated_or_damaged_errata_name_frame_and_object() -> None:
    assert any(k == "CalibrationErrata" for k, _, _ in Q_SLOTS)
    where = r"^x: DAQ frame \(Q\), object 'CalibrationErrata' \(I3Map<OMKey, I3TimeWindowSeries>\): "
    with pytest.raises(EventError, match=where + "(truncated|count .* exceeds)") as e:
        event_from_message(_mutate("Q:CalibrationErrata", lambda b: b[:-3]), "x")
    assert "\n" not in str(e.value)
    # the last window's start and stop swapped: a window that ends before it starts
    with pytest.raises(EventError, match=where + ".*starts after it stops"):
        event_from_message(_mutate("Q:CalibrationErrata", lambda b: b[:-16] + b[-8:] + b[-16:-8]), "x")
    # without the object the event has no errata windows (older alerts)
    ev = event_from_message(message(q_slots=[s for s in Q_SLOTS if s[0] != "CalibrationErrata"]), "x")
    assert ev.calibration_errata.shape == (0, 4)
    assert len(event_from_message(message(), "x").calibration_errata) > 0


def test_missing_objects_and_frames_are_clear_errors() -> None:
    p = [s for s in P_SLOTS if s[0] != "SplitUncleanedInIcePulses"]
    with pytest.raises(EventError, match="none of the split pulse series"):
        event_from_message(message(p_slots=p), "x")
    msg = message()
    msg["value"]["data"]["frames"] = msg["value"]["data"]["frames"][:1]
    with pytest.raises(EventError, match="no P"):
        event_from_message(msg, "x")
    msg = message()
    msg["value"]["data"]["run_id"] = 1
    with pytest.raises(EventError, match="run_id 1 but"):
        event_from_message(msg, "x")


def test_files_that_are_no_event_are_clear_errors(tmp_path: Path) -> None:
    for content, pattern in ((b"\x80\x03garbage", "not a valid pickle"), (b"[1, 2]", "not an IceCube realtime"),
                             (b'{"value": {"data": 3}}', "expected a list or an object"),
                             (b"hello", "neither JSON nor")):
        f = tmp_path / "x"
        f.write_bytes(content)
        with pytest.raises(EventError, match=pattern):
            load_event(f)


# -- fuzzing -----------------------------------------------------------------------------------------------

def _decode_or_event_error(fn: Any, *args: Any) -> None:
    try:
        out = fn(*args)
    except EventError as e:
        assert str(e).startswith("x: ") and "\n" not in str(e)
    else:
        assert isinstance(out, Event)


@FUZZ
@given(st.integers(min_value=0, max_value=len(SMALL_PICKLE) - 1))
def test_fuzz_truncated_pickle(n: int) -> None:
    TRIED["truncated pickle"] += 1
    with pytest.raises(EventError):
        event_from_pickle_bytes(SMALL_PICKLE[:n], "x")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(SMALL_PICKLE) - 1), st.integers(0, 7)), min_size=1, max_size=4))
def test_fuzz_bit_flipped_pickle(flips: list[tuple[int, int]]) -> None:
    TRIED["bit-flipped pickle"] += 1
    raw = bytearray(SMALL_PICKLE)
    for pos, bit in flips:
        raw[pos] ^= 1 << bit
    _decode_or_event_error(event_from_pickle_bytes, bytes(raw), "x")


def _slot_strategy() -> st.SearchStrategy[tuple[str, int]]:
    names = [f"Q:{k}" for k, _, _ in Q_SLOTS] + [f"P:{k}" for k, _, _ in P_SLOTS]
    return st.tuples(st.sampled_from(names), st.integers(0, 10**6))


def _mutate(target: str, fn: Any) -> dict[str, Any]:
    stop, key = target.split(":", 1)
    q = [(k, t, fn(b) if stop == "Q" and k == key else b) for k, t, b in Q_SLOTS]
    p = [(k, t, fn(b) if stop == "P" and k == key else b) for k, t, b in P_SLOTS]
    return message(q_slots=q, p_slots=p)


@FUZZ
@given(_slot_strategy(), st.integers(0, 7))
def test_fuzz_bit_flipped_object_with_valid_checksum(slot: tuple[str, int], bit: int) -> None:
    """Flip one bit inside one frame object and re-checksum, so the object decoders see the damage."""
    TRIED["bit-flipped object"] += 1
    target, where = slot

    def flip(b: bytes) -> bytes:
        a = bytearray(b)
        if a:
            a[where % len(a)] ^= 1 << bit
        return bytes(a)

    _decode_or_event_error(event_from_message, _mutate(target, flip), "x")


@FUZZ
@given(_slot_strategy())
def test_fuzz_truncated_object_with_valid_checksum(slot: tuple[str, int]) -> None:
    TRIED["truncated object"] += 1
    target, where = slot
    _decode_or_event_error(event_from_message, _mutate(target, lambda b: b[: where % max(1, len(b))]), "x")


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_object_bytes(blob: bytes) -> None:
    TRIED["random object"] += 1
    _decode_or_event_error(event_from_message, _mutate("Q:I3SuperDST", lambda b: b[:40] + blob), "x")
    _decode_or_event_error(event_from_message, _mutate("P:SplitUncleanedInIcePulses", lambda b: b[:60] + blob), "x")
    _decode_or_event_error(event_from_message, _mutate("Q:CalibrationErrata", lambda b: b[:60] + blob), "x")


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_files(blob: bytes) -> None:
    TRIED["random file"] += 1
    with tempfile.TemporaryDirectory() as d:
        for head in (b"", b"\x80", b"\x80\x03"):
            f = Path(d) / "ev"
            f.write_bytes(head + blob)
            with pytest.raises(EventError):
                load_event(f)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=20)


@FUZZ
@given(_json, st.lists(st.tuples(st.sampled_from("GCDQPX"), _json | st.text(max_size=30)), max_size=3))
def test_fuzz_random_messages(value: Any, frames: list[tuple[str, Any]]) -> None:
    TRIED["random message"] += 1
    _decode_or_event_error(event_from_message, value, "x")
    _decode_or_event_error(event_from_message, {"value": {"data": [list(f) for f in frames]}}, "x")
    _decode_or_event_error(event_from_message, {"value": {"version": "2023a", "data": {"frames": value}}}, "x")

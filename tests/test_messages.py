"""Work and result messages: JSON round trips (hypothesis) and validation of what comes off the wire."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skymap_scanner.collector import FIT_FIELDS
from skymap_scanner.errors import MessageError
from skymap_scanner.messages import (
    MAX_ITEMS,
    RESULT_SCHEMA,
    WORK_SCHEMA,
    ResultMessage,
    WorkMessage,
    decode_result,
    decode_work,
    encode,
)

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe_nan = st.one_of(finite, st.just(math.nan))


@st.composite
def work_messages(draw: Any) -> WorkMessage:
    nside = 2 ** draw(st.integers(0, 13))
    n = draw(st.integers(1, 20))
    pixels = draw(st.lists(st.integers(0, 12 * nside * nside - 1), min_size=n, max_size=n))
    seeds = [draw(st.one_of(st.just([math.nan] * 4), st.lists(finite, min_size=4, max_size=4))) for _ in range(n)]
    return WorkMessage(
        draw(st.text(min_size=1, max_size=80)), draw(st.integers(0, 2**62)), nside,
        np.array(pixels, np.int64), np.array(draw(st.lists(st.integers(0, 63), min_size=n, max_size=n)), np.int64),
        np.array(draw(st.lists(finite, min_size=n, max_size=n))),
        np.array(draw(st.lists(finite, min_size=n, max_size=n))),
        np.array(seeds, np.float64).reshape(n, 4), draw(st.integers(1, 10)),
    )


@st.composite
def result_messages(draw: Any) -> ResultMessage:
    nside = 2 ** draw(st.integers(0, 13))
    n = draw(st.integers(1, 20))
    pixels = draw(st.lists(st.integers(0, 12 * nside * nside - 1), min_size=n, max_size=n))
    fits = draw(st.lists(st.lists(maybe_nan, min_size=7, max_size=7), min_size=n, max_size=n))
    errors = draw(st.lists(st.one_of(st.none(), st.text(max_size=50)), min_size=n, max_size=n))
    return ResultMessage(
        draw(st.text(min_size=1, max_size=80)), draw(st.integers(0, 2**62)), nside, np.array(pixels, np.int64),
        np.array(draw(st.lists(st.integers(0, 63), min_size=n, max_size=n)), np.int64),
        np.array(fits, np.float64).reshape(n, 7), tuple(errors),
        np.array(draw(st.lists(st.floats(0, 1e4), min_size=n, max_size=n))), draw(st.text(max_size=100)),
    )


def strict_json(wire: bytes) -> Any:
    """Parse refusing NaN/Infinity (which Python's json would accept and other parsers would not)."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name} on the wire")

    return json.loads(wire, parse_constant=refuse)


def assert_work_equal(a: WorkMessage, b: WorkMessage) -> None:
    assert (a.scan_id, a.batch_id, a.nside, a.attempt) == (b.scan_id, b.batch_id, b.nside, b.attempt)
    for name in ("pixels", "posvars", "zenith_rad", "azimuth_rad", "seeds"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def assert_result_equal(a: ResultMessage, b: ResultMessage) -> None:
    assert (a.scan_id, a.batch_id, a.nside, a.client, a.errors) == (b.scan_id, b.batch_id, b.nside, b.client, b.errors)
    for name in ("pixels", "posvars", "fits", "reco_runtime_s"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


@settings(max_examples=100, deadline=None)
@given(work_messages())
def test_work_round_trip(msg: WorkMessage) -> None:
    wire = encode(msg)
    strict_json(wire)  # NaN travels as null
    assert_work_equal(decode_work(wire), msg)
    assert_work_equal(decode_work(wire.decode()), msg)
    # what mqclient hands over: the decoded JSON object
    assert_work_equal(decode_work(json.loads(wire)), msg)


@settings(max_examples=100, deadline=None)
@given(result_messages())
def test_result_round_trip(msg: ResultMessage) -> None:
    wire = encode(msg)
    strict_json(wire)
    back = decode_result(wire)
    assert_result_equal(back, msg)
    assert back.fits.shape == (len(msg.pixels), len(FIT_FIELDS))


def work_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"schema": WORK_SCHEMA, "scan_id": "s", "batch_id": 1, "nside": 8, "attempt": 1,
                         "pixel": [0, 767], "posvar": [0, 1], "zenith": [0.1, 0.2], "azimuth": [1.0, 2.0],
                         "seed": [None, [1.0, 2.0, 3.0, 4.0]]}
    d.update(over)
    return d


def result_dict(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"schema": RESULT_SCHEMA, "scan_id": "s", "batch_id": 1, "nside": 8, "pixel": [0, 767],
                         "posvar": [0, 1], **{f: [1.0, None] for f in FIT_FIELDS}, "error": [None, "boom"],
                         "reco_runtime_s": [0.1, 0.2], "client": "host:1"}
    d.update(over)
    return d


def test_valid_dicts_decode() -> None:
    w = decode_work(work_dict())
    assert w.pixels.tolist() == [0, 767] and np.isnan(w.seeds[0]).all() and w.seeds[1].tolist() == [1, 2, 3, 4]
    r = decode_result(result_dict())
    assert r.errors == (None, "boom") and np.isnan(r.fits[1]).all() and r.fits[0].tolist() == [1.0] * 7


BAD_WORK = {
    "not an object": [1, 2],
    "wrong schema": work_dict(schema="skymap-scanner-work/2"),
    "no scan id": work_dict(scan_id=""),
    "scan id not a string": work_dict(scan_id=5),
    "negative batch id": work_dict(batch_id=-1),
    "bool batch id": work_dict(batch_id=True),
    "nside not a power of 2": work_dict(nside=12),
    "nside zero": work_dict(nside=0),
    "pixel beyond nside": work_dict(pixel=[0, 768]),
    "negative pixel": work_dict(pixel=[-1, 3]),
    "float pixel": work_dict(pixel=[0.0, 3]),
    "no items": work_dict(pixel=[], posvar=[], zenith=[], azimuth=[], seed=[]),
    "length mismatch": work_dict(posvar=[0]),
    "string direction": work_dict(zenith=["0.1", 0.2]),
    "NaN direction": work_dict(zenith=[None, 0.2]),
    "short seed": work_dict(seed=[None, [1.0, 2.0]]),
    "bad attempt": work_dict(attempt=0),
    "huge integer": work_dict(pixel=[2**70, 1]),
}


@pytest.mark.parametrize("doc", list(BAD_WORK.values()), ids=list(BAD_WORK))
def test_bad_work_is_one_line_message_error(doc: Any) -> None:
    with pytest.raises(MessageError) as e:
        decode_work(doc)
    assert "\n" not in str(e.value) and str(e.value).startswith("work message")


BAD_RESULTS = {
    "garbage bytes": b"\xff\xfe not json",
    "truncated JSON": json.dumps(result_dict())[:-5],
    "deeply nested": "[" * 100_000 + "]" * 100_000,
    "work schema": result_dict(schema=WORK_SCHEMA),
    "missing field": {k: v for k, v in result_dict().items() if k != "E_tot"},
    "bool in fits": result_dict(llh=[True, 1.0]),
    "error not a string": result_dict(error=[None, 5]),
    "client missing": {k: v for k, v in result_dict().items() if k != "client"},
    "too many items": result_dict(pixel=[0] * (MAX_ITEMS + 1), posvar=[0] * (MAX_ITEMS + 1)),
}


@pytest.mark.parametrize("raw", list(BAD_RESULTS.values()), ids=list(BAD_RESULTS))
def test_bad_result_is_one_line_message_error(raw: Any) -> None:
    with pytest.raises(MessageError) as e:
        decode_result(raw)
    assert "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=10), kids, max_size=5),
                    max_leaves=30))
def test_arbitrary_json_never_crashes_the_decoders(doc: Any) -> None:
    for decode in (decode_work, decode_result):
        try:
            decode(doc if isinstance(doc, dict) else json.dumps(doc))
        except MessageError:
            pass


@settings(max_examples=100, deadline=None)
@given(result_messages(), st.sampled_from(["pixel", "posvar", "llh", "error", "reco_runtime_s", "nside", "batch_id"]),
       st.one_of(st.none(), st.text(max_size=5), st.integers(-5, 5), st.lists(st.text(max_size=3), max_size=3)))
def test_corrupted_field_is_rejected_or_still_consistent(msg: ResultMessage, key: str, value: Any) -> None:
    d = json.loads(encode(msg))
    d[key] = value
    try:
        back = decode_result(d)
    except MessageError:
        return
    # if it still decodes, it is a self-consistent message
    n = len(back.pixels)
    assert back.posvars.shape == (n,) and back.fits.shape == (n, 7) and len(back.errors) == n
    assert (back.pixels < 12 * back.nside**2).all()

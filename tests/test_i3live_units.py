"""Unit tests of the i3live building blocks on small synthetic inputs."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skymap_scanner.events.i3live import cleaning, envelope, i3time
from skymap_scanner.events.i3live.archive import DecodeError, Reader
from skymap_scanner.events.i3live.frame import _crc32c_lanes, crc16_ccitt, crc32c, parse_frame
from skymap_scanner.events.i3live.objects import I3Time, PulseMask, apply_mask
from skymap_scanner.events.i3live.pulsemap import PulseMap
from skymap_scanner.events.i3live.superdst import _expand_widths, _readouts, _unpack


def build_frame(stop: str, slots: list[tuple[str, str, bytes]], checksum: int | None = None) -> bytes:
    """A version-6 I3Frame (spec section 2), written independently of the decoder."""
    u32 = struct.Struct("<I").pack
    body = b"".join(u32(len(k.encode())) + k.encode() + u32(len(t.encode())) + t.encode() + u32(len(b)) + b
                    for k, t, b in slots)
    if checksum is None:
        checksum = crc32c(stop.encode() + u32(len(slots)) + body)
    return b"[i3]" + u32(6) + b"\x00\x00" + stop.encode() + u32(len(slots)) + body + u32(checksum)


def test_crc32c_published_check_value() -> None:
    # CRC-32C check value for "123456789" with the usual init/xor-out 0xFFFFFFFF
    assert crc32c(b"123456789", 0xFFFFFFFF) ^ 0xFFFFFFFF == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"abc" + b"def") == crc32c(b"def", crc32c(b"abc"))


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 20000))
def test_crc32c_lanes_equal_the_byte_loop(data: bytes, zeros: int) -> None:
    """The numpy lane implementation (long inputs) agrees with the plain byte-at-a-time loop."""
    data = bytes(zeros) + data + bytes(zeros % 7)
    expected = 0
    for b in data:
        expected = _byte_step(expected, b)
    assert _crc32c_lanes(data) == expected


def _byte_step(crc: int, b: int) -> int:
    crc ^= b
    for _ in range(8):
        crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc


def test_crc16_ccitt_published_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE


def test_frame_round_trip_and_checksum() -> None:
    raw = build_frame("P", [("a", "I3Bool", b"\x01\x02"), ("b", "X", b"")])
    f = parse_frame(raw, "P")
    assert [(s.key, s.type_name, s.buf) for s in f.slots] == [("a", "I3Bool", b"\x01\x02"), ("b", "X", b"")]
    bad = build_frame("P", [("a", "I3Bool", b"\x01\x02")], checksum=1234)
    with pytest.raises(DecodeError, match="checksum"):
        parse_frame(bad)
    with pytest.raises(DecodeError, match="stop"):
        parse_frame(raw, "Q")
    with pytest.raises(DecodeError, match="truncated|exceeds"):
        parse_frame(raw[:-9])
    with pytest.raises(DecodeError, match="magic"):
        parse_frame(b"[i4]" + raw[4:])


def test_version_5_frame_uses_crc16() -> None:
    u32 = struct.Struct("<I").pack
    body = u32(1) + b"k" + u32(1) + b"T" + u32(2) + b"ab"
    crc = crc16_ccitt(b"Q" + u32(1) + body)
    raw = b"[i3]" + u32(5) + b"\x00\x00Q" + u32(1) + body + struct.pack("<H", crc)
    f = parse_frame(raw, "Q")
    assert f.version == 5 and f.get("k") is not None and f.get("k").buf == b"ab"  # type: ignore[union-attr]
    with pytest.raises(DecodeError, match="checksum"):
        parse_frame(raw[:-2] + struct.pack("<H", crc ^ 1))


def test_reader_bounds_and_counts() -> None:
    r = Reader(struct.pack("<IH", 7, 3), "test")
    assert r.u32() == 7
    with pytest.raises(DecodeError, match="truncated test: need 4 bytes at offset 4, 2 left"):
        r.u32()
    r = Reader(struct.pack("<IQ", 0xFFFFFFFF, 2) + b"xy", "t")
    assert r.count() == 2 and r.raw(2) == b"xy"
    r.done()
    with pytest.raises(DecodeError, match="exceeds"):
        Reader(struct.pack("<I", 1000) + b"ab").count()
    r = Reader(struct.pack("<I", 5))
    with pytest.raises(DecodeError, match="expected 0"):
        r.object_id()


def test_width_run_length_code() -> None:
    # code 3, run length 0x12 = 18 written as two nibbles (low first): 0x23, 0x13; then code 1, length 2
    codes = np.array([0x23, 0x13, 0x21], dtype=np.uint8)
    assert _expand_widths(codes, 100, "t") == [3] * 18 + [1] * 2
    with pytest.raises(DecodeError, match="more widths"):
        _expand_widths(codes, 10, "t")


def _stamp(t: int, q: int, hlc: bool, stop: bool) -> int:
    return (t & 0xFF) | (q << 8) | (int(hlc) << 14) | (int(stop) << 15)


def test_superdst_readouts_overflow_and_delta_coding() -> None:
    dom = (21 << 6) | 9  # string 21, om 10
    headers = [dom | (1 << 13), dom]  # slop 1 -> first time += 256
    stamps = [
        _stamp(10, 63, True, False), 5,  # t = 266, q overflows: 63 + 5 = 68
        _stamp(255, 2, True, True), 40,  # dt overflows: 255 + 40
        _stamp(3, 1, False, True),  # second readout, SLC
    ]
    widths = [[0], [2, 4], [], []]  # stream 0: in-ice SLC, stream 1: in-ice HLC
    ro = _readouts(stamps, headers, widths, [], "t")
    assert ro == [(21, 10, True, [266, 295], [68, 2], [2, 4]), (21, 10, False, [3], [1], [0])]
    pm = _unpack(ro, "t")
    assert pm.keys.tolist() == [[21, 10, 0]] and pm.counts.tolist() == [3]
    t0 = -512 + 266
    np.testing.assert_allclose(pm.time_ns, [t0, t0 + 3, t0 + 295])
    np.testing.assert_allclose(pm.charge_pe, [68 * 0.05 + 0.025, 0.075, 2 * 0.05 + 0.025], rtol=1e-6)
    assert pm.lc.tolist() == [True, False, True]
    assert pm.width_ns.tolist() == [3.0, 1.0, 16.0]  # first width clipped to the 3 ns gap
    with pytest.raises(DecodeError, match="not used up"):
        _readouts(stamps + [0], headers, widths, [], "t")
    with pytest.raises(DecodeError, match="ran out"):
        _readouts(stamps[:-1], headers, widths, [], "t")


def test_mask_application() -> None:
    src = PulseMap(keys=np.array([[1, 1, 0], [1, 2, 0], [2, 5, 0]]), counts=np.array([2, 1, 3]),
                   time_ns=np.arange(6.0), charge_pe=np.ones(6, np.float32),
                   width_ns=np.ones(6, np.float32), flags=np.zeros(6, np.uint8))
    mask = PulseMask("src", np.array([True, False, True]),
                     (np.array([True, False]), np.array([False, True, True])))
    out = apply_mask(mask, src, "m")
    assert out.keys.tolist() == [[1, 1, 0], [2, 5, 0]]
    assert out.time_ns.tolist() == [0.0, 4.0, 5.0]
    empty_elem = PulseMask("src", np.array([True, False, True]), (np.zeros(2, bool), np.ones(3, bool)))
    assert apply_mask(empty_elem, src, "m").keys.tolist() == [[2, 5, 0]]
    with pytest.raises(DecodeError, match="key bits"):
        apply_mask(PulseMask("src", np.ones(2, bool), ()), src, "m")
    with pytest.raises(DecodeError, match="has 3 bits"):
        apply_mask(PulseMask("src", np.array([True, False, False]), (np.ones(3, bool),)), src, "m")


def test_i3time_leap_seconds() -> None:
    ticks = 10**10
    # 2016 ended with a leap second: 366 days + 1 s after 2016-01-01 is still 2016-12-31 (23:59:60)
    t = I3Time(2016, (365 * 86400 + 86400) * ticks)
    assert i3time.to_datetime_string(t) == "2016-12-31 23:59:60.000000"
    assert i3time.to_datetime_string(I3Time(2016, (366 * 86400 + 1) * ticks)) == "2017-01-01 00:00:00.000000"
    # 2015 had a leap second on June 30 (MJD 57203): afterwards the day count is shifted by 1 s
    after = I3Time(2015, (200 * 86400 + 1) * ticks + 123_456_789)
    assert i3time.to_datetime_string(after) == "2015-07-20 00:00:00.012345"
    assert i3time.to_mjd(after) == pytest.approx(57223 + 0.0123456789 / 86400, abs=1e-11)
    with pytest.raises(DecodeError):
        i3time.to_mjd(I3Time(2016, -1))


def test_seeded_rt_seeds_need_two_partner_doms() -> None:
    xyz = np.array([[0.0, 0, 0], [100.0, 0, 0], [0, 100.0, 0], [1000.0, 0, 0]])
    # DOM 0 and 1 HLC at the same time: each has only 1 partner DOM -> no seeds, nothing kept
    keep = cleaning.seeded_rt([0, 1], [0.0, 10.0], [True, True], xyz)
    assert not keep.any()
    # add an HLC pulse on DOM 2: all three are seeds; an SLC pulse near them is added, a far one is not
    keep = cleaning.seeded_rt([0, 1, 2, 0, 3], [0.0, 10.0, 20.0, 500.0, 30.0],
                              [True, True, True, False, False], xyz)
    assert keep.tolist() == [True, True, True, True, False]
    # a second pulse on the same DOM counts as a partner DOM (self-coincidence)
    keep = cleaning.seeded_rt([0, 0, 1], [0.0, 50.0, 60.0], [True, True, True], xyz)
    assert keep.all()
    # time: |dt| must be < 1000 ns
    dom, hlc = [0, 0, 2, 1], [True, True, True, False]
    assert cleaning.seeded_rt(dom, [0.0, 0.0, 0.0, 1000.0], hlc, xyz).tolist() == [True, True, True, False]
    assert cleaning.seeded_rt(dom, [0.0, 0.0, 0.0, 999.5], hlc, xyz).all()
    # space: the distance must be <= 150 m
    for d_m, kept in ((150.0, True), (150.01, False)):
        pair = np.array([[0.0, 0, 0], [0, 0, d_m]])
        assert cleaning.seeded_rt([0, 0, 1], [0.0, 10, 20], [True] * 3, pair).tolist() == [kept] * 3


def test_seeded_rt_grows_in_at_most_three_steps() -> None:
    # a chain of SLC pulses 100 m apart, hanging off a seed triangle at x = 0
    xyz = np.array([[0.0, 0, 0], [0, 100.0, 0], [0, -100.0, 0]] + [[100.0 * k, 0, 0] for k in range(1, 6)])
    dom = [0, 1, 2, 3, 4, 5, 6, 7]
    t = [0.0, 0, 0, 100, 200, 300, 400, 500]
    hlc = [True, True, True, False, False, False, False, False]
    keep = cleaning.seeded_rt(dom, t, hlc, xyz)
    assert keep.tolist() == [True] * 3 + [True, True, True, False, False]


def test_time_window_picks_the_fullest_and_earliest() -> None:
    t = np.array([0.0, 100, 200, 10_000, 10_100, 10_200, 30_000])
    assert cleaning.max_time_window(t).tolist() == [True, True, True, False, False, False, False]
    t2 = np.array([0.0, 6000.0, 6001.0])  # window end - start <= 6000 is inside
    assert cleaning.max_time_window(t2).tolist() == [True, True, False]


def test_stats_round_qtot_to_five_decimals() -> None:
    s = cleaning.stats([1, 1, 2], [1, 1, 3], np.array([0.125, 0.575, 1.025], np.float32))
    assert (s.nch, s.npulses) == (2, 3)
    assert s.qtot == round(float(np.float32(0.125) + np.float32(0.575) + np.float32(1.025)), 5)


@pytest.mark.parametrize("message, data, followup, expected", [
    ({"varname": "heseEvent16Data", "value": {"zmqnotify": {"topics": "heseEvent16Data"}}}, {}, None, "HESE"),
    ({"value": {"streams": ["neutrino"]}}, {}, None, "neutrino"),
    ({"value": {}}, {"run_id": 1, "ehe": {}}, None, "EHE"),
    ({"value": {"streams": ["estres"]}}, {}, None, "ESTRES"),
    ({"value": {}}, {}, {"gold": {}}, "GOLD"),
    ({"value": {"streams": ["bronze"]}}, {}, None, "BRONZE"),
    ({"value": {}}, {}, None, "unknown"),
])
def test_event_type_from_the_alert_message(message: dict, data: dict, followup: dict | None, expected: str) -> None:
    assert envelope.event_type(message, data, followup) == expected

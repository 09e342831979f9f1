"""Contour-driven refinement (``NSIDE:c``): the progression syntax, the selection rule on hand-built
samples, the engine's re-evaluation, and whole scans on the dummy reco's elliptical minimum."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import healpy as hp
import numpy as np
import numpy.typing as npt
import pytest

from skymap_scanner.checkpoint import RECORD_DTYPE, ResultLog
from skymap_scanner.collector import RESULT_DTYPE
from skymap_scanner.config import EnvConfig
from skymap_scanner.contour import (
    DEFAULT_CONTOUR_LEVEL,
    DEFAULT_CONTOUR_MARGIN,
    best_llh_of,
    fully_resolved,
    region_area_by_nside,
    select_contour_parents,
)
from skymap_scanner.engine import ScanEngine
from skymap_scanner.errors import ConfigError
from skymap_scanner.events import load_event
from skymap_scanner.pixels import (
    DEFAULT_CONTOUR_BUDGET,
    NsideStep,
    parent_pixels,
    parse_progression,
    pixel_radec,
)
from skymap_scanner.results import load_result
from skymap_scanner.scan import ScanRunner, ScanSpec, scan_event
from skymap_scanner.server.__main__ import parser as server_parser
from skymap_scanner.transport.registry import TransportOptions, make_server_transport

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "resources" / "sample_events" / "run00136662-evt000035405932-BRONZE.json"
LEVEL, MARGIN = DEFAULT_CONTOUR_LEVEL, DEFAULT_CONTOUR_MARGIN


# -- syntax -------------------------------------------------------------------------------------------


def test_contour_syntax() -> None:
    steps = parse_progression("8:0 64:c 512:c250")
    assert steps == (NsideStep(8, 0), NsideStep(64, DEFAULT_CONTOUR_BUDGET, True), NsideStep(512, 250, True))
    assert " ".join(map(str, steps)) == "8:0 64:c 512:c250"
    assert parse_progression(" ".join(map(str, steps))) == steps  # round trip (provenance, scan id)
    mixed = parse_progression(["8:0", "64:12", "512:c"])
    assert [s.contour for s in mixed] == [False, False, True]
    assert parse_progression("8:0 64:12 512:24") == (NsideStep(8, 0), NsideStep(64, 12), NsideStep(512, 24))


@pytest.mark.parametrize("spec,needle", [
    ("8:0 64:c0", "budget must be at least 1"),
    ("8:0 64:cx", "expected NSIDE:N"),
    ("8:0 64:C", "expected NSIDE:N"),
    ("8:0 64:cc", "expected NSIDE:N"),
    ("8:0 64:c-5", "expected NSIDE:N"),
    ("8:0 64:c 12", "expected NSIDE:N"),
    ("8:c 64:c", "first nside step must be NSIDE:0"),
    ("8:0 48:c", "power of 2"),
    ("8:0 64:c 64:c", "strictly ascending"),
])
def test_bad_contour_syntax(spec: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as e:
        parse_progression(spec)
    assert "\n" not in str(e.value)


def test_server_cli_contour_options() -> None:
    base = ["--event-file", "x.json", "--reco-algo", "dummy", "--output-dir", "out"]
    args = server_parser().parse_args([*base, "--contour-level", "9.5", "--contour-margin", "1"])
    assert (args.contour_level, args.contour_margin) == (9.5, 1.0)
    assert server_parser().parse_args(base).contour_level is None
    for bad in (["--contour-level", "0"], ["--contour-margin", "-1"], ["--contour-level", "nan"],
                ["--contour-level", "x"]):
        with pytest.raises(SystemExit):
            server_parser().parse_args([*base, *bad])


# -- the rule on hand-built samples -------------------------------------------------------------------


def maps_of(**by_nside: tuple[npt.ArrayLike, npt.ArrayLike]) -> dict[int, npt.NDArray[np.void]]:
    """{nside: result array} from keyword ``n<nside>=(pixels, llh)``."""
    out = {}
    for key, (pix, llh) in by_nside.items():
        arr = np.zeros(np.size(pix), dtype=RESULT_DTYPE)
        arr["index"], arr["llh"] = pix, llh
        out[int(key[1:])] = arr
    return out


def ellipse_llh(nside: int, pix: npt.ArrayLike, ra0: float = 1.0, dec0: float = 0.3, scale: float = 1000.0,
                q: float = 2.0) -> npt.NDArray[np.float64]:
    """The dummy reco's landscape on the sky: 2*Delta-llh ~= scale * (a**2 + q**2 b**2), a, b in rad."""
    ra, dec = pixel_radec(nside, pix)
    v = np.asarray(hp.ang2vec(np.pi / 2 - dec, ra)).reshape(-1, 3)
    p = np.asarray(hp.ang2vec(np.pi / 2 - dec0, ra0))
    m = np.array([0.0, 0.0, 1.0]) - p[2] * p
    m /= np.linalg.norm(m)
    b = v @ m
    return np.asarray(scale * (1 - v @ p) + scale * (q * q - 1) * b * b / 2, dtype=np.float64)


def test_rule_refines_every_pixel_inside_and_none_far_outside() -> None:
    pix = np.arange(hp.nside2npix(16))
    llh = ellipse_llh(16, pix, scale=300.0)
    sel = select_contour_parents(maps_of(n16=(pix, llh)), 16, budget=10_000)
    d2 = 2 * (llh - llh.min())
    assert set(pix[d2 < LEVEL]) <= set(sel.parents.tolist())
    assert set(sel.parents.tolist()) == set(pix[d2 < LEVEL + MARGIN].tolist())  # no finer samples: exactly these
    assert not sel.over_budget and sel.n_inside == int((d2 < LEVEL).sum()) > 5
    assert np.all(np.diff(d2[sel.parents]) >= 0)  # lowest first


def test_rule_budget_lowest_first_and_counted_with_earlier_refinements() -> None:
    pix = np.arange(hp.nside2npix(16))
    llh = ellipse_llh(16, pix, scale=300.0)
    d2 = 2 * (llh - llh.min())
    order = np.argsort(d2, kind="stable")
    sel = select_contour_parents(maps_of(n16=(pix, llh)), 16, budget=5)
    assert sel.over_budget and sel.parents.size == 5
    assert np.array_equal(np.sort(sel.parents), np.sort(order[:5]))  # the 5 lowest
    assert sel.n_cut_inside == int((d2 < LEVEL).sum()) - 5
    # parents refined before count against the budget and are never chosen again
    again = select_contour_parents(maps_of(n16=(pix, llh)), 16, budget=8, already=sel.parents)
    assert again.parents.size == 3 and not set(again.parents.tolist()) & set(sel.parents.tolist())
    assert np.array_equal(np.sort(again.parents), np.sort(order[5:8]))
    spent = select_contour_parents(maps_of(n16=(pix, llh)), 16, budget=5, already=sel.parents)
    assert spent.parents.size == 0 and spent.over_budget
    # inside the level before the margin: with a budget of the inside count, nothing from the margin
    n_in = int((d2 < LEVEL).sum())
    exact = select_contour_parents(maps_of(n16=(pix, llh)), 16, budget=n_in)
    assert np.all(d2[exact.parents] < LEVEL) and exact.n_cut_inside == 0 and exact.over_budget


def test_rule_neighbour_of_a_low_finer_sample() -> None:
    coarse = np.arange(hp.nside2npix(8))
    refined = 300  # one coarse pixel, refined into its 64 nside-64 children
    children = hp.nest2ring(64, hp.ring2nest(8, refined) * 64 + np.arange(64))
    # a child on the edge of the refined pixel: some of its 8 neighbours lie in other coarse pixels
    nb = hp.get_all_neighbours(64, children)
    outside = parent_pixels(64, np.where(nb >= 0, nb, children[None, :]).ravel(), 8).reshape(nb.shape) != refined
    edge = int(children[np.flatnonzero(outside.any(axis=0))[0]])
    touched = {int(p) for p in parent_pixels(64, hp.get_all_neighbours(64, edge), 8)} - {refined}
    coarse_llh = np.full(coarse.size, 100.0)  # every coarse sample far above the best
    fine_llh = np.full(children.size, 100.0)
    fine_llh[children == edge] = 0.0  # the best fit, found at the finer nside, at the edge
    maps = maps_of(n8=(coarse, coarse_llh), n64=(children, fine_llh))
    sel = select_contour_parents(maps, 8, budget=100, already=[refined])
    assert set(sel.parents.tolist()) == touched and len(touched) >= 1
    # the same fine sample far above the best (another sample is the best) touches nothing
    fine_llh[children == edge] = 50.0
    fine_llh[children == children[children != edge][0]] = 0.0
    inner = int(children[children != edge][0])
    inner_touched = {int(p) for p in parent_pixels(64, hp.get_all_neighbours(64, inner), 8)} - {refined}
    sel = select_contour_parents(maps_of(n8=(coarse, coarse_llh), n64=(children, fine_llh)), 8, budget=100,
                                 already=[refined])
    assert set(sel.parents.tolist()) == inner_touched  # only what the new best touches (maybe nothing)


def test_rule_ignores_failed_fits_and_empty_maps() -> None:
    sel = select_contour_parents(maps_of(n8=([1, 2], [np.nan, np.nan])), 8, budget=10)
    assert sel.parents.size == 0 and not sel.over_budget
    with pytest.raises(ValueError):
        select_contour_parents(maps_of(n8=([1], [0.0])), 8, budget=1, level=0.0)


def test_region_area_by_nside() -> None:
    coarse = np.arange(hp.nside2npix(8))
    llh = np.full(coarse.size, 100.0)
    llh[[10, 11]] = 0.0  # two coarse pixels inside the level; 10 is refined, 11 is not
    children = hp.nest2ring(64, hp.ring2nest(8, 10) * 64 + np.arange(64))
    maps = maps_of(n8=(coarse, llh), n64=(children, np.zeros(64)))
    area = region_area_by_nside(maps, LEVEL)
    pix8 = hp.nside2pixarea(8, degrees=True)
    assert area[8] == pytest.approx(pix8) and area[64] == pytest.approx(pix8)
    assert not fully_resolved(area, 64)
    llh[11] = 100.0
    assert fully_resolved(region_area_by_nside(maps_of(n8=(coarse, llh), n64=(children, np.zeros(64)))), 64)


# -- the engine ---------------------------------------------------------------------------------------


def drive(engine: ScanEngine, pop: int = 1000, rng: np.random.Generator | None = None,
          **landscape: float) -> ScanEngine:
    """Run ``engine`` in-process on the elliptical landscape, results in random order when ``rng`` is given."""
    while not engine.done:
        w = engine.pop_work(pop)
        assert w is not None, "the engine stalled"
        fits = np.zeros((len(w), 7))
        fits[:, 0] = ellipse_llh(w.nside, w.pixels, **landscape) + 0.01 * w.posvars
        idx = np.arange(len(w)) if rng is None else rng.permutation(len(w))
        for part in np.array_split(idx, 3):
            engine.ingest(w.nside, w.pixels[part], w.posvars[part], fits[part])
    return engine


def assert_contour_rule_holds(results: Mapping[int, npt.NDArray[np.void]], steps: tuple[NsideStep, ...],
                              level: float = LEVEL, margin: float = MARGIN) -> None:
    """Every previous-nside pixel inside the level is refined (no budget cut), none far outside is, and the
    final samples ask for nothing more: the scan ended on a stable contour."""
    best = best_llh_of(results)
    for k, step in enumerate(steps):
        if not step.contour:
            continue
        prev = steps[k - 1]
        coarse, fine = results[prev.nside], results[step.nside]
        refined = np.unique(parent_pixels(step.nside, fine["index"], prev.nside))
        inside = coarse["index"][2 * (coarse["llh"] - best) < level]
        assert set(inside.tolist()) <= set(refined.tolist()), f"nside {step.nside}: a pixel inside is not refined"
        sel = select_contour_parents(results, prev.nside, level=level, margin=margin, budget=step.n_refine,
                                     already=refined)
        assert sel.parents.size == 0 and not sel.over_budget
        # none far outside: each refined parent is low itself or touches a low sample at a finer nside
        best_coarse = best_llh_of({n: a for n, a in results.items() if n <= prev.nside})
        low = {n: a["index"][2 * (a["llh"] - best_coarse) < level + margin] for n, a in results.items()
               if n > prev.nside}
        near = set(coarse["index"][2 * (coarse["llh"] - best_coarse) < level + margin].tolist())
        for n, px in low.items():
            touched = np.vstack([px[None, :], hp.get_all_neighbours(n, px)])
            near |= set(parent_pixels(n, touched[touched >= 0], prev.nside).tolist())
        assert set(refined.tolist()) <= near, f"nside {step.nside}: a pixel far outside was refined"


def test_engine_contour_scan_resolves_the_region() -> None:
    steps = parse_progression("8:0 64:c 512:c400")
    e = drive(ScanEngine(steps, n_posvar=2))
    res = e.results()
    assert_contour_rule_holds(res, steps)
    area = region_area_by_nside(res, LEVEL)
    assert fully_resolved(area, 512)
    assert area[512] == pytest.approx(np.pi * np.degrees(np.sqrt(LEVEL / 1000)) ** 2 / 2, rel=0.1)  # pi a b
    assert e.counts.contour_refinements >= 2 and not any(e.contour_over_budget().values())
    # classic mode on the same landscape leaves part of the region at nside 64
    classic = region_area_by_nside(drive(ScanEngine(parse_progression("8:0 64:12 512:24"), n_posvar=2)).results())
    assert classic[64] > 0


def test_engine_contour_is_deterministic_and_follows_threshold() -> None:
    steps = parse_progression("8:0 64:c 512:c")
    a = drive(ScanEngine(steps, 1)).results()
    b = drive(ScanEngine(steps, 1), pop=37, rng=np.random.default_rng(3)).results()
    for n in a:
        assert np.array_equal(a[n]["index"], b[n]["index"])
    # predictive refinement (threshold 0.5, choices made on partial samples): the region still ends resolved
    roomy = parse_progression("8:0 64:c 512:c400")
    c = drive(ScanEngine(roomy, 1, predictive_threshold=0.5), pop=50, rng=np.random.default_rng(4)).results()
    assert_contour_rule_holds(c, roomy)
    assert fully_resolved(region_area_by_nside(c), 512)


def test_engine_budget_cut_is_reported() -> None:
    e = drive(ScanEngine(parse_progression("8:0 64:c 512:c20"), 1))
    assert e.contour_over_budget()[512] and not e.contour_over_budget()[64]
    assert np.unique(parent_pixels(512, e.results()[512]["index"], 64)).size == 20
    assert any(level == logging.WARNING and "over its budget of 20" in text for level, text in e.take_notes())
    assert not fully_resolved(region_area_by_nside(e.results()), 512)


def test_engine_contour_level_and_margin() -> None:
    small = drive(ScanEngine(parse_progression("8:0 64:c 512:c1000"), 1, contour_level=4.0, contour_margin=0.5))
    big = drive(ScanEngine(parse_progression("8:0 64:c 512:c1000"), 1))
    assert small.results()[512].size < big.results()[512].size
    assert_contour_rule_holds(small.results(), small.steps, level=4.0, margin=0.5)
    with pytest.raises(ValueError):
        ScanEngine(parse_progression("8:0 64:c"), 1, contour_level=-1.0)


# -- whole scans with the dummy reco's elliptical minimum ---------------------------------------------

DUMMY_ELLIPSE = {"llh_scale": "3000", "axis_ratio": "2.5", "position_angle_deg": "30", "n_posvar": "1"}


def test_dummy_reco_defaults_unchanged_and_elliptical_option() -> None:
    from skymap_scanner.recos.dummy import DummyReco, planted_direction

    event = load_event(SAMPLE)
    zen, azi = planted_direction(event)
    plain, ell = DummyReco(), DummyReco({"axis_ratio": "3", "llh_scale": "500"})
    p0, p1 = plain.prepare(event), ell.prepare(event)
    assert plain.fit(p0, zen + 0.01, azi, 1, None).llh == pytest.approx(1000 * (1 - np.cos(0.01)) + 0.01)
    assert ell.fit(p1, zen, azi, 0, None).llh == pytest.approx(0.0, abs=1e-9)
    # along the minor axis (position angle 0: along azimuth) the llh rises q**2 = 9 times faster
    dz, da = 0.01, 0.01 / np.sin(zen)
    along_major = ell.fit(p1, zen + dz, azi, 0, None).llh
    along_minor = ell.fit(p1, zen, azi + da, 0, None).llh
    assert along_minor / along_major == pytest.approx(9.0, rel=0.02)
    for bad in ({"axis_ratio": "0.5"}, {"llh_scale": "0"}):
        with pytest.raises(ConfigError):
            DummyReco(bad)


def test_embedded_contour_scan_on_the_elliptical_minimum() -> None:
    event = load_event(SAMPLE)
    res = scan_event(event, "dummy", nsides="8:0 64:c 512:c", local_workers=2, reco_options=DUMMY_ELLIPSE,
                     calibration="none")
    steps = parse_progression("8:0 64:c 512:c")
    assert_contour_rule_holds(res.maps, steps)
    area = region_area_by_nside(res.maps, LEVEL)
    assert fully_resolved(area, 512), area
    assert res.provenance["nside_progression"] == "8:0 64:c 512:c"


def stub_runner(spec: ScanSpec) -> ScanRunner:
    transport = make_server_transport(EnvConfig(), spec, TransportOptions(1), backend="stub")
    transport.start()
    return ScanRunner(spec, transport)


def run_to_end(runner: ScanRunner, resume: bool = False) -> tuple[dict[int, npt.NDArray[np.void]], int]:
    try:
        restored = runner.resume() if resume else 0
        return runner.run().maps, restored
    finally:
        runner.close()
        runner.transport.close()


def test_contour_scan_resumes_from_a_checkpoint(tmp_path: Path) -> None:
    def spec() -> ScanSpec:
        return ScanSpec(load_event(SAMPLE), "dummy", DUMMY_ELLIPSE, "8:0 64:c 512:c", cache_dir=tmp_path,
                        progress_interval_s=3600, result_interval_s=3600, calibration_source="none")

    full, _ = run_to_end(stub_runner(spec()))
    log = next(tmp_path.glob("*.results.bin"))
    records = np.frombuffer(log.read_bytes(), dtype=RECORD_DTYPE)
    # a crash after 80%: the log holds results of pixels the contour steps added after their first choice
    # (at nside 512 some pixels exist only once the first nside-512 results were in)
    keep = int(records.size * 0.8)
    log.write_bytes(records[:keep].tobytes())
    naive = ScanEngine(parse_progression("8:0 64:c 512:c"), 1)  # one pass over the log, in its order
    for nside, px, pv, fits, failed in ResultLog(log).replay():
        naive.ingest(nside, px, pv, fits, failed)
    assert naive.counts.unknown > 0  # so the scenario needs the resume's later passes
    runner = stub_runner(spec())
    resumed, restored = run_to_end(runner, resume=True)
    assert restored == keep  # every checkpointed result was taken back, none lost as "unknown"
    assert runner.engine.counts.accepted - keep == records.size - keep  # only the missing fits were redone
    assert runner.engine.counts.contour_refinements >= 2
    for n in full:
        assert np.array_equal(resumed[n]["index"], full[n]["index"])
        assert np.allclose(resumed[n]["llh"], full[n]["llh"])
    # a contour scan with another level is another scan: it never resumes this one
    other = ScanSpec(load_event(SAMPLE), "dummy", DUMMY_ELLIPSE, "8:0 64:c 512:c", cache_dir=tmp_path,
                     calibration_source="none", contour_level=5.0)
    assert other.scan_id != spec().scan_id


def test_server_logs_the_contour_mode_and_level(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSCAN_")}
    proc = subprocess.run([sys.executable, "-m", "skymap_scanner.server", "--event-file", str(SAMPLE), "--reco-algo",
                           "dummy", "--reco-option", "n_posvar=1", "--reco-option", "llh_scale=3000",
                           "--output-dir", str(tmp_path), "--local-workers", "1", "--nsides", "8:0", "64:c",
                           "--contour-level", "20", "--contour-margin", "1", "--no-products"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "contour mode for the NSIDE:c steps, 2*Delta-llh level 20 + margin 1" in proc.stderr
    assert "contour refinement of nside 8 -> 64" in proc.stderr
    res = load_result(tmp_path / "run00136662.evt000035405932.neutrino_8_64.npz")
    assert_contour_rule_holds(res.maps, parse_progression("8:0 64:c"), level=20.0, margin=1.0)

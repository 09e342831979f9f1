"""The muon-track simulator: physics sanity, determinism, separate truth, CLI behaviour."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from skymap_scanner.coords import local_to_equatorial
from skymap_scanner.errors import ConfigError
from skymap_scanner.events import load_event
from skymap_scanner.utils import simulate as sim


def _track(ice: str = "pandel", noise: float = 0.0, seed: int = 3, energy: float = 2e5):
    rng = np.random.default_rng(seed)
    return sim.simulate_track(rng, zenith_rad=2.0, azimuth_rad=1.0, energy_gev=energy, impact_m=(30.0, 10.0),
                              ice=ice, noise_rate_hz=noise)


def _perp_distance(event, truth) -> np.ndarray:
    p = event.pulses
    pos = np.stack([p.x_m, p.y_m, p.z_m], axis=1) - [truth.x_m, truth.y_m, truth.z_m]
    d = -sim.comes_from_unit(truth.zenith_rad, truth.azimuth_rad)
    along = pos @ d
    return np.linalg.norm(pos - along[:, None] * d, axis=1)


def test_light_falls_with_distance_and_arrives_after_direct_light() -> None:
    event, truth = _track()
    rho = _perp_distance(event, truth)
    key = event.pulses.string * 100 + event.pulses.om
    doms, inverse = np.unique(key, return_inverse=True)
    q_dom = np.bincount(inverse, weights=event.pulses.charge_pe)
    rho_dom = np.bincount(inverse, weights=rho) / np.bincount(inverse)
    near = q_dom[rho_dom < 50].mean()
    far = q_dom[(rho_dom > 100) & (rho_dom < 200)].mean()
    assert near > 5 * far
    # no noise: every pulse comes after the direct Cherenkov time (minus a few ns of PMT jitter)
    p = event.pulses
    d = -sim.comes_from_unit(truth.zenith_rad, truth.azimuth_rad)
    rel = np.stack([p.x_m, p.y_m, p.z_m], axis=1) - [truth.x_m, truth.y_m, truth.z_m]
    t_direct = truth.t_ns + (rel @ d + sim.K_PERP * rho) / sim.C_M_PER_NS
    assert np.all(p.time_ns - t_direct > -6 * sim.PMT_JITTER_NS)


def test_noise_hits_appear_far_from_the_track() -> None:
    quiet, truth = _track(noise=0.0)
    noisy, _ = _track(noise=2000.0)
    assert len(noisy.pulses) > len(quiet.pulses)
    assert np.count_nonzero(_perp_distance(quiet, truth) > 600) == 0
    assert np.count_nonzero(_perp_distance(noisy, truth) > 600) > 10


def test_hlc_flags_mean_a_close_neighbour_in_time() -> None:
    event, _ = _track(noise=500.0)
    p = event.pulses
    for i in range(len(p)):
        same = (p.string == p.string[i]) & (np.abs(p.om - p.om[i]) >= 1) & (np.abs(p.om - p.om[i]) <= 2)
        has = bool(np.any(same & (np.abs(p.time_ns - p.time_ns[i]) <= 1000.0)))
        assert bool(p.lc[i]) == has
    assert 0 < p.lc.sum() < len(p)


def test_depth_ice_uses_the_table_and_changes_the_light() -> None:
    z = np.array([-400.0, 100.0])
    s_p, a_p = sim.path_lengths(z, z, "pandel")
    s_d, a_d = sim.path_lengths(z, z, "depth")
    np.testing.assert_allclose(s_p, sim.H2_SCATTERING_M)
    z_tab, sca, absn = sim.ice_table()
    # a path at one depth sees that depth's lengths (1/lambda is what is interpolated and averaged)
    np.testing.assert_allclose(s_d, 1 / np.interp(z, z_tab, 1 / sca), rtol=1e-9)
    np.testing.assert_allclose(a_d, 1 / np.interp(z, z_tab, 1 / absn), rtol=1e-9)
    assert abs(s_d[0] - s_d[1]) > 5.0  # the two depths really differ
    # a path across depths sees the path average of 1/lambda (here it crosses the dust layer)
    s_x, _ = sim.path_lengths(z[:1], z[1:], "depth")
    dense = 1 / np.mean(1 / np.interp(np.linspace(z[0], z[1], 2001), z_tab, sca))
    assert s_x[0] == pytest.approx(dense, rel=0.1)
    assert s_x[0] < min(s_d)
    e_pandel, _ = _track("pandel")
    e_depth, _ = _track("depth")
    assert e_pandel.pulses.qtot_pe != pytest.approx(e_depth.pulses.qtot_pe, rel=0.01)


def test_more_energy_more_light() -> None:
    low, _ = _track(energy=3e4)
    high, _ = _track(energy=1e6)
    assert high.pulses.qtot_pe > 10 * low.pulses.qtot_pe
    assert high.pulses.n_doms > low.pulses.n_doms


def test_unknown_ice_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown ice mode"):
        _track(ice="clear")


def test_cli_is_deterministic_and_keeps_truth_apart(tmp_path: Path) -> None:
    args = ["--n-events", "2", "--seed", "7", "--ice", "depth", "--energy-min-gev", "5e4"]
    assert sim.main(["--out-dir", str(tmp_path / "a"), *args]) == 0
    assert sim.main(["--out-dir", str(tmp_path / "b"), *args]) == 0
    names = sorted(f.name for f in (tmp_path / "a").iterdir())
    assert names == ["sim_0001.json", "sim_0001.truth.json", "sim_0002.json", "sim_0002.truth.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sim.main(["--out-dir", str(tmp_path / "c"), *args[:3], "8", *args[4:]]) == 0
    assert (tmp_path / "c" / "sim_0001.json").read_bytes() != (tmp_path / "a" / "sim_0001.json").read_bytes()

    doc = json.loads((tmp_path / "a" / "sim_0001.json").read_text())
    text = json.dumps(doc)
    for word in ("zenith", "azimuth", "energy", "truth", "dec"):
        assert word not in text
    event = load_event(tmp_path / "a" / "sim_0001.json")
    truth = json.loads((tmp_path / "a" / "sim_0001.truth.json").read_text())
    assert truth["format"] == "skymap-scanner-truth/1"
    assert truth["ice"] == "depth" and truth["event_id"] == event.event_id == 1
    assert 5e4 <= truth["energy_gev"] <= 1e6
    assert truth["mjd"] == event.mjd and not event.is_real_event
    ra, dec = local_to_equatorial(truth["zenith_rad"], truth["azimuth_rad"], truth["mjd"])
    assert truth["ra_rad"] == pytest.approx(float(ra)) and truth["dec_rad"] == pytest.approx(float(dec))
    assert truth["dec_deg"] == pytest.approx(math.degrees(truth["dec_rad"]))
    assert truth["n_hit_doms"] == event.pulses.n_doms
    assert truth["settings"]["noise_rate_hz"] == 500.0 and "details" not in truth


def test_cli_fixed_direction(tmp_path: Path) -> None:
    assert sim.main(["--out-dir", str(tmp_path), "--zenith-deg", "120", "--azimuth-deg", "30",
                     "--energy-gev", "1e5", "--mjd", "60000.5", "--prefix", "fix"]) == 0
    truth = json.loads((tmp_path / "fix_0001.truth.json").read_text())
    assert truth["zenith_rad"] == pytest.approx(math.radians(120))
    assert truth["azimuth_rad"] == pytest.approx(math.radians(30))
    assert truth["energy_gev"] == 1e5 and truth["mjd"] == 60000.5


@pytest.mark.parametrize("bad", [["--n-events", "0"], ["--energy-min-gev", "-1"], ["--zenith-deg", "200"],
                                 ["--prefix", "a/b"]])
def test_cli_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                bad: list[str]) -> None:
    assert sim.main(["--out-dir", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


# ------------------------------------------------------------------ realistic mode

from dataclasses import fields, replace  # noqa: E402

from skymap_scanner.events import write_event  # noqa: E402
from skymap_scanner.recos._pandel import H2, perpendicular_basis, travel_direction  # noqa: E402
from skymap_scanner.utils import _sim_physics as ph  # noqa: E402
from skymap_scanner.utils import _sim_realistic as real  # noqa: E402

QUIET = real.RealisticSettings(coincident_prob=0.0, starting_fraction=0.0, noise_rate_hz=0.0,
                               afterpulse_prob=0.0, online_cleaning=False, digitise=False)


def _muon(zen: float = 1.7, azi: float = 0.4, energy: float = 2e5, impact: tuple[float, float] = (40.0, -20.0),
          s_start: float = -math.inf) -> real.Muon:
    u = travel_direction(zen, azi)
    e1, e2 = perpendicular_basis(u)
    return real.Muon(u, impact[0] * e1 + impact[1] * e2, 10_000.0, energy, s_start)


def _dom_charge(p) -> tuple[np.ndarray, np.ndarray]:
    keys, inv = np.unique(p.string * 100 + p.om, return_inverse=True)
    return keys, np.bincount(inv, weights=p.charge_pe)


def test_realistic_is_deterministic_given_the_seed() -> None:
    a = sim.random_track(np.random.default_rng(11), ice="realistic")
    b = sim.random_track(np.random.default_rng(11), ice="realistic")
    c = sim.random_track(np.random.default_rng(12), ice="realistic")
    for name in ("string", "om", "time_ns", "charge_pe", "lc"):
        np.testing.assert_array_equal(getattr(a[0].pulses, name), getattr(b[0].pulses, name))
    assert sim.truth_to_dict(a[1]) == sim.truth_to_dict(b[1])
    assert a[1].energy_gev != c[1].energy_gev


def test_realistic_events_look_like_decoded_alerts(tmp_path: Path) -> None:
    rng = np.random.default_rng(2024)
    nch, npulses, qtot = [], [], []
    for i in range(12):
        event, truth = sim.random_track(rng, ice="realistic", event_id=i + 1)
        path = tmp_path / f"e{i}.json"
        write_event(event, path)
        loaded = load_event(path)
        assert loaded.pulses.n_doms == truth.n_hit_doms and len(loaded.pulses) == truth.n_pulses
        p = loaded.pulses
        assert p.string.max() <= 78  # online cleaning drops DeepCore
        assert np.ptp(p.time_ns) <= 6000.0  # and keeps one 6 us window
        np.testing.assert_array_equal(p.time_ns, np.floor(p.time_ns))  # SuperDST: 1 ns times
        code = (p.charge_pe - 0.025) / 0.05  # SuperDST linear charge code
        np.testing.assert_allclose(code, np.round(code), atol=1e-6)
        assert truth.details is not None
        raw = truth.details["before_cleaning"]
        assert raw["npulses"] >= truth.n_pulses and raw["nch"] >= truth.n_hit_doms
        assert 3e4 <= truth.energy_gev <= 5e6
        nch.append(truth.n_hit_doms)
        npulses.append(truth.n_pulses)
        qtot.append(truth.qtot_pe)
    # the shared real track alerts: nch 133-343, npulses 668-1665, qtot 830-2200 PE
    assert 80 <= np.median(nch) <= 600
    assert 300 <= np.median(npulses) <= 6000
    assert 300 <= np.median(qtot) <= 20_000
    assert 2.0 <= np.median(np.array(npulses) / np.array(nch)) <= 10.0


def test_realistic_cli_keeps_truth_apart_and_records_every_setting(tmp_path: Path) -> None:
    args = ["--out-dir", str(tmp_path), "--ice", "realistic", "--n-events", "1", "--seed", "4",
            "--coincident-prob", "0.5"]
    assert sim.main(args) == 0
    text = (tmp_path / "sim_0001.json").read_text()
    for word in ("zenith", "azimuth", "energy", "truth", "coincident", "settings"):
        assert word not in text
    event = load_event(tmp_path / "sim_0001.json")
    truth = json.loads((tmp_path / "sim_0001.truth.json").read_text())
    assert truth["ice"] == "realistic"
    settings = truth["settings"]
    assert {f.name for f in fields(real.RealisticSettings)} <= set(settings)
    assert settings["coincident_prob"] == 0.5 and settings["online_cleaning"] is True
    assert settings["delay_model"] == "icemc"
    assert settings["constants"]["DOM_AREA_M2"] == ph.DOM_AREA_M2
    assert truth["n_hit_doms"] == event.pulses.n_doms and truth["n_pulses"] == len(event.pulses)
    assert truth["qtot_pe"] == pytest.approx(event.pulses.qtot_pe, abs=1e-3)
    assert set(truth["details"]["pulses_by_origin"]) == {"primary", "coincident", "afterpulse", "noise"}


@pytest.mark.parametrize("bad", [["--ice", "pandel", "--online-cleaning"], ["--ice", "realistic", "--coincident-prob", "2"]])
def test_realistic_cli_bad_settings_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: list[str]) -> None:
    assert sim.main(["--out-dir", str(tmp_path), *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_afterpulses_come_late_with_small_charge() -> None:
    with_ap = replace(QUIET, afterpulse_prob=ph.AFTERPULSE_PROB)
    out = real.simulate(np.random.default_rng(5), _muon(energy=1e6), with_ap)
    p, origin = out.pulses, out.origin
    ap = origin == real.ORIGIN_AFTERPULSE
    assert out.details["n_afterpulses"] == pytest.approx(ph.AFTERPULSE_PROB * out.details["n_photoelectrons"], rel=0.1)
    assert ap.sum() > 50
    key = p.string * 100 + p.om
    first = {k: t for k, t in zip(key[::-1].tolist(), p.time_ns[::-1].tolist(), strict=True)}  # sorted: earliest wins
    delay = p.time_ns[ap] - np.array([first[k] for k in key[ap].tolist()])
    assert np.all(delay >= 0) and 500.0 <= np.median(delay) <= 5000.0
    assert np.median(p.charge_pe[ap]) < 1.5 < np.quantile(p.charge_pe[origin == real.ORIGIN_PRIMARY], 0.9)
    none = real.simulate(np.random.default_rng(5), _muon(energy=1e6), QUIET)
    assert not np.any(none.origin == real.ORIGIN_AFTERPULSE)


def test_saturation_caps_bright_doms() -> None:
    bright = _muon(energy=5e6, impact=(5.0, 5.0))
    on = real.simulate(np.random.default_rng(8), bright, QUIET)
    off = real.simulate(np.random.default_rng(8), bright, replace(QUIET, saturation=False))
    k_on, q_on = _dom_charge(on.pulses)
    k_off, q_off = _dom_charge(off.pulses)
    assert q_off.max() > ph.SAT_KNEE_PE and on.details["n_saturated_doms"] > 0
    assert q_on.max() <= ph.SAT_MAX_PE
    common, i_on, i_off = np.intersect1d(k_on, k_off, return_indices=True)
    dim = q_off[i_off] < 0.5 * ph.SAT_KNEE_PE
    np.testing.assert_allclose(q_on[i_on][dim], q_off[i_off][dim])  # below the knee nothing changes
    assert ph.saturate(np.array([1e5]))[0] == pytest.approx(ph.SAT_MAX_PE, rel=1e-6)


def test_coincident_muon_adds_hits_along_its_own_track() -> None:
    cfg = replace(QUIET, coincident_prob=1.0, coincident_energy_gev=(2e4, 2e4))
    seen = 0
    for seed in range(4):
        out = real.simulate(np.random.default_rng(seed), _muon(energy=1e5), cfg)
        c = out.details["coincident"]
        assert c is not None and c["zenith_rad"] < math.pi / 2  # atmospheric: down-going
        co = out.origin == real.ORIGIN_COINCIDENT
        assert out.details["pulses_by_origin"]["coincident"] == co.sum()
        if co.sum() < 10:
            continue  # this one passed far from the detector
        seen += 1
        p = out.pulses
        xyz = np.stack([p.x_m, p.y_m, p.z_m], axis=1)

        own = _rho(xyz, (c["x_m"], c["y_m"], c["z_m"]), c["zenith_rad"], c["azimuth_rad"])
        prim = _rho(xyz, out_primary_vertex(), 1.7, 0.4)
        assert np.median(own[co]) < np.median(prim[co])
        assert abs(np.median(p.time_ns[co]) - c["t_ns"]) < 2500.0  # its own time, not the primary's
    assert seen >= 2
    none = real.simulate(np.random.default_rng(0), _muon(energy=1e5), QUIET)
    assert none.details["coincident"] is None and not np.any(none.origin == real.ORIGIN_COINCIDENT)


def _rho(xyz: np.ndarray, vertex: tuple[float, float, float], zen: float, azi: float) -> np.ndarray:
    u = travel_direction(zen, azi)
    rel = xyz - np.asarray(vertex)
    return np.linalg.norm(rel - (rel @ u)[:, None] * u, axis=1)


def out_primary_vertex() -> tuple[float, float, float]:
    v = _muon().vertex
    return float(v[0]), float(v[1]), float(v[2])


def test_dark_noise_rate_matches_the_setting() -> None:
    far = _muon(impact=(5000.0, 0.0))  # no light reaches the detector: noise only, 20 us window
    rate = 20_000.0
    out = real.simulate(np.random.default_rng(3), far, replace(QUIET, noise_rate_hz=rate))
    assert np.all(out.origin == real.ORIGIN_NOISE)
    t_lo, t_hi = out.details["readout_window_ns"]
    n_doms = real.detector(0.05, 86).pos.shape[0]
    from scipy.stats import norm

    p_keep = 1 - ph.SPE_LOW_FRACTION * (1 - math.exp(-ph.DISCRIMINATOR_PE / ph.SPE_LOW_MEAN)) - (
        1 - ph.SPE_LOW_FRACTION) * norm.cdf((ph.DISCRIMINATOR_PE - 1) / ph.SPE_SIGMA)
    expected = rate * (t_hi - t_lo) * 1e-9 * n_doms * p_keep
    assert len(out.pulses) == pytest.approx(expected, rel=0.05)  # ~5 sigma
    assert np.mean(out.pulses.time_ns) == pytest.approx((t_lo + t_hi) / 2, abs=0.02 * (t_hi - t_lo))


def test_acceptance_favours_light_from_below() -> None:
    assert ph.acceptance(np.array(1.0)) == pytest.approx(1.0)
    assert ph.acceptance(np.array(-1.0)) == pytest.approx(ph.A_BACK)
    assert np.all(np.diff(ph.acceptance(np.linspace(-1, 1, 50))) > 0)
    det = real.detector(0.05, 86)
    m = _muon(zen=math.pi / 2, azi=0.3, impact=(0.0, -250.0))  # horizontal, 250 m below the centre
    mu_on = real.track_light(m, det, QUIET)[0]
    mu_off = real.track_light(m, det, replace(QUIET, angular_acceptance=False))[0]
    dz = det.pos[:, 2] - m.vertex[2]
    rel = det.pos - m.vertex
    rho = np.linalg.norm(rel - (rel @ m.direction)[:, None] * m.direction, axis=1)
    above = (dz > 0) & (rho < 40)  # light reaches them from below: the PMT face
    below = (dz < 0) & (rho < 40)  # light reaches them from above: the PMT's back
    r_above = (mu_on[above] / mu_off[above]).mean()
    r_below = (mu_on[below] / mu_off[below]).mean()
    assert r_above > 1.5 * r_below


def test_diffusion_delays_are_not_pandel() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    le, la = np.full(n, 25.0), np.full(n, 100.0)
    far = ph.diffusion_delays(rng, np.full(n, 250.0), le, la)  # direct fraction exp(-10): pure diffusion
    shape = 250.0**2 / (2 * ph.C_ICE_M_PER_NS * 25.0 / 3)
    assert far.mean() == pytest.approx(math.sqrt(shape * 100.0 / (2 * ph.C_ICE_M_PER_NS)), rel=0.02)
    near = ph.diffusion_delays(rng, np.full(n, 30.0), le, la)
    pandel = rng.gamma(30.0 / H2.scattering_m, 1 / H2.rate_per_ns, n)
    assert np.mean(near < 20) > 2 * np.mean(pandel < 20)  # more prompt light near the track
    assert np.all(near >= 0) and np.all(far >= 0)


def test_delay_model_is_pluggable_and_recorded() -> None:
    def no_delay(rng: np.random.Generator, d: np.ndarray, le: np.ndarray, la: np.ndarray) -> np.ndarray:
        return np.zeros(d.size)

    cfg = replace(QUIET, tts_ns=0.0, stochastic_losses=False)
    m = _muon()
    out = real.simulate(np.random.default_rng(1), m, cfg, delay_model=no_delay)
    p = out.pulses
    t_dir = real.track_light(m, real.detector(0.05, 86), cfg)[1]
    det = real.detector(0.05, 86)
    idx = {(int(s), int(o)): i for i, (s, o) in enumerate(zip(det.string, det.om, strict=True))}
    expect = t_dir[[idx[(int(s), int(o))] for s, o in zip(p.string, p.om, strict=True)]]
    np.testing.assert_allclose(p.time_ns, expect, atol=1e-6)  # every pulse at its direct time
    _, truth = sim.simulate_track(np.random.default_rng(1), zenith_rad=1.7, azimuth_rad=0.4, energy_gev=2e5,
                                  ice="realistic", settings=cfg, delay_model=no_delay)
    assert truth.settings is not None and "no_delay" in truth.settings["delay_model"]
    with pytest.raises(ConfigError, match="unknown delay model"):
        real.simulate(np.random.default_rng(1), m, replace(QUIET, delay_model="nope"))


def test_stochastic_losses_follow_the_documented_rate_and_spectrum() -> None:
    rng = np.random.default_rng(9)
    s, e = ph.sample_losses(rng, 1e5, 100_000.0)
    assert s.size == pytest.approx(ph.stochastic_rate_per_m() * 1e5, rel=0.05)
    assert 2.0 < ph.stochastic_rate_per_m() * 100 < 4.0
    v = e / 1e5
    assert v.min() >= ph.V_MIN and v.max() <= 1.0
    # dN/dv ~ v^-2: equal energy per decade of v
    decades = [e[(v >= 10.0**k) & (v < 10.0 ** (k + 1))].sum() for k in (-3, -2, -1)]
    assert max(decades) < 1.4 * min(decades)
    flat = real.simulate(np.random.default_rng(2), _muon(), replace(QUIET, stochastic_losses=False))
    lumpy = real.simulate(np.random.default_rng(2), _muon(), QUIET)
    assert flat.details["primary"]["n_cascades"] == 0 < lumpy.details["primary"]["n_cascades"]


def test_starting_track_has_no_light_far_behind_its_vertex() -> None:
    det = real.detector(0.05, 86)
    through = _muon(impact=(0.0, 0.0))
    start = replace(through, s_start=-100.0)
    mu_t = real.track_light(through, det, QUIET)[0]
    mu_s = real.track_light(start, det, QUIET)[0]
    along = (det.pos - through.vertex) @ through.direction
    rho = _rho(det.pos, (0.0, 0.0, 0.0), 1.7, 0.4)
    s_emit = along - rho / math.tan(H2.theta_c_rad)  # where the DOM's Cherenkov light leaves the track
    behind = s_emit < -400.0
    ahead = s_emit > -100.0
    assert mu_s[behind].sum() < 1e-3 * mu_t[behind].sum()
    np.testing.assert_allclose(mu_s[ahead], mu_t[ahead])
    out = real.simulate(np.random.default_rng(4), start, QUIET)
    assert out.details["primary"]["hadronic_energy_gev"] >= 0 and out.details["primary"]["s_start_m"] == -100.0


def test_online_cleaning_can_be_switched_off() -> None:
    noisy = replace(QUIET, noise_rate_hz=ph.NOISE_RATE_HZ, afterpulse_prob=ph.AFTERPULSE_PROB)
    raw = real.simulate(np.random.default_rng(6), _muon(), noisy)
    clean = real.simulate(np.random.default_rng(6), _muon(), replace(noisy, online_cleaning=True))
    assert len(clean.pulses) < len(raw.pulses)
    n_noise_raw = int(np.sum(raw.origin == real.ORIGIN_NOISE))
    assert np.sum(clean.origin == real.ORIGIN_NOISE) < 0.2 * n_noise_raw
    assert clean.pulses.string.max() <= 78


def test_icemc_delay_hook_calls_the_photon_monte_carlo_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    calls: list[int] = []

    def sample_delays_ns(rng: np.random.Generator, d_m: np.ndarray, scat_eff_m: np.ndarray,
                         abs_m: np.ndarray) -> np.ndarray:
        assert d_m.shape == scat_eff_m.shape == abs_m.shape
        calls.append(d_m.size)
        return np.full(d_m.size, 7.0)

    if not ph.icemc_available():
        with pytest.raises(ConfigError, match="_icemc"):
            real.simulate(np.random.default_rng(1), _muon(), replace(QUIET, delay_model="icemc"))
    fake = types.ModuleType("skymap_scanner.recos._icemc")
    fake.sample_delays_ns = sample_delays_ns  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "skymap_scanner.recos._icemc", fake)
    import skymap_scanner.recos as recos_pkg

    monkeypatch.setattr(recos_pkg, "_icemc", fake, raising=False)
    assert ph.icemc_available()
    out = real.simulate(np.random.default_rng(1), _muon(), replace(QUIET, delay_model="icemc", tts_ns=0.0))
    assert calls and calls[0] == out.details["n_photoelectrons"]


def test_photon_mc_delays_from_the_shipped_table() -> None:
    """The realistic default: delays drawn from the photon MC's histograms (recos/_icemc.py, data/photon_delays.json)."""
    from skymap_scanner.recos import _icemc

    rng = np.random.default_rng(2)
    near = _icemc.sample_delays_ns(rng, np.full(4000, 40.0), np.full(4000, 40.0), np.full(4000, 136.0))
    far = _icemc.sample_delays_ns(rng, np.full(4000, 200.0), np.full(4000, 40.0), np.full(4000, 136.0))
    murky = _icemc.sample_delays_ns(rng, np.full(4000, 200.0), np.full(4000, 40.0), np.full(4000, 60.0))
    assert np.all(near >= 0) and np.all(np.isfinite(far))
    assert np.median(far) > 2 * np.median(near)  # farther DOMs see later light
    assert np.median(murky) < np.median(far)  # absorption removes the long paths
    # in real IceCube ice (lambda_e ~ 40 m), light at rho ~ 120 m (d ~ 175 m) arrives a few hundred ns late,
    # not the ~1.3 us of AMANDA's H2 Pandel ice (the real alerts' first hits show the same)
    mid = _icemc.sample_delays_ns(rng, np.full(4000, 175.0), np.full(4000, 40.0), np.full(4000, 136.0))
    assert 200.0 < np.median(mid) < 900.0

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

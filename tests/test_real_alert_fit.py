"""pandel_mpe on what real alerts contain: depth-dependent ice, IceCube's pulse selection, outliers,
and a regression scan of every shipped real track alert against IceCube's SplineMPE."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import optimize

from skymap_scanner.coords import local_to_equatorial
from skymap_scanner.events import load_event
from skymap_scanner.events.geometry import icecube86
from skymap_scanner.events.model import Event, Pulses
from skymap_scanner.pixels import pixel_radec
from skymap_scanner.recos import _ice
from skymap_scanner.recos import _pandel as pm
from skymap_scanner.recos._pandel_prep import muon_pulse_mask
from skymap_scanner.recos.pandel_mpe import PandelMPE
from skymap_scanner.scan import scan_event
from skymap_scanner.utils.simulate import simulate_track

DATA = Path(__file__).parent / "data" / "events"
TRACK_ALERTS = (
    "run00136662-evt000035405932-BRONZE.pkl",
    "138632_31747601.json",
    "run00136055-evt000000348073.pkl",
    "run00135292-evt000056063172.pkl",
    "run00136504-evt000001833389.pkl",
    "run00136249-evt000027650203.pkl",
)


def _angle_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    c = math.sin(dec1) * math.sin(dec2) + math.cos(dec1) * math.cos(dec2) * math.cos(ra1 - ra2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


# -- ice --------------------------------------------------------------------------------------------------


def test_ice_table_lookup_and_dust_layer() -> None:
    table = _ice.ice_table()
    assert table.depth_m[0] < 1450 and table.depth_m[-1] > 2450  # covers every in-ice DOM
    # without a window the lookup reproduces the table's own rows
    z = _ice.ICE_SURFACE_Z_M - table.depth_m[[10, 60, 100]]
    le, la = table.lengths_at_z(z, window_m=0.0)
    np.testing.assert_allclose(le, table.scattering_eff_m[[10, 60, 100]])
    np.testing.assert_allclose(la, table.absorption_m[[10, 60, 100]])
    # the dust layer (~2000-2100 m deep, z ~ -50 .. -150 m) is far murkier than the deep clear ice below it
    le_dust, la_dust = table.lengths_at_z(np.array([-100.0]))
    le_deep, la_deep = table.lengths_at_z(np.array([-400.0]))
    assert le_dust[0] < 0.5 * le_deep[0] and la_dust[0] < 0.5 * la_deep[0]
    # a window averages rates: never above the largest nor below the smallest length in it
    le_w, _ = table.lengths_at_z(np.array([-100.0]), window_m=30.0)
    near = np.abs(table.depth_m - (_ice.ICE_SURFACE_Z_M + 100.0)) <= 30.0
    assert table.scattering_eff_m[near].min() <= le_w[0] <= table.scattering_eff_m[near].max()


def test_pandel_parameters_follow_the_mc_scaling_laws() -> None:
    ice = _ice.pandel_from_lengths(np.array([20.0, 40.0]), np.array([68.0, 136.0]))
    lam_p = 1.0 / (ice.inv_sl * math.sin(pm.H2.theta_c_rad))
    np.testing.assert_allclose(lam_p, _ice.LAMBDA_P_PER_EFF * np.array([20.0, 40.0]))
    # clearer ice: longer lengths, a smaller rate (delays stretch)
    assert ice.rate_per_ns[1] < ice.rate_per_ns[0]
    tau = _ice.TAU_PER_EFF * 40.0 / _ice.C_GROUP_M_PER_NS
    assert ice.rate_per_ns[1] == pytest.approx(1 / tau + _ice.C_GROUP_M_PER_NS / 136.0)


def test_rate_snapping_keeps_rates_within_two_percent() -> None:
    rates = np.geomspace(0.0015, 0.02, 500)
    grid, which = _ice.snap_rates(rates, 0.04)
    assert np.all(np.abs(grid[which] / rates - 1) <= 0.0205)
    assert grid.size < 80


def test_photon_mc_reproduces_the_frozen_scaling() -> None:
    """A small photon MC run lands near the frozen lambda_p / lambda_e and tau constants (statistical)."""
    from skymap_scanner.recos import _icemc

    tallies = _icemc.propagate(np.random.default_rng(5), 6000, (0.75, 1.5, 3.0, 5.0))
    lam_p, tau = _icemc.fit_pandel_scaling(tallies, 3.4)
    assert lam_p == pytest.approx(_ice.LAMBDA_P_PER_EFF, rel=0.25)
    assert tau == pytest.approx(_ice.TAU_PER_EFF, rel=0.35)
    # more distant cylinders see later light
    medians = [np.median(t.delay) for t in tallies]
    assert medians == sorted(medians)


def test_depth_ice_uses_one_table_per_rate_group() -> None:
    event = load_event(DATA / "run00136055-evt000000348073.pkl")
    reco = PandelMPE({"use_online_seeds": "false"})
    prep = reco.prepare(event)
    per_table = pm.cells_per_table(prep.cells.table)
    assert prep.cells.coef.shape[0] % per_table == 0
    n_tables = prep.cells.coef.shape[0] // per_table
    assert n_tables > 1  # the DOMs span several ice layers
    assert prep.data.cell_offset.max() < prep.cells.coef.shape[0]
    assert len(np.unique(prep.data.inv_sl)) > 10


def test_unknown_ice_option_is_refused() -> None:
    from skymap_scanner.errors import ConfigError

    with pytest.raises(ConfigError, match="ice="):
        PandelMPE({"ice": "h3"})
    with pytest.raises(ConfigError, match="max_npe"):
        PandelMPE({"max_npe": "0"})


# -- pulse selection --------------------------------------------------------------------------------------


def _pulses(rows: list[tuple[int, int, float, float, bool]]) -> Pulses:
    """Pulses on IceCube-86 DOMs from (string, om, time ns, charge PE, hlc) rows."""
    s = np.array([r[0] for r in rows])
    o = np.array([r[1] for r in rows])
    x, y, z = icecube86().positions(s, o)
    return Pulses.build(s, o, [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows], x, y, z)


def test_muon_pulse_mask_keeps_the_track_and_drops_noise_and_a_late_cluster() -> None:
    track = [(36, om, 10000.0 + 20 * k, 2.0, True) for k, om in enumerate(range(30, 40))]
    track += [(36, om, 10300.0 + 20 * k, 0.5, False) for k, om in enumerate(range(30, 35))]  # SLC tails
    noise = [(1, 5, 12000.0, 1.0, False), (70, 50, 9000.0, 1.0, False)]  # isolated: no RT partner
    # a second cluster of connected HLC pulses 9 us later, outside the 6 us window with the most pulses
    late = [(45, om, 19000.0 + 20 * k, 1.0, True) for k, om in enumerate(range(20, 26))]
    deepcore = [(81, om, 10050.0 + 10 * k, 1.0, True) for k, om in enumerate(range(30, 34))]
    pulses = _pulses(track + noise + late + deepcore)
    keep = muon_pulse_mask(pulses)
    kept = pulses.select(keep)
    assert set(zip(kept.string.tolist(), kept.om.tolist(), strict=True)) == {(36, om) for om in range(30, 40)}
    assert len(kept) == len(track)  # the SLC pulses next to the track stay
    assert kept.time_ns.max() - kept.time_ns.min() <= 6000.0


# -- outliers ---------------------------------------------------------------------------------------------


def _direction_fit(reco: PandelMPE, event: Event, zen0: float, azi0: float) -> tuple[float, float]:
    """Minimise the fixed-direction llh over (zenith, azimuth) from a start: the unbinned best direction."""
    prep = reco.prepare(event)

    def f(x: np.ndarray) -> float:
        return min(reco.fit(prep, float(x[0]), float(x[1]), pv, None).llh for pv in range(2))

    res = optimize.minimize(f, np.array([zen0, azi0]), method="Nelder-Mead",
                            options={"xatol": 1e-4, "fatol": 1e-3, "initial_simplex": np.array(
                                [[zen0, azi0], [zen0 + 0.01, azi0], [zen0, azi0 + 0.01]])})
    return float(res.x[0]), float(res.x[1])


def _local_angle_deg(z1: float, a1: float, z2: float, a2: float) -> float:
    c = math.cos(z1) * math.cos(z2) + math.sin(z1) * math.sin(z2) * math.cos(a1 - a2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


@pytest.mark.slow
def test_one_absurd_early_pulse_does_not_move_the_fit() -> None:
    rng = np.random.default_rng(3)
    event, truth = simulate_track(rng, zenith_rad=1.2, azimuth_rad=2.0, energy_gev=1e5, impact_m=(30.0, 10.0),
                                  ice="depth", noise_rate_hz=0.0)
    reco = PandelMPE({"use_online_seeds": "false", "n_posvar": "2"})
    clean = _direction_fit(reco, event, truth.zenith_rad, truth.azimuth_rad)
    # one bright pulse 350 ns before the direct light on the hit DOM farthest from the true track (with an HLC
    # partner on the next DOM, so IceCube's cleaning keeps both): moving the track towards that DOM would
    # explain it, at the cost of the rest of the event
    p = event.pulses
    travel = -np.array([math.sin(truth.zenith_rad) * math.cos(truth.azimuth_rad),
                        math.sin(truth.zenith_rad) * math.sin(truth.azimuth_rad), math.cos(truth.zenith_rad)])
    pos = np.stack([p.x_m, p.y_m, p.z_m], axis=1)
    t_geo, rho = pm.t_geo_ns(np.array([truth.x_m, truth.y_m, truth.z_m]), truth.t_ns, travel, pos)
    # (a kept pulse on the same DOM within 1 us: IceCube's RT cleaning keeps the early one through it)
    # and inside the 6 us window the cleaning keeps
    kept = muon_pulse_mask(p)
    usable = kept & (p.time_ns - t_geo < 600.0) & (t_geo - 350.0 > p.time_ns[kept].min() + 100.0)
    i = int(np.argmax(np.where(usable, rho, -1.0)))
    t_bad = float(t_geo[i]) - 350.0
    s_j, o_j = int(p.string[i]), int(p.om[i]) + (1 if p.om[i] < 60 else -1)
    xj, yj, zj = (float(v[0]) for v in icecube86().positions(np.array([s_j]), np.array([o_j])))
    extra = Pulses.build(
        np.r_[p.string, p.string[i], s_j], np.r_[p.om, p.om[i], o_j], np.r_[p.time_ns, t_bad, t_bad + 50],
        np.r_[p.charge_pe, 20.0, 5.0], np.r_[p.lc, True, True], np.r_[p.x_m, p.x_m[i], xj],
        np.r_[p.y_m, p.y_m[i], yj], np.r_[p.z_m, p.z_m[i], zj])
    import dataclasses

    spoiled = dataclasses.replace(event, pulses=extra)
    assert muon_pulse_mask(extra).sum() > muon_pulse_mask(p).sum()  # the outlier reaches the likelihood
    moved = _direction_fit(reco, spoiled, *clean)
    assert _local_angle_deg(*clean, *moved) <= 0.2
    assert _local_angle_deg(*clean, truth.zenith_rad, truth.azimuth_rad) <= 1.0


# -- real alerts ------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", TRACK_ALERTS)
def test_real_track_alert_lands_near_splinempe(name: str) -> None:
    event = load_event(DATA / name)
    result = scan_event(event, "pandel_mpe", nsides="8:0 64:8", local_workers=2,
                        reco_options={"use_online_seeds": "false"})
    nside, pixel, llh = result.best()
    assert nside == 64 and math.isfinite(llh)
    ra, dec = (float(v[0]) for v in pixel_radec(nside, [pixel]))
    spl = event.online_fits["SplineMPE"]
    sra, sdec = local_to_equatorial(spl.zenith_rad, spl.azimuth_rad, event.mjd)
    miss = _angle_deg(ra, dec, float(sra), float(sdec))
    assert miss <= 2.0, f"{name}: best pixel {miss:.2f} deg from SplineMPE"


def test_pulses_in_calibration_errata_windows_are_not_fitted() -> None:
    event = load_event(DATA / "run00136055-evt000000348073.pkl")
    assert len(event.calibration_errata) > 0
    with_errata = PandelMPE({"use_online_seeds": "false"}).prepare(event)
    without = PandelMPE({"use_online_seeds": "false", "drop_errata": "false"}).prepare(event)
    assert with_errata.qtot_pe < without.qtot_pe
    # no first pulse the fit uses lies inside a window of its own DOM
    w = np.asarray(event.calibration_errata)
    pos = with_errata.hits.pos_m
    from skymap_scanner.events.geometry import icecube86

    wx, wy, wz = icecube86().positions(w[:, 0].astype(int), w[:, 1].astype(int))
    for k in range(w.shape[0]):
        on_dom = np.flatnonzero(np.hypot(pos[:, 0] - wx[k], pos[:, 1] - wy[k]) + np.abs(pos[:, 2] - wz[k]) < 0.1)
        t1 = with_errata.hits.t1_ns[on_dom]
        assert not np.any((t1 >= w[k, 2]) & (t1 <= w[k, 3]))

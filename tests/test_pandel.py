"""The Pandel model, the MPE likelihood and the pandel_mpe reco (called directly, no scan)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from skymap_scanner.errors import ConfigError
from skymap_scanner.events.model import Event, Pulses
from skymap_scanner.recos import _pandel as pm
from skymap_scanner.recos import get_reco
from skymap_scanner.recos._pandel_prep import first_pulses, line_fit, muon_pulse_mask
from skymap_scanner.recos.base import Vertex
from skymap_scanner.recos.pandel_mpe import PandelMPE
from skymap_scanner.utils.simulate import comes_from_unit, simulate_track

ICE = pm.H2
# the quiet track is simulated in homogeneous H2 ice: fit it with the same model
H2_OPTIONS = {"ice": "homogeneous"}
RATE = ICE.rate_per_ns
SIGMA = ICE.jitter_ns


@pytest.fixture(scope="module")
def table() -> pm.PandelTable:
    return pm.table_for(ICE)


def test_plain_pandel_is_a_normalised_gamma_density() -> None:
    for xi in (0.5, 1.0, 3.0, 10.0):
        total, _ = integrate.quad(lambda t, x=xi: float(pm.pandel_pdf(t, x, RATE)), 0, np.inf, limit=200)
        assert total == pytest.approx(1.0, abs=1e-6)
        mean, _ = integrate.quad(lambda t, x=xi: t * float(pm.pandel_pdf(t, x, RATE)), 0, np.inf, limit=200)
        assert mean == pytest.approx(xi / RATE, rel=1e-5)
    assert pm.pandel_pdf(-5.0, 2.0, RATE) == 0.0


@pytest.mark.parametrize("xi", [0.0, 0.05, 0.5, 2.0, 8.0, 18.0])
def test_convolved_table_is_normalised(table: pm.PandelTable, xi: float) -> None:
    t = np.linspace(-400.0, 14000.0, 300001)
    logp, logs, *_ = table.lookup(np.full(t.size, math.sqrt(xi)), t)
    assert np.trapezoid(np.exp(logp), t) == pytest.approx(1.0, abs=0.01)
    # the survival function starts at 1 and decreases
    assert math.exp(logs[0]) == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(logs) <= 1e-9)


def test_closed_form_matches_a_numerical_convolution() -> None:
    """The parabolic-cylinder closed form equals the Gamma density convolved with the Gaussian."""
    for xi in (0.7, 2.5):
        for t in (-30.0, 0.0, 40.0, 150.0):
            def integrand(s: float, t: float = t, xi: float = xi) -> float:
                gauss = math.exp(-0.5 * ((t - s) / SIGMA) ** 2) / (SIGMA * math.sqrt(2 * math.pi))
                return float(pm.pandel_pdf(s, xi, RATE)) * gauss

            num, _ = integrate.quad(integrand, 0, t + 12 * SIGMA if t > 0 else 12 * SIGMA, limit=400, points=[0.0])
            closed = float(pm.convolved_pdf_closed_form(t, xi, RATE, SIGMA))
            assert closed == pytest.approx(num, rel=1e-4)


def test_table_matches_the_closed_forms(table: pm.PandelTable) -> None:
    t = np.array([-60.0, -20.0, 0.0, 15.0, 40.0, 120.0, 300.0])
    for xi in (0.2, 1.0, 2.5, 6.0):
        logp, *_ = table.lookup(np.full(t.size, math.sqrt(xi)), t)
        closed = pm.convolved_pdf_closed_form(t, xi, RATE, SIGMA)
        np.testing.assert_allclose(np.exp(logp), closed, rtol=0.02)
    # far beyond the jitter the convolution is the plain Pandel density
    t_far = np.array([800.0, 1500.0, 3000.0])
    for xi in (2.0, 8.0):
        logp, *_ = table.lookup(np.full(t_far.size, math.sqrt(xi)), t_far)
        np.testing.assert_allclose(np.exp(logp), pm.pandel_pdf(t_far, xi, RATE), rtol=0.03)


def test_table_is_finite_everywhere(table: pm.PandelTable) -> None:
    v = np.repeat(np.linspace(0.0, 30.0, 61), 81)
    t = np.tile(np.concatenate([-np.logspace(0, 6, 40), [0.0], np.logspace(0, 6, 40)]), 61)
    for arr in table.lookup(v, t):
        assert np.all(np.isfinite(arr))


def test_t_geo_hand_computed_case() -> None:
    """Muon along +x through the origin at t0 = 0; a DOM 50 m away at x = 0 on the y axis."""
    direction = -comes_from_unit(math.pi / 2, math.pi)  # comes from -x, travels +x
    np.testing.assert_allclose(direction, [1.0, 0.0, 0.0], atol=1e-12)
    t, rho = pm.t_geo_ns(np.zeros(3), 0.0, direction, np.array([[0.0, 50.0, 0.0], [100.0, 0.0, 0.0]]))
    # by hand: cos(theta_c) = 1/1.3195, the photon leaves the track 50/tan(theta_c) m before x = 0
    # (i.e. at time -50/tan/c) and travels 50/sin(theta_c) m at the group speed c/1.35634
    cos_c = 1 / 1.3195
    sin_c = math.sqrt(1 - cos_c**2)
    c = 0.299792458
    emit_t = -50 * cos_c / sin_c / c
    expected = emit_t + 50 / sin_c * 1.35634 / c
    assert rho[0] == pytest.approx(50.0)
    assert t[0] == pytest.approx(expected, abs=1e-9)
    assert t[0] == pytest.approx(153.0, abs=0.1)  # 50 m * 0.9173 / c, worked out on paper
    assert t[1] == pytest.approx(100.0 / c)  # a DOM on the track sees the muon itself


def _frame_and_args(event: Event, zen: float, azi: float) -> tuple[PandelMPE, object, pm.DirectionFrame, tuple]:
    reco = PandelMPE(H2_OPTIONS)
    prep = reco.prepare(event)
    frame = pm.direction_frame(zen, azi, prep.dom_rel_m)
    return reco, prep, frame, (frame, prep.data, prep.cells, prep.ice, prep.log_floor)


@pytest.fixture(scope="module")
def quiet_track() -> tuple[Event, object]:
    rng = np.random.default_rng(11)
    return simulate_track(rng, zenith_rad=1.1, azimuth_rad=0.7, energy_gev=8e4, impact_m=(40.0, -25.0),
                          ice="pandel", noise_rate_hz=0.0)


def test_gradient_matches_finite_differences(quiet_track: tuple[Event, object]) -> None:
    event, _ = quiet_track
    _, prep, frame, args = _frame_and_args(event, 1.12, 0.72)
    t0 = float(np.median(prep.data.t1_ns))
    for x in (np.array([5.0, -3.0, t0]), np.array([-60.0, 40.0, t0 - 300.0]), np.array([0.0, 0.0, t0 + 2000.0])):
        value, grad = pm.mpe_nll_and_grad(x, *args)
        assert math.isfinite(value)
        h = 1e-4
        num = [(pm.mpe_nll_and_grad(x + e, *args)[0] - pm.mpe_nll_and_grad(x - e, *args)[0]) / (2 * h)
               for e in np.eye(3) * h]
        np.testing.assert_allclose(grad, num, rtol=1e-3, atol=1e-3)


def test_likelihood_is_finite_for_absurd_tracks(quiet_track: tuple[Event, object]) -> None:
    event, _ = quiet_track
    _, prep, frame, args = _frame_and_args(event, 0.1, 3.0)
    for x in ([0.0, 0.0, -1e6], [0.0, 0.0, 1e6], [1e4, -1e4, 0.0], [0.0, 0.0, 0.0]):
        value, grad = pm.mpe_nll_and_grad(np.array(x), *args)
        assert math.isfinite(value) and np.all(np.isfinite(grad))


def test_fit_recovers_the_planted_vertex(quiet_track: tuple[Event, object]) -> None:
    event, truth = quiet_track
    reco = PandelMPE(H2_OPTIONS)
    prep = reco.prepare(event)
    fits = [reco.fit(prep, truth.zenith_rad, truth.azimuth_rad, pv, None) for pv in range(reco.n_posvar)]
    best = min(fits, key=lambda f: f.llh)
    travel = -comes_from_unit(truth.zenith_rad, truth.azimuth_rad)
    offset = np.array([best.X - truth.x_m, best.Y - truth.y_m, best.Z - truth.z_m])
    along = float(offset @ travel)
    perp = float(np.linalg.norm(offset - along * travel))
    assert perp < 5.0  # m from the true track
    # the true track passes the fitted vertex at T0 + along / c
    assert best.T == pytest.approx(truth.t_ns + along / pm.C_VACUUM_M_PER_NS, abs=10.0)
    assert best.E_tot == pytest.approx(prep.qtot_pe)
    assert 0 < best.E_in <= best.E_tot
    # a direction 5 deg away fits worse
    off = min(reco.fit(prep, truth.zenith_rad + math.radians(5), truth.azimuth_rad, pv, None).llh
              for pv in range(reco.n_posvar))
    assert off > best.llh + 10


def test_seed_from_parent_is_used_and_refined_ring_is_cheap(quiet_track: tuple[Event, object]) -> None:
    event, truth = quiet_track
    reco = PandelMPE(H2_OPTIONS)
    prep = reco.prepare(event)
    seed = Vertex(truth.x_m, truth.y_m, truth.z_m, truth.t_ns)
    seeded = reco.fit(prep, truth.zenith_rad, truth.azimuth_rad, 0, seed)
    unseeded = reco.fit(prep, truth.zenith_rad, truth.azimuth_rad, 0, None)
    assert seeded.llh == pytest.approx(unseeded.llh, abs=0.05)
    ring = reco.fit(prep, truth.zenith_rad, truth.azimuth_rad, 2, seed)  # evaluated, not minimised
    assert ring.llh >= seeded.llh - 1e-6
    full = PandelMPE({"refined_full": "true"})
    ring_full = full.fit(full.prepare(event), truth.zenith_rad, truth.azimuth_rad, 2, seed)
    assert ring_full.llh <= ring.llh


def test_seeded_rt_cleaning_drops_isolated_hits() -> None:
    # three HLC pulses on neighbouring DOMs of string 36 and one lonely hit far away in space
    string = [36, 36, 36, 1]
    om = [30, 31, 32, 1]
    t = [10000.0, 10010.0, 10025.0, 10005.0]
    x = [0.0, 0.0, 0.0, -256.0]
    y = [0.0, 0.0, 0.0, -521.0]
    z = [0.0, -17.0, -34.0, 496.0]
    pulses = Pulses.build(string, om, t, [1.0] * 4, [True, True, True, False], x, y, z)
    keep = muon_pulse_mask(pulses)
    assert keep.tolist() == [False, True, True, True]  # sorted by string: the string-1 hit is first
    hits = first_pulses(pulses.select(keep))
    assert hits.t1_ns.size == 3


def test_first_pulses_and_linefit() -> None:
    # a DOM with two pulses: first time and summed charge; LineFit of a downgoing line
    z = np.array([100.0, 100.0, 83.0, 66.0])
    t = np.array([5.0, 40.0, 5 + 17 / 0.3, 5 + 34 / 0.3])
    pulses = Pulses.build([1, 1, 1, 1], [10, 10, 11, 12], t, [1.0, 2.0, 1.5, 1.0], [True] * 4,
                          np.zeros(4), np.zeros(4), z)
    hits = first_pulses(pulses)
    np.testing.assert_allclose(hits.t1_ns, [5.0, 5 + 17 / 0.3, 5 + 34 / 0.3])
    np.testing.assert_allclose(hits.charge_pe, [3.0, 1.5, 1.0])
    lf = line_fit(hits)
    assert lf.zenith_rad == pytest.approx(0.0, abs=1e-6)  # moving down = coming from the zenith
    assert float(np.linalg.norm(lf.velocity_m_per_ns)) == pytest.approx(0.3, rel=1e-6)


def test_registered_with_options() -> None:
    cls = get_reco("pandel_mpe")
    assert cls is PandelMPE
    assert cls({"n_posvar": "5"}).n_posvar == 5
    with pytest.raises(ConfigError):
        cls({"n_posvar": "many"})

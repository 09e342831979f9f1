"""``python -m skymap_scanner.cli.simulate``: simulated muon tracks as skymap-scanner-event/1 files, with
the truth in separate files. The simulation itself is :mod:`skymap_scanner.utils.simulate`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SkyScanError
from ..utils import _sim_physics as _ph
from ..utils.simulate import (
    ICE_MODES,
    MJD_RANGE,
    REALISTIC_ENERGY_RANGE_GEV,
    REALISTIC_IMPACT_MAX_M,
    REALISTIC_MIN_DOMS,
    REALISTIC_SPECTRUM,
    SPECTRA,
    RealisticSettings,
    _with_mjd,
    draw_energy,
    draw_start,
    random_track,
    simulate_track,
    truth_to_dict,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skymap_scanner.cli.simulate",
        description="Simulate muon tracks as skymap-scanner-event/1 files, truth in separate files.",
    )
    p.add_argument("--out-dir", required=True, type=Path, help="directory for the event and truth files")
    p.add_argument("--n-events", type=int, default=1, help="number of events (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the output is deterministic given it")
    p.add_argument("--ice", choices=ICE_MODES, default="pandel",
                   help="pandel = homogeneous H2 ice (the reco's model); depth = ice_transparency.csv; "
                        "realistic = depth ice, a non-Pandel delay model, stochastic losses, coincident "
                        "muons, PMT effects, noise and online cleaning (the mode accuracy is quoted on)")
    p.add_argument("--energy-min-gev", type=float, default=3e4, help="minimum muon energy, GeV")
    p.add_argument("--energy-max-gev", type=float,
                   help="maximum muon energy, GeV (default 1e6; 5e6 for --ice realistic)")
    p.add_argument("--spectrum", choices=SPECTRA,
                   help="energy spectrum (default log-uniform; E-2 for --ice realistic)")
    p.add_argument("--energy-gev", type=float, help="fixed muon energy, GeV (overrides the range)")
    p.add_argument("--zenith-deg", type=float, help="fixed comes-from zenith, deg")
    p.add_argument("--azimuth-deg", type=float, help="fixed comes-from azimuth, deg")
    p.add_argument("--impact-max-m", type=float,
                   help="max distance of track from origin, m (default 400; 500 for --ice realistic)")
    p.add_argument("--noise-rate-hz", type=float,
                   help=f"per-DOM noise rate, Hz (default 500; {_ph.NOISE_RATE_HZ:g} for --ice realistic)")
    p.add_argument("--mjd", type=float, help="event time, MJD (default: random in 2020-2025)")
    p.add_argument("--run-id", type=int, default=1, help="run id of the events (event ids count from 1)")
    p.add_argument("--prefix", default="sim", help="file name prefix (default 'sim')")
    r = p.add_argument_group("realistic mode")
    r.add_argument("--online-cleaning", action=argparse.BooleanOptionalAction, default=None,
                   help="apply IceCube's online cleaning (seeded RT, 6 us window, strings <= 78); "
                        "default on for --ice realistic, off otherwise")
    r.add_argument("--delay-model", choices=tuple(_ph.DELAY_MODELS), default=RealisticSettings.delay_model,
                   help="photon delay sampler (default %(default)s)")
    r.add_argument("--coincident-prob", type=float, default=RealisticSettings.coincident_prob,
                   help="probability of a coincident atmospheric muon (default %(default)s)")
    r.add_argument("--starting-fraction", type=float, default=RealisticSettings.starting_fraction,
                   help="fraction of tracks starting outside the detector (default %(default)s)")
    r.add_argument("--afterpulse-prob", type=float, default=RealisticSettings.afterpulse_prob,
                   help="afterpulses per photoelectron (default %(default)s)")
    r.add_argument("--no-saturation", action="store_true", help="do not saturate bright DOMs")
    r.add_argument("--no-stochastic-losses", action="store_true", help="continuous muon light only")
    r.add_argument("--min-doms", type=int, help="redraw random tracks with fewer hit DOMs "
                   f"(default 10; {REALISTIC_MIN_DOMS} for --ice realistic, counted after cleaning)")
    return p


def _check(args: argparse.Namespace) -> None:
    if args.n_events < 1:
        raise ConfigError("--n-events must be >= 1")
    if not (0 < args.energy_min_gev <= args.energy_max_gev):
        raise ConfigError("--energy-min-gev must be > 0 and <= --energy-max-gev")
    if args.energy_gev is not None and args.energy_gev <= 0:
        raise ConfigError("--energy-gev must be > 0")
    if args.zenith_deg is not None and not 0 <= args.zenith_deg <= 180:
        raise ConfigError("--zenith-deg must be in [0, 180]")
    if args.impact_max_m < 0 or args.noise_rate_hz < 0:
        raise ConfigError("--impact-max-m and --noise-rate-hz must be >= 0")
    if not args.prefix or "/" in args.prefix:
        raise ConfigError("--prefix must be a non-empty name without '/'")
    if args.online_cleaning and args.ice != "realistic":
        raise ConfigError("--online-cleaning is available with --ice realistic only")


def _defaults(args: argparse.Namespace) -> RealisticSettings | None:
    """Fill mode-dependent defaults into ``args``; the realistic settings (None for other modes)."""
    real = args.ice == "realistic"
    if args.energy_max_gev is None:
        args.energy_max_gev = REALISTIC_ENERGY_RANGE_GEV[1] if real else 1e6
    if args.spectrum is None:
        args.spectrum = REALISTIC_SPECTRUM if real else "log-uniform"
    if args.impact_max_m is None:
        args.impact_max_m = REALISTIC_IMPACT_MAX_M if real else 400.0
    if args.noise_rate_hz is None:
        args.noise_rate_hz = _ph.NOISE_RATE_HZ if real else 500.0
    if args.min_doms is None:
        args.min_doms = REALISTIC_MIN_DOMS if real else 10
    if not real:
        return None
    settings = RealisticSettings(
        delay_model=args.delay_model, online_cleaning=args.online_cleaning is not False,
        coincident_prob=args.coincident_prob, starting_fraction=args.starting_fraction,
        afterpulse_prob=args.afterpulse_prob, saturation=not args.no_saturation,
        stochastic_losses=not args.no_stochastic_losses, noise_rate_hz=args.noise_rate_hz,
    )
    settings.check()
    return settings


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = _defaults(args)
        _check(args)
        from ..atomic import atomic_write_text
        from ..events import write_event

        args.out_dir.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(args.seed)
        e_range = (args.energy_min_gev, args.energy_max_gev)
        for i in range(1, args.n_events + 1):
            fixed = args.energy_gev is not None or args.zenith_deg is not None or args.azimuth_deg is not None
            if fixed:
                r = args.impact_max_m * math.sqrt(rng.uniform())
                phi = rng.uniform(0.0, 2 * math.pi)
                energy = args.energy_gev if args.energy_gev is not None else draw_energy(rng, e_range, args.spectrum)
                zen = math.radians(args.zenith_deg) if args.zenith_deg is not None else math.acos(rng.uniform(-1, 1))
                azi = math.radians(args.azimuth_deg) if args.azimuth_deg is not None else rng.uniform(0, 2 * math.pi)
                mjd = args.mjd if args.mjd is not None else rng.uniform(*MJD_RANGE)
                extra: dict[str, Any] = {}
                if settings is not None:
                    extra = {"settings": settings, "s_start_m": draw_start(rng, settings, r)}
                event, truth = simulate_track(
                    rng, zenith_rad=zen, azimuth_rad=azi, energy_gev=energy,
                    impact_m=(r * math.cos(phi), r * math.sin(phi)), ice=args.ice,
                    noise_rate_hz=args.noise_rate_hz, run_id=args.run_id, event_id=i, mjd=mjd, seed=args.seed,
                    **extra,
                )
            else:
                event, truth = random_track(
                    rng, energy_range_gev=e_range, impact_max_m=args.impact_max_m, ice=args.ice,
                    noise_rate_hz=args.noise_rate_hz, run_id=args.run_id, event_id=i, seed=args.seed,
                    spectrum=args.spectrum, settings=settings, min_doms=args.min_doms,
                )
                if args.mjd is not None:
                    event, truth = _with_mjd(event, truth, args.mjd)
            stem = f"{args.prefix}_{i:04d}"
            write_event(event, args.out_dir / f"{stem}.json")
            atomic_write_text(args.out_dir / f"{stem}.truth.json", json.dumps(truth_to_dict(truth), indent=1))
            print(f"{stem}: zenith {math.degrees(truth.zenith_rad):.2f} deg, azimuth "
                  f"{math.degrees(truth.azimuth_rad):.2f} deg, E {truth.energy_gev:.3g} GeV, "
                  f"nch {truth.n_hit_doms}, npulses {truth.n_pulses}, qtot {truth.qtot_pe:.0f} PE")
    except SkyScanError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot write to {args.out_dir}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Re-derive the Pandel scaling constants of ``recos/_ice.py`` from the photon Monte Carlo of ``recos/_icemc.py``.

    python benchmarks/derive_pandel_ice.py [--photons 100000] [--seed 1]

Propagates photons from an infinite track through homogeneous ice (Henyey-Greenstein, g = 0.9, lengths in
units of the effective scattering length lambda_e), tallies their delays at cylinders of 0.5-8 lambda_e,
and fits the Pandel form at lambda_a / lambda_e = 3.0, 3.4 (the ice table's median, used by the fit) and
3.8. Prints lambda_p / lambda_e and tau * c_ice / lambda_e, and the frozen values for comparison, and the
delay quantiles per radius. Takes about 1-2 minutes for 1e5 photons on one core.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

RADII = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photons", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--write", action="store_true",
                   help="also write the delay histograms simulators sample from (skymap_scanner/data/photon_delays.json)")
    args = p.parse_args()
    from skymap_scanner.recos import _ice, _icemc

    t = time.perf_counter()
    radii = _icemc.TABLE_RADII if args.write else RADII
    tallies = _icemc.propagate(np.random.default_rng(args.seed), args.photons, radii)
    print(f"{args.photons} photons, g = {_icemc.G_MEAN_COS}, {time.perf_counter() - t:.1f} s")
    for tally in tallies:
        q = np.percentile(tally.delay, [10, 50, 90])
        print(f"  rho = {tally.rho:4.2f} lambda_e: {tally.delay.size:7d} crossings, delay 10/50/90% = "
              f"{q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} lambda_e (unabsorbed)")
    for ratio in (3.0, 3.4, 3.8):
        lam_p, tau = _icemc.fit_pandel_scaling(tallies, ratio)
        print(f"lambda_a / lambda_e = {ratio}: lambda_p / lambda_e = {lam_p:.3f}, tau * c_ice / lambda_e = {tau:.3f}")
    if args.write:
        import json
        from pathlib import Path

        out = Path(_icemc.__file__).resolve().parents[1] / "data" / "photon_delays.json"
        doc = {"format": _icemc.DELAY_TABLE_FORMAT, "g": _icemc.G_MEAN_COS, "n_photons": args.photons,
               "seed": args.seed, "units": "lambda_e (effective scattering length)",
               "radii": list(_icemc.TABLE_RADII), "edges": [round(float(e), 9) for e in _icemc.TABLE_EDGES],
               "hist": [[round(float(v), 9) for v in row] for row in _icemc.delay_histograms(tallies)]}
        out.write_text(json.dumps(doc) + "\n")
        print(f"wrote {out}")
    print(f"frozen in recos/_ice.py: LAMBDA_P_PER_EFF = {_ice.LAMBDA_P_PER_EFF}, TAU_PER_EFF = {_ice.TAU_PER_EFF}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

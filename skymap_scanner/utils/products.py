"""Make the sky-map products of a scan result: ``python -m skymap_scanner.utils.products RESULT.npz --output-dir OUT``.

Writes summary.json, the multi-order probability map and the llh map (FITS), and full-sky and zoomed
plots (PNG, PDF). Old result files without a header take the event ids from the options; old IceCube
files that stored dec = theta - pi/2 need ``--legacy-dec-sign`` (never guessed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skymap_scanner.utils.products",
        description="Best fit, error regions, probability map (FITS), plots and summary.json of a scan result.",
    )
    p.add_argument("result", type=Path, help="result .npz (keys nside-N, optional header)")
    p.add_argument("--output-dir", "-o", type=Path, required=True, help="directory for the products")
    p.add_argument(
        "--legacy-dec-sign",
        action="store_true",
        help="the file stores pixels with dec = theta - pi/2 (old IceCube scans); mirror them in Dec",
    )
    p.add_argument("--reco", help="reco name, recorded as provenance")
    p.add_argument("--nsides", help="nside progression, recorded as provenance (e.g. '8:0 64:12 512:24')")
    p.add_argument(
        "--contours",
        choices=("all", "headline", "calibrated", "wilks", "icecube", "both"),
        default="all",
        help="level sets drawn on the plots (summary.json always has all of them; default: all; "
             "both = Wilks and IceCube)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF plots")
    g = p.add_argument_group("event metadata (override the file header, or supply it when there is none)")
    g.add_argument("--run-id", type=int)
    g.add_argument("--event-id", type=int)
    g.add_argument("--event-type", help="e.g. BRONZE, GOLD")
    g.add_argument("--mjd", type=float, help="event time, MJD (UTC)")
    g.add_argument("--real-event", dest="is_real_event", action="store_true", default=None)
    g.add_argument("--simulated-event", dest="is_real_event", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from skymap_scanner.errors import SkyScanError
    from skymap_scanner.products import make_products

    overrides = {
        "run_id": args.run_id,
        "event_id": args.event_id,
        "event_type": args.event_type,
        "mjd": args.mjd,
        "is_real_event": args.is_real_event,
    }
    try:
        out = make_products(
            args.result,
            args.output_dir,
            reco=args.reco,
            nsides=args.nsides,
            legacy_dec_sign=args.legacy_dec_sign,
            event_overrides=overrides,
            contours=args.contours,
            plots=not args.no_plots,
        )
    except SkyScanError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for key, path in sorted(out.items()):
        print(f"{key}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

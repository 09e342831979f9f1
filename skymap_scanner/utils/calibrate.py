"""``python -m skymap_scanner.utils.calibrate``: the calibration pipeline (:mod:`skymap_scanner.cli.calibrate`)."""

from ..cli.calibrate import main, parser

__all__ = ["main", "parser"]

if __name__ == "__main__":
    raise SystemExit(main())

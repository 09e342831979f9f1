"""Moved to :mod:`skymap_scanner.cli.describe`; this name keeps ``python -m skymap_scanner.utils.describe`` working."""

from ..cli.describe import main, parser

__all__ = ["main", "parser"]

if __name__ == "__main__":
    raise SystemExit(main())

"""Moved to :mod:`skymap_scanner.cli.convert`; this name keeps ``python -m skymap_scanner.utils.convert`` working."""

from ..cli.convert import main, parser

__all__ = ["main", "parser"]

if __name__ == "__main__":
    raise SystemExit(main())

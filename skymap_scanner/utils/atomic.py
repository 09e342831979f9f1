"""Moved to :mod:`skymap_scanner.atomic` (a low-level helper, importable from anywhere without
reaching up into the command-line tools); this name keeps working."""

from ..atomic import atomic_write, atomic_write_text

__all__ = ["atomic_write", "atomic_write_text"]

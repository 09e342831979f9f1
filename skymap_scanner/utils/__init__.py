"""The simulation (:mod:`.simulate`) and the products command (:mod:`.products`); the other command-line
tools moved to :mod:`skymap_scanner.cli` and the low-level helpers to :mod:`skymap_scanner.atomic` and
:mod:`skymap_scanner.threads` (the old names here keep working)."""

from ..threads import SINGLE_THREAD_ENV, single_threaded_math

__all__ = ["SINGLE_THREAD_ENV", "single_threaded_math"]

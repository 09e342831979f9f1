"""Reco plugins, found by name: ``skymap_scanner.recos.<name>`` exposing ``RECO``."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping

from ..errors import ConfigError
from .base import FitRequest, FitResult, Reco, Vertex, fit_batch_arrays

__all__ = ["FitRequest", "FitResult", "Reco", "Vertex", "available_recos", "fit_batch_arrays", "get_reco",
           "make_reco"]


def available_recos() -> list[str]:
    """Names of the reco modules shipped in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))


def get_reco(name: str) -> type[Reco]:
    """The reco class registered under ``name``; a clear :class:`ConfigError` otherwise."""
    if not name.isidentifier() or name not in available_recos():
        raise ConfigError(f"unknown reco {name!r} (available: {', '.join(available_recos())})")
    module = importlib.import_module(f"{__name__}.{name}")
    cls = getattr(module, "RECO", None)
    if not (isinstance(cls, type) and issubclass(cls, Reco)):
        raise ConfigError(f"reco module {name!r} does not define RECO as a Reco subclass")
    return cls


def make_reco(name: str, options: Mapping[str, str] | None = None) -> Reco:
    """Instantiate the reco ``name`` with its options."""
    return get_reco(name)(options)

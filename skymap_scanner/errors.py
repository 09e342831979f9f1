"""The project's own error types.

Every error meant for a person (bad input, bad argument, bad configuration) is a
:class:`SkyScanError` whose ``str()`` is one clear line; the command-line entry
points print that line and exit non-zero, never a traceback.
"""

from __future__ import annotations


class SkyScanError(Exception):
    """A problem a user can act on; ``str(err)`` is a one-line explanation."""


class EventError(SkyScanError):
    """An event file that cannot be read, decoded or validated."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ConfigError(SkyScanError):
    """A wrong argument or environment setting."""


class MessageError(SkyScanError):
    """A message that fails validation (wrong version, shape, scan id, ...)."""

"""The one reconnect/back-off rule: wait 0.5 s, then twice as long each time, at most 15 s; reset on success.

Pure state (no I/O, no sleeping here): the caller sleeps ``next_delay()`` in whatever way suits it
(``asyncio.sleep`` in the broker threads and clients, ``time.sleep`` elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential back-off between reconnect attempts, and how long the attempts have been failing."""

    first_s: float = 0.5
    max_s: float = 15.0
    factor: float = 2.0
    clock: Callable[[], float] | None = None  # for failing_for(); None: not tracked
    _delay: float = field(init=False)
    failing_since: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or self.factor < 1:
            raise ValueError("need 0 < first_s <= max_s and factor >= 1")
        self._delay = self.first_s

    @property
    def delay(self) -> float:
        """The wait the next failure will get."""
        return self._delay

    def failed(self) -> float:
        """An attempt failed: returns how long to wait before the next one (and lengthens the one after)."""
        d = self._delay
        self._delay = min(self._delay * self.factor, self.max_s)
        if self.clock is not None and self.failing_since is None:
            self.failing_since = self.clock()
        return d

    def succeeded(self) -> None:
        """An attempt worked: the next failure waits ``first_s`` again."""
        self._delay = self.first_s
        self.failing_since = None

    def failing_for(self) -> float:
        """Seconds since the first failure of the current run of failures (0 when not failing)."""
        if self.clock is None or self.failing_since is None:
            return 0.0
        return self.clock() - self.failing_since

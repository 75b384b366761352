"""A virtual clock for the in-memory service: wall time plus the time it skipped."""

from __future__ import annotations

import time


class VirtualClock:
    """Milliseconds since the epoch that follow the wall clock, plus skipped time.

    The in-memory service calls :meth:`advance` to jump over idle waits (a delayed job,
    a retry backoff), so tests see realistic timestamps without sleeping.
    """

    def __init__(self) -> None:
        self._skipped_ms = 0.0

    def now_ms(self) -> int:
        """The current virtual time in milliseconds."""
        return int(time.time() * 1000 + self._skipped_ms)

    def advance(self, ms: float) -> None:
        """Move the clock ``ms`` milliseconds forward."""
        if ms < 0:
            raise ValueError(f"a clock only moves forward; got {ms} ms")
        self._skipped_ms += ms

    @property
    def skipped_ms(self) -> float:
        """How far ahead of the wall clock this clock is."""
        return self._skipped_ms

"""The time the pipeline runs on: the system's, or a scaled one for tests of long schedules.

A retry schedule spans hours and a breaker's cool-down minutes; tests of them run on a
``ScaledClock``, whose time passes ``factor`` times faster than the wall clock, so an hour of
schedule takes seconds. Only what the pipeline *schedules* is scaled: network timeouts stay
real, because a receiver's socket does not run faster.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds on this clock."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of this clock's time take on the wall clock."""
        ...

    def from_real(self, seconds: float) -> float:
        """How much of this clock's time passes in ``seconds`` on the wall clock."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def real_seconds(self, seconds: float) -> float:
        return seconds

    def from_real(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """Starts at the wall clock's time and runs ``factor`` times faster, never behind it, so
    what the API stamps with the wall clock is due at once on this one."""

    def __init__(self, factor: float) -> None:
        if not factor >= 1:
            raise ValueError("a scaled clock runs at least as fast as the wall clock")
        self.factor = factor
        self._origin = time.time()

    def now(self) -> float:
        return self._origin + (time.time() - self._origin) * self.factor

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.factor

    def from_real(self, seconds: float) -> float:
        return seconds * self.factor


SYSTEM = SystemClock()

"""Retry policy: when the next attempt of a failed delivery is due, or that it is dead."""

from __future__ import annotations

import random

import msgspec

# Attempt 1 is immediate; each later entry is the wait before the next attempt.
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)

# A partner's Retry-After is honoured, but never beyond this (a receiver cannot park us for weeks).
MAX_RETRY_AFTER_SECONDS = 24 * 3600.0


class RetryPolicy(msgspec.Struct, frozen=True):
    """``schedule[n]`` is the delay before attempt ``n + 1``; its length is the attempt budget."""

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2  # each delay is spread uniformly over ±20 % so retries do not synchronize

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("a retry schedule needs at least one entry")
        if any(d < 0 for d in self.schedule):
            raise ValueError("retry delays may not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    def next_delay(
        self,
        attempts_made: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` failures, or None: dead."""
        if attempts_made >= self.max_attempts:
            return None
        base = self.schedule[attempts_made]
        spread = base * self.jitter
        delay = base + (rng or random).uniform(-spread, spread) if spread else base
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
        return max(0.0, delay)

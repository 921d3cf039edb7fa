"""A token bucket as an immutable value and a pure ``take``: an endpoint's sending rate limit.

The bucket is two numbers, so it can live in a database row shared by several dispatcher
processes; time is always passed in as ``now``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

_SECONDS = {"second": 1.0, "minute": 60.0}


def _slack(now: float) -> float:
    # A wait shorter than the clock can express is no wait: without this a caller that comes
    # back exactly when told could find 0.9999999 tokens and be told to wait 1e-16 s, forever.
    return 1e-9 + 8 * math.ulp(abs(now))


class RateLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``rate`` tokens per ``per``; up to ``burst`` at once (by default one ``per``'s worth)."""

    rate: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
    per: Literal["second", "minute"] = "second"
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError("a rate limit's rate must be a positive number")
        if self.per not in _SECONDS:
            raise ValueError("a rate limit is per 'second' or per 'minute'")
        if self.burst is not None and self.burst < 1:
            raise ValueError("a rate limit's burst must be at least 1")

    @property
    def per_second(self) -> float:
        return self.rate / _SECONDS[self.per]

    @property
    def capacity(self) -> float:
        if self.burst is not None:
            return float(self.burst)
        return float(max(1, math.floor(self.rate)))


class TokenBucket(msgspec.Struct, frozen=True, array_like=True):
    tokens: float
    updated_at: float


def full_bucket(limit: RateLimit, now: float) -> TokenBucket:
    """A new bucket: a fresh endpoint may send its whole burst at once."""
    return TokenBucket(limit.capacity, now)


def take(
    bucket: TokenBucket, limit: RateLimit, now: float, n: int = 1
) -> tuple[bool, TokenBucket, float]:
    """Take ``n`` tokens if there are that many.

    Returns ``(granted, bucket, wait)``: ``wait`` is 0 when granted, otherwise the seconds until
    ``n`` tokens will be there (``math.inf`` when ``n`` exceeds the burst: never).
    """
    if n < 1:
        raise ValueError("take at least one token")
    # A clock behind the bucket's (another process's) neither refills nor moves it back.
    since = max(now, bucket.updated_at)
    tokens = min(limit.capacity, bucket.tokens + (since - bucket.updated_at) * limit.per_second)
    if tokens >= n:
        return True, TokenBucket(tokens - n, since), 0.0
    if n > limit.capacity:
        return False, TokenBucket(tokens, since), math.inf
    short = (n - tokens) / limit.per_second
    if short <= _slack(now):
        # Granted a hair early: the debt is kept as time (the bucket refills from a moment
        # later), so tokens never go negative and nothing is given away.
        return True, TokenBucket(0.0, since + short), 0.0
    return False, TokenBucket(tokens, since), (since - now) + short

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.rate_limit import RateLimit, TokenBucket, full_bucket, take

T0 = 1_700_000_000.0


def test_a_full_bucket_grants_its_burst_then_waits_for_the_rate() -> None:
    limit = RateLimit(rate=2, per="second", burst=3)
    bucket = full_bucket(limit, T0)
    grants = []
    for _ in range(4):
        granted, bucket, wait = take(bucket, limit, T0)
        grants.append((granted, wait))
    assert grants == [(True, 0), (True, 0), (True, 0), (False, 0.5)]
    granted, bucket, wait = take(bucket, limit, T0 + 0.5)
    assert (granted, wait) == (True, 0)
    assert bucket.tokens == pytest.approx(0)


def test_per_minute() -> None:
    limit = RateLimit(rate=30, per="minute", burst=1)
    assert limit.per_second == 0.5
    bucket = full_bucket(limit, T0)
    assert take(bucket, limit, T0)[0]
    granted, bucket, wait = take(take(bucket, limit, T0)[1], limit, T0)
    assert not granted and wait == pytest.approx(2)


@pytest.mark.parametrize(
    ("limit", "capacity"),
    [
        (RateLimit(10), 10),
        (RateLimit(60, "minute"), 60),
        (RateLimit(0.5), 1),  # slower than one a second: still one at a time
        (RateLimit(2.7), 2),
        (RateLimit(10, burst=1), 1),
    ],
)
def test_burst_defaults_to_one_periods_worth(limit: RateLimit, capacity: float) -> None:
    assert limit.capacity == capacity


def test_taking_several_tokens_at_once() -> None:
    limit = RateLimit(rate=1, burst=5)
    bucket = TokenBucket(2, T0)
    granted, bucket, wait = take(bucket, limit, T0, n=4)
    assert not granted and wait == pytest.approx(2)
    granted, bucket, wait = take(bucket, limit, T0 + 2, n=4)
    assert granted and bucket.tokens == pytest.approx(0)
    granted, _, wait = take(bucket, limit, T0 + 2, n=6)
    assert not granted and wait == math.inf  # more than the burst: never
    with pytest.raises(ValueError):
        take(bucket, limit, T0, n=0)


def test_refill_stops_at_the_burst() -> None:
    limit = RateLimit(rate=100, burst=7)
    _, bucket, _ = take(TokenBucket(0, T0), limit, T0 + 3600)
    assert bucket.tokens == 6


def test_a_clock_behind_the_bucket_neither_refills_nor_rewinds() -> None:
    limit = RateLimit(rate=1, burst=1)
    bucket = TokenBucket(0, T0 + 10)
    granted, after, wait = take(bucket, limit, T0)
    assert not granted
    assert after.updated_at == T0 + 10 and after.tokens == 0
    assert wait == pytest.approx(11)  # from the caller's clock


def test_a_lowered_burst_applies_at_once() -> None:
    _, bucket, _ = take(TokenBucket(50, T0), RateLimit(rate=1, burst=2), T0)
    assert bucket.tokens == 1


def test_bucket_round_trips_through_json() -> None:
    bucket = TokenBucket(1.25, T0)
    assert msgspec.json.decode(msgspec.json.encode(bucket), type=TokenBucket) == bucket
    limit = msgspec.json.decode(b'{"rate": 5, "per": "minute"}', type=RateLimit)
    assert limit == RateLimit(5, "minute")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0},
        {"rate": -1},
        {"rate": math.inf},
        {"rate": math.nan},
        {"rate": 1, "burst": 0},
        {"rate": 1, "per": "hour"},
    ],
)
def test_invalid_limits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RateLimit(**kwargs)  # type: ignore[arg-type]


limits = st.builds(
    RateLimit,
    rate=st.floats(0.01, 1000),
    per=st.sampled_from(["second", "minute"]),
    burst=st.none() | st.integers(1, 50),
)


@given(limits, st.lists(st.floats(0, 1.5), min_size=20, max_size=200))
def test_never_more_than_burst_plus_rate_over_any_window(
    limit: RateLimit, gaps: list[float]
) -> None:
    bucket = full_bucket(limit, T0)
    now = T0
    granted_at: list[float] = []
    for gap in gaps:
        now += gap / limit.per_second  # in token periods: callers both slower and faster
        granted, bucket, wait = take(bucket, limit, now)
        assert 0 <= bucket.tokens <= limit.capacity
        assert wait >= 0
        if granted:
            granted_at.append(now)
    # grants in [t_i, t_j] = j - i + 1 <= capacity + rate * (t_j - t_i) for every i <= j, that
    # is (j - rate * t_j) - (i - rate * t_i) <= capacity - 1: one pass with a running minimum.
    # A grant may come a clock tick early (see _slack), never a token more.
    rate, lowest = limit.per_second, math.inf
    for j, at in enumerate(granted_at):
        lowest = min(lowest, j - rate * (at - T0))
        assert (j - rate * (at - T0)) - lowest <= limit.capacity - 1 + rate * 1e-5 + 1e-6


@given(limits, st.floats(1, 600), st.floats(0, 1))
def test_a_steady_caller_gets_the_rate(limit: RateLimit, duration: float, phase: float) -> None:
    # The caller comes back exactly when told, starting from an empty bucket.
    duration = min(duration, 500 / limit.per_second)  # a fast test: at most ~500 grants
    bucket = TokenBucket(0, T0)
    now = T0 + phase / limit.per_second
    granted_count = 0
    while now <= T0 + duration:
        granted, bucket, wait = take(bucket, limit, now)
        if granted:
            granted_count += 1
        else:
            assert 0 < wait <= 1 / limit.per_second + 1e-5  # + an early grant's debt
            now += wait
    expected = limit.per_second * duration
    assert expected - 1 - 1e-6 <= granted_count <= expected + 1 + 1e-6


@given(limits, st.floats(0, 10), st.floats(0, 100), st.integers(1, 5))
def test_coming_back_after_the_wait_is_granted(
    limit: RateLimit, tokens: float, age: float, n: int
) -> None:
    tokens = min(tokens, limit.capacity)
    bucket = TokenBucket(tokens, T0 - age)
    granted, bucket, wait = take(bucket, limit, T0, n)
    if granted:
        assert wait == 0
        return
    if n > limit.capacity:
        assert wait == math.inf
        return
    granted, bucket, _ = take(bucket, limit, T0 + wait, n)
    assert granted
    assert bucket.tokens >= 0

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.retry import DEFAULT_SCHEDULE, MAX_RETRY_AFTER_SECONDS, RetryPolicy
from interlink.domain.retry_after import parse_retry_after

schedules = st.lists(st.floats(0, 36000), min_size=1, max_size=10).map(tuple)


def test_default_schedule_is_the_documented_one() -> None:
    assert DEFAULT_SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert RetryPolicy().max_attempts == 8


@given(schedules, st.integers(0, 12), st.floats(0, 1), st.integers())
def test_delay_stays_within_jitter_band_or_ends(
    schedule: tuple[float, ...], made: int, jitter: float, seed: int
) -> None:
    policy = RetryPolicy(schedule=schedule, jitter=jitter)
    delay = policy.next_delay(made, rng=random.Random(seed))
    if made >= len(schedule):
        assert delay is None
        return
    assert delay is not None
    base = schedule[made]
    assert base * (1 - jitter) - 1e-6 <= delay <= base * (1 + jitter) + 1e-6


@given(schedules, st.integers(0, 9), st.floats(0, 10 * MAX_RETRY_AFTER_SECONDS))
def test_retry_after_is_honoured_but_capped(
    schedule: tuple[float, ...], made: int, retry_after: float
) -> None:
    policy = RetryPolicy(schedule=schedule)
    delay = policy.next_delay(made, retry_after=retry_after)
    if made >= len(schedule):
        assert delay is None
        return
    assert delay is not None
    assert delay >= min(retry_after, MAX_RETRY_AFTER_SECONDS) - 1e-6
    assert delay <= max(schedule[made] * 1.2, MAX_RETRY_AFTER_SECONDS) + 1e-6


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy(schedule=(0, 100))
    delays = {round(policy.next_delay(1, rng=random.Random(i)) or 0, 3) for i in range(50)}
    assert len(delays) > 40  # not synchronized
    assert all(80 <= d <= 120 for d in delays)


@pytest.mark.parametrize(
    "kwargs", [{"schedule": ()}, {"schedule": (1, -1)}, {"jitter": 1.5}, {"jitter": -0.1}]
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(" 7 ", now) == 7
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
    date = "Tue, 14 Nov 2023 22:14:20 GMT"  # now + 60 s
    assert parse_retry_after(date, now) == pytest.approx(60, abs=1)
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00 GMT", now) == 0


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, 1_700_000_000.0)
    assert result is None or result >= 0

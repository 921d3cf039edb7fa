import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain import token_refresh as tr
from interlink.domain.retry import RetryPolicy
from interlink.domain.token_refresh import ConnectionStatus, RefreshPolicy

T0 = 1_700_000_000.0
times = st.floats(min_value=0, max_value=1e6, allow_nan=False)
lifetimes = st.floats(min_value=0.001, max_value=1e6, allow_nan=False)
fractions = st.floats(min_value=0.01, max_value=1.0, allow_nan=False)


def test_a_one_hour_token_is_refreshed_at_48_minutes_by_default() -> None:
    policy = RefreshPolicy()
    expires = tr.expires_at(T0, 3600, policy)
    assert expires == T0 + 3600
    assert tr.refresh_due_at(T0, expires, policy) == T0 + 48 * 60


def test_a_token_without_expires_in_gets_the_default_lifetime() -> None:
    assert tr.expires_at(T0, None, RefreshPolicy(default_lifetime_seconds=600)) == T0 + 600


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01])
def test_the_fraction_must_be_within_the_lifetime(fraction: float) -> None:
    with pytest.raises(ValueError, match="refresh_fraction"):
        RefreshPolicy(refresh_fraction=fraction)


@given(issued=times, lifetime=lifetimes, fraction=fractions, at=st.floats(0, 1, allow_nan=False))
def test_the_refresh_point_is_inside_the_lifetime_and_the_token_works_until_expiry(
    issued: float, lifetime: float, fraction: float, at: float
) -> None:
    policy = RefreshPolicy(refresh_fraction=fraction)
    expires = tr.expires_at(issued, lifetime, policy)
    due = tr.refresh_due_at(issued, expires, policy)
    assert issued <= due <= expires
    now = issued + at * (expires - issued)
    # Whenever the token counts as fresh it is usable; and it is usable up to its expiry.
    if tr.is_fresh(due, expires, now):
        assert tr.is_usable(expires, now)
    assert tr.is_usable(expires, now) == (now < expires)
    assert not tr.is_usable(expires, expires)


@given(
    failing=st.booleans(),
    due=st.none() | times,
    expires=st.none() | times,
    now=times,
)
def test_status_rules(failing: bool, due: float | None, expires: float | None, now: float) -> None:
    status = tr.status(failing=failing, refresh_due_at=due, expires_at=expires, now=now)
    if failing:
        assert status is ConnectionStatus.FAILED
    elif expires is None or now >= expires or due is None or now >= due:
        assert status is ConnectionStatus.EXPIRING
    else:
        assert status is ConnectionStatus.HEALTHY
    if status is ConnectionStatus.HEALTHY:
        assert tr.is_usable(expires, now)


@given(failures=st.integers(min_value=1, max_value=1000), seed=st.integers(0, 2**32))
def test_the_backoff_grows_then_stays_at_its_last_step(failures: int, seed: int) -> None:
    policy = RefreshPolicy()
    rng = random.Random(seed)
    delay = tr.retry_delay(failures, policy, rng)
    schedule, jitter = policy.retry.schedule, policy.retry.jitter
    base = schedule[min(failures - 1, len(schedule) - 1)]
    assert base * (1 - jitter) <= delay <= base * (1 + jitter)


@given(failures=st.integers(min_value=1, max_value=50))
def test_without_jitter_the_backoff_never_shrinks(failures: int) -> None:
    policy = RefreshPolicy(retry=RetryPolicy(schedule=(1, 2, 5, 15), jitter=0))
    assert tr.retry_delay(failures, policy) <= tr.retry_delay(failures + 1, policy)
    assert tr.retry_delay(failures, policy) <= 15


def test_a_retry_follows_a_failure() -> None:
    with pytest.raises(ValueError):
        tr.retry_delay(0, RefreshPolicy())

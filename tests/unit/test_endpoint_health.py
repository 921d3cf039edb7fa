import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.delivery import AttemptOutcome, classify_status
from interlink.domain.endpoint_health import (
    DEFAULT_DISABLE_AFTER_SECONDS,
    DisableReason,
    HealthPolicy,
    HealthVerdict,
    after_attempt,
    failing_too_long,
)

T0 = 1_700_000_000.0
DAY = 86_400.0
FAILING = [AttemptOutcome.FAILED, AttemptOutcome.ERROR]


def test_default_is_five_days() -> None:
    assert HealthPolicy().disable_after_seconds == DEFAULT_DISABLE_AFTER_SECONDS == 5 * DAY


@pytest.mark.parametrize("outcome", FAILING)
def test_a_first_failure_starts_the_streak(outcome: AttemptOutcome) -> None:
    assert after_attempt(None, outcome, T0) == HealthVerdict(T0, None)


@pytest.mark.parametrize("outcome", FAILING)
def test_later_failures_keep_the_streak_start(outcome: AttemptOutcome) -> None:
    assert after_attempt(T0, outcome, T0 + DAY) == HealthVerdict(T0, None)


def test_a_success_ends_the_streak() -> None:
    assert after_attempt(T0, AttemptOutcome.SUCCEEDED, T0 + 4.9 * DAY) == HealthVerdict(None, None)
    # ... even one that comes after the five days: the endpoint works again.
    assert after_attempt(T0, AttemptOutcome.SUCCEEDED, T0 + 9 * DAY).disable is None


@pytest.mark.parametrize("outcome", FAILING)
def test_failing_for_five_days_disables(outcome: AttemptOutcome) -> None:
    assert after_attempt(T0, outcome, T0 + 5 * DAY - 1).disable is None
    assert after_attempt(T0, outcome, T0 + 5 * DAY).disable is DisableReason.FAILING


@pytest.mark.parametrize("failing_since", [None, T0])
def test_gone_disables_at_once(failing_since: float | None) -> None:
    verdict = after_attempt(failing_since, classify_status(410), T0 + 60)
    assert verdict.disable is DisableReason.GONE
    assert verdict.failing_since == (failing_since or T0 + 60)


def test_a_policy_of_its_own() -> None:
    policy = HealthPolicy(disable_after_seconds=3600)
    assert (
        after_attempt(T0, AttemptOutcome.ERROR, T0 + 3600, policy).disable is DisableReason.FAILING
    )


def test_a_sweep_disables_an_endpoint_that_makes_no_attempts() -> None:
    policy = HealthPolicy()
    assert not failing_too_long(None, policy, T0 + 100 * DAY)
    assert not failing_too_long(T0, policy, T0 + 4 * DAY)
    assert failing_too_long(T0, policy, T0 + 5 * DAY)
    assert not failing_too_long(T0 + 10, policy, T0)  # a clock behind: not failing for long


@pytest.mark.parametrize("seconds", [0, -1])
def test_invalid_policies_are_refused(seconds: float) -> None:
    with pytest.raises(ValueError):
        HealthPolicy(disable_after_seconds=seconds)


@given(
    st.lists(
        st.tuples(st.floats(0, 2 * DAY), st.sampled_from(list(AttemptOutcome))),
        max_size=50,
    ),
    st.floats(60, 10 * DAY),
)
def test_disabled_exactly_when_gone_or_failing_without_a_success_for_long_enough(
    attempts: list[tuple[float, AttemptOutcome]], disable_after: float
) -> None:
    policy = HealthPolicy(disable_after_seconds=disable_after)
    failing_since: float | None = None
    first_failure_after_success: float | None = None
    now = T0
    for dt, outcome in attempts:
        now += dt
        verdict = after_attempt(failing_since, outcome, now, policy)
        if outcome is AttemptOutcome.SUCCEEDED:
            first_failure_after_success = None
            assert verdict == HealthVerdict(None, None)
        else:
            if first_failure_after_success is None:
                first_failure_after_success = now
            assert verdict.failing_since == first_failure_after_success
            if outcome is AttemptOutcome.GONE:
                assert verdict.disable is DisableReason.GONE
            else:
                long_enough = now - first_failure_after_success >= disable_after
                assert (verdict.disable is DisableReason.FAILING) == long_enough
        failing_since = verdict.failing_since

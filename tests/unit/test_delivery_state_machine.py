import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.delivery import (
    TRANSITIONS,
    AttemptOutcome,
    AttemptResult,
    DeliveryStatus,
    IllegalTransition,
    check_transition,
    classify_status,
    decide,
)
from interlink.domain.retry import RetryPolicy


def result(
    outcome: AttemptOutcome, code: int | None = None, retry_after: float | None = None
) -> AttemptResult:
    return AttemptResult(outcome, code, 1.0, retry_after=retry_after)


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, AttemptOutcome.SUCCEEDED),
        (204, AttemptOutcome.SUCCEEDED),
        (299, AttemptOutcome.SUCCEEDED),
        (301, AttemptOutcome.FAILED),  # redirects are never followed
        (302, AttemptOutcome.FAILED),
        (400, AttemptOutcome.FAILED),
        (410, AttemptOutcome.GONE),
        (429, AttemptOutcome.FAILED),
        (500, AttemptOutcome.FAILED),
        (100, AttemptOutcome.FAILED),
    ],
)
def test_classify_status(code: int, outcome: AttemptOutcome) -> None:
    assert classify_status(code) is outcome


def test_success_ends_the_delivery() -> None:
    d = decide(0, result(AttemptOutcome.SUCCEEDED, 200), RetryPolicy())
    assert (d.status, d.attempt_count, d.next_attempt_in) == (DeliveryStatus.SUCCEEDED, 1, None)


def test_gone_dead_letters_and_disables_the_endpoint() -> None:
    d = decide(0, result(AttemptOutcome.GONE, 410), RetryPolicy())
    assert d.status is DeliveryStatus.DEAD and d.disable_endpoint


def test_failures_follow_the_schedule_then_dead_letter() -> None:
    policy = RetryPolicy(schedule=(0, 10, 20, 40), jitter=0)
    seen = []
    count = 0
    while True:
        d = decide(count, result(AttemptOutcome.FAILED, 500), policy)
        seen.append((d.status, d.next_attempt_in))
        count = d.attempt_count
        if d.status is DeliveryStatus.DEAD:
            break
    assert seen == [
        (DeliveryStatus.SCHEDULED, 10),
        (DeliveryStatus.SCHEDULED, 20),
        (DeliveryStatus.SCHEDULED, 40),
        (DeliveryStatus.DEAD, None),
    ]
    assert count == policy.max_attempts


def test_retry_after_postpones_the_next_attempt() -> None:
    d = decide(0, result(AttemptOutcome.FAILED, 429, retry_after=90), RetryPolicy(schedule=(0, 5)))
    assert d.status is DeliveryStatus.SCHEDULED and d.next_attempt_in == 90


outcomes = st.sampled_from(list(AttemptOutcome))


@given(st.lists(outcomes, min_size=1, max_size=30), st.integers(1, 10))
def test_any_run_of_attempts_respects_the_state_machine(
    run: list[AttemptOutcome], budget: int
) -> None:
    policy = RetryPolicy(schedule=tuple(float(i) for i in range(budget)))
    status = DeliveryStatus.PENDING
    count = 0
    for outcome in run:
        if status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD):
            break
        status = check_transition(status, DeliveryStatus.IN_FLIGHT)
        d = decide(count, result(outcome), policy)
        status = check_transition(status, d.status)
        assert d.attempt_count == count + 1
        count = d.attempt_count
        assert count <= budget  # never more attempts than the policy allows
        if d.status is DeliveryStatus.SCHEDULED:
            assert d.next_attempt_in is not None and d.next_attempt_in >= 0
    if count == budget and status not in (DeliveryStatus.SUCCEEDED,):
        assert status is DeliveryStatus.DEAD


def test_illegal_transitions_are_refused() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD)
    with pytest.raises(IllegalTransition):
        check_transition(DeliveryStatus.PENDING, DeliveryStatus.SUCCEEDED)
    # every terminal state can be redriven by an operator
    for terminal in (DeliveryStatus.SUCCEEDED, DeliveryStatus.DEAD):
        assert DeliveryStatus.PENDING in TRANSITIONS[terminal]

import random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.circuit_breaker import (
    CLOSED,
    BreakerOutcome,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    allow,
    breaker_outcome,
    cool_down,
    denied_until,
    record,
    window_counts,
)
from interlink.domain.delivery import AttemptOutcome

OK = BreakerOutcome.SUCCESS
FAIL = BreakerOutcome.FAILURE
CONN = BreakerOutcome.CONNECTION_ERROR
T0 = 1_700_000_000.0
DEFAULT = BreakerPolicy()


def send(
    state: BreakerState, policy: BreakerPolicy, now: float, outcome: BreakerOutcome
) -> tuple[bool, BreakerState]:
    """One attempt as the dispatcher makes it: ask, and only when allowed, send and record."""
    granted, state = allow(state, policy, now)
    if granted:
        state = record(state, policy, now, outcome, started_at=now)
    return granted, state


def opened(policy: BreakerPolicy = DEFAULT, now: float = T0) -> BreakerState:
    state = CLOSED
    for _ in range(policy.consecutive_connection_errors):
        _, state = send(state, policy, now, CONN)
    assert state.state is BreakerStatus.OPEN
    return state


# --- examples, one per transition -----------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    p = BreakerPolicy()
    assert (p.window_seconds, p.min_attempts, p.failure_ratio) == (300, 20, 0.5)
    assert (p.consecutive_connection_errors, p.open_seconds, p.max_open_seconds) == (5, 30, 600)
    assert p.half_open_probes == 1
    assert p.bucket_seconds == 30


def test_closed_allows_and_stays_closed_on_success() -> None:
    state = CLOSED
    for i in range(100):
        granted, state = send(state, DEFAULT, T0 + i, OK)
        assert granted
    assert state.state is BreakerStatus.CLOSED
    assert window_counts(state, DEFAULT, T0 + 99) == (100, 0)


def test_allow_while_closed_returns_the_same_state() -> None:
    _, state = send(CLOSED, DEFAULT, T0, FAIL)
    assert allow(state, DEFAULT, T0 + 1) == (True, state)
    assert allow(state, DEFAULT, T0 + 1)[1] is state  # nothing to write back


def test_all_failures_open_at_min_attempts_not_before() -> None:
    state = CLOSED
    for i in range(19):
        _, state = send(state, DEFAULT, T0 + i, FAIL)
        assert state.state is BreakerStatus.CLOSED
    _, state = send(state, DEFAULT, T0 + 19, FAIL)
    assert state.state is BreakerStatus.OPEN
    assert state.opened_at == T0 + 19
    assert state.retry_at == T0 + 19 + 30
    assert state.open_count == 1


def test_ratio_below_threshold_stays_closed_and_at_threshold_opens() -> None:
    state = CLOSED
    for i in range(11):
        _, state = send(state, DEFAULT, T0 + i, OK)
    for i in range(9):
        _, state = send(state, DEFAULT, T0 + 20 + i, FAIL)
    assert window_counts(state, DEFAULT, T0 + 29) == (20, 9)
    assert state.state is BreakerStatus.CLOSED
    _, state = send(state, DEFAULT, T0 + 30, FAIL)  # 10 of 21: still below half
    assert state.state is BreakerStatus.CLOSED
    _, state = send(state, DEFAULT, T0 + 31, FAIL)  # 11 of 22: half
    assert state.state is BreakerStatus.OPEN


def test_consecutive_connection_errors_open_at_once() -> None:
    state = CLOSED
    for i in range(4):
        _, state = send(state, DEFAULT, T0 + i, CONN)
    assert state.state is BreakerStatus.CLOSED
    assert state.consecutive_errors == 4
    _, state = send(state, DEFAULT, T0 + 4, CONN)
    assert state.state is BreakerStatus.OPEN
    assert window_counts(state, DEFAULT, T0 + 4) == (5, 5)  # far below min_attempts


@pytest.mark.parametrize("between", [OK, FAIL])
def test_an_answer_breaks_a_run_of_connection_errors(between: BreakerOutcome) -> None:
    state = CLOSED
    for outcome in [CONN] * 4 + [between] + [CONN] * 4:
        _, state = send(state, DEFAULT, T0, outcome)
    assert state.state is BreakerStatus.CLOSED
    assert state.consecutive_errors == 4


def test_attempt_outcomes_map_to_breaker_outcomes() -> None:
    assert breaker_outcome(AttemptOutcome.SUCCEEDED) is OK
    assert breaker_outcome(AttemptOutcome.FAILED) is FAIL
    assert breaker_outcome(AttemptOutcome.ERROR) is CONN  # timeouts are errors
    assert breaker_outcome(AttemptOutcome.GONE) is FAIL


def test_old_outcomes_leave_the_window() -> None:
    state = CLOSED
    for i in range(19):
        _, state = send(state, DEFAULT, T0 + i, FAIL)
    later = T0 + 19 + DEFAULT.window_seconds
    assert window_counts(state, DEFAULT, later) == (0, 0)
    _, state = send(state, DEFAULT, later, FAIL)
    assert state.state is BreakerStatus.CLOSED
    assert window_counts(state, DEFAULT, later) == (1, 1)


def test_open_denies_until_retry_at_then_lets_one_probe_through() -> None:
    state = opened()
    assert state.retry_at == T0 + 30
    assert denied_until(state, DEFAULT) == T0 + 30
    for now in (T0, T0 + 10, T0 + 29.999):
        granted, after = allow(state, DEFAULT, now)
        assert not granted and after is state
    granted, state = allow(state, DEFAULT, T0 + 30)
    assert granted
    assert state.state is BreakerStatus.HALF_OPEN
    assert state.probes_in_flight == 1
    granted, again = allow(state, DEFAULT, T0 + 31)
    assert not granted and again is state
    assert denied_until(state, DEFAULT) == T0 + 30 + DEFAULT.probe_lease_seconds


def test_probe_success_closes_with_a_fresh_window() -> None:
    state = opened()
    _, state = allow(state, DEFAULT, T0 + 30)
    state = record(state, DEFAULT, T0 + 31, OK, started_at=T0 + 30)
    assert state == CLOSED
    assert window_counts(state, DEFAULT, T0 + 31) == (0, 0)
    assert denied_until(state, DEFAULT) is None


def test_probe_failure_reopens_for_twice_as_long_up_to_the_cap() -> None:
    state = opened()
    now = T0
    waits = []
    for _ in range(8):
        assert state.retry_at is not None
        now = state.retry_at
        granted, state = allow(state, DEFAULT, now)
        assert granted
        state = record(state, DEFAULT, now + 1, CONN, started_at=now)
        assert state.state is BreakerStatus.OPEN
        assert state.retry_at is not None
        waits.append(state.retry_at - (now + 1))
    assert waits == [60, 120, 240, 480, 600, 600, 600, 600]
    assert state.open_count == 9


def test_cool_down_never_overflows() -> None:
    assert cool_down(DEFAULT, 1) == 30
    assert cool_down(DEFAULT, 10_000) == 600


def test_jitter_comes_from_the_callers_rng() -> None:
    policy = BreakerPolicy(consecutive_connection_errors=1, jitter=0.2)
    waits = set()
    for seed in range(50):
        state = record(CLOSED, policy, T0, CONN, rng=random.Random(seed))
        assert state.retry_at is not None
        waits.add(round(state.retry_at - T0, 6))
    assert len(waits) > 40
    assert all(24 <= w <= 36 for w in waits)
    state = record(CLOSED, policy, T0, CONN)
    assert state.retry_at == T0 + 30  # no rng, no jitter


def test_jitter_never_exceeds_the_cap() -> None:
    policy = BreakerPolicy(consecutive_connection_errors=1, jitter=0.5)
    state = msgspec.structs.replace(CLOSED, open_count=20)
    for seed in range(50):
        after = record(state, policy, T0, CONN, rng=random.Random(seed))
        assert after.retry_at is not None
        assert after.retry_at - T0 <= policy.max_open_seconds


def test_a_lost_probe_frees_its_slot_after_the_lease() -> None:
    state = opened()
    _, state = allow(state, DEFAULT, T0 + 30)  # this probe's process dies
    lease_end = T0 + 30 + DEFAULT.probe_lease_seconds
    assert not allow(state, DEFAULT, lease_end - 0.001)[0]
    granted, state = allow(state, DEFAULT, lease_end)
    assert granted
    assert state.probes_in_flight == 1


def test_several_probes_when_the_policy_allows() -> None:
    policy = BreakerPolicy(half_open_probes=3)
    state = opened(policy)
    grants = []
    for i in range(5):
        granted, state = allow(state, policy, T0 + 30 + i)
        grants.append(granted)
    assert grants == [True, True, True, False, False]
    assert state.probes_in_flight == 3


def test_outcomes_while_open_are_ignored() -> None:
    state = opened()
    # Attempts that were in flight when it opened report back.
    assert record(state, DEFAULT, T0 + 1, OK) is state
    assert record(state, DEFAULT, T0 + 1, CONN) is state


def test_a_straggler_is_not_taken_for_the_probe() -> None:
    state = opened()
    _, state = allow(state, DEFAULT, T0 + 30)
    assert record(state, DEFAULT, T0 + 31, FAIL, started_at=T0 - 5) is state
    assert record(state, DEFAULT, T0 + 31, OK, started_at=T0 - 5) is state


def test_a_clock_behind_never_adds_an_older_bucket() -> None:
    _, state = send(CLOSED, DEFAULT, T0 + 100, FAIL)
    _, state = send(state, DEFAULT, T0 + 50, FAIL)  # another process, its clock 50 s behind
    assert len(state.buckets) == 1
    assert window_counts(state, DEFAULT, T0 + 100) == (2, 2)


def test_a_changed_bucket_width_forgets_counts_it_cannot_place() -> None:
    state = CLOSED
    for i in range(10):
        _, state = send(state, DEFAULT, T0 + i, FAIL)
    wider = BreakerPolicy(window_seconds=3000)
    assert window_counts(state, wider, T0 + 10) == (0, 0)
    _, state = send(state, wider, T0 + 10, FAIL)
    assert window_counts(state, wider, T0 + 10) == (1, 1)


def test_state_round_trips_through_json() -> None:
    state = CLOSED
    for i in range(25):
        _, state = send(state, DEFAULT, T0 + 7 * i, [OK, FAIL, CONN][i % 3])
    encoded = msgspec.json.encode(state)
    assert msgspec.json.decode(encoded, type=BreakerState) == state
    assert len(encoded) < 400
    encoded_policy = msgspec.json.encode(DEFAULT)
    assert msgspec.json.decode(encoded_policy, type=BreakerPolicy) == DEFAULT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window_seconds": 0},
        {"min_attempts": 0},
        {"failure_ratio": 0},
        {"failure_ratio": 1.5},
        {"consecutive_connection_errors": 0},
        {"open_seconds": 0},
        {"open_seconds": 700},
        {"half_open_probes": 0},
        {"buckets": 0},
        {"jitter": 1},
        {"probe_lease_seconds": 0},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------

policies = st.builds(
    BreakerPolicy,
    window_seconds=st.sampled_from([1.0, 10.0, 60.0, 300.0]),
    min_attempts=st.integers(1, 30),
    failure_ratio=st.floats(0.05, 1.0),
    consecutive_connection_errors=st.integers(1, 8),
    open_seconds=st.sampled_from([0.5, 5.0, 30.0]),
    max_open_seconds=st.just(600.0),
    half_open_probes=st.integers(1, 3),
    buckets=st.integers(1, 12),
    jitter=st.sampled_from([0.0, 0.2, 0.5]),
    probe_lease_seconds=st.sampled_from([1.0, 120.0]),
)
outcomes = st.sampled_from(list(BreakerOutcome))


@given(
    policies,
    st.integers(0, 2**32),
    st.integers(10, 250),
    st.sampled_from([0.01, 0.3, 3.0, 30.0, 300.0]),
)
def test_breaker_invariants_under_any_history(
    policy: BreakerPolicy, seed: int, steps: int, mean_wait: float
) -> None:
    # A dispatcher's life, drawn from the seed: time passes, attempts start (when allowed) and
    # finish in any order, and the receiver's health changes now and then.
    rng = random.Random(seed)
    p_fail, p_conn = rng.random(), rng.random()
    state = CLOSED
    now = T0
    in_flight: list[float] = []  # when each attempt was sent
    recorded: list[float] = []  # when outcomes came in while closed, since the last close
    for _ in range(steps):
        before = state
        roll = rng.random()
        if roll < 0.02:
            p_fail, p_conn = rng.random(), rng.random()
        elif roll < 0.25:
            now += rng.expovariate(1 / mean_wait)
        elif roll < 0.65:
            granted, state = allow(state, policy, now)
            if before.state is BreakerStatus.OPEN:
                assert before.retry_at is not None
                # Denied until retry_at, granted from then on.
                assert granted == (now >= before.retry_at)
            if granted:
                in_flight.append(now)
            else:
                assert state is before
        elif in_flight:
            started = in_flight.pop(rng.randrange(len(in_flight)))
            outcome = OK
            if rng.random() < p_fail:
                outcome = CONN if rng.random() < p_conn else FAIL
            state = record(state, policy, now, outcome, started_at=started, rng=rng)
            if before.state is BreakerStatus.CLOSED:
                recorded.append(now)
            if before.state is BreakerStatus.CLOSED and state.state is BreakerStatus.OPEN:
                by_errors = state.consecutive_errors >= policy.consecutive_connection_errors
                attempts, failures = window_counts(state, policy, now)
                # The buckets cover the latest part of the window only: never more attempts than
                # the window really holds, so min_attempts is checked against the real count.
                real = sum(1 for t in recorded if t > now - policy.window_seconds - 1e-6)
                assert attempts <= real
                by_ratio = (
                    real >= policy.min_attempts
                    and attempts >= policy.min_attempts
                    and failures >= policy.failure_ratio * attempts
                )
                assert by_errors or by_ratio
            if state.state is BreakerStatus.CLOSED and before.state is not BreakerStatus.CLOSED:
                recorded = []
            if state.state is BreakerStatus.OPEN and before.state is not BreakerStatus.OPEN:
                assert state.opened_at == now and state.retry_at is not None
                wait = state.retry_at - now
                assert policy.open_seconds * (1 - policy.jitter) - 1e-9 <= wait
                assert wait <= policy.max_open_seconds + 1e-9

        assert state.probes_in_flight <= policy.half_open_probes
        if state.state is not BreakerStatus.HALF_OPEN:
            assert state.probes_in_flight == 0
        assert len(state.buckets) <= policy.buckets
        assert list(state.buckets) == sorted(state.buckets, key=lambda b: b.index)

    # Recovery: once the receiver is healthy, a run of successes closes it and keeps it closed.
    now += policy.max_open_seconds + policy.probe_lease_seconds
    for j in range(30):
        granted, state = send(state, policy, now + j, OK)
        assert granted
        assert state.state is BreakerStatus.CLOSED


@given(
    policies,
    st.lists(st.sampled_from([FAIL, CONN]), min_size=1, max_size=40),
    st.floats(0, 1),
    st.floats(T0, T0 + 10**6),
)
def test_all_failing_opens_within_min_attempts(
    policy: BreakerPolicy,
    failures: list[BreakerOutcome],
    spacing: float,
    start: float,
) -> None:
    # Every attempt inside one window: the window always covers (buckets - 1) whole buckets.
    span = (policy.buckets - 1) * policy.bucket_seconds * 0.99
    dt = spacing * span / policy.min_attempts
    failures = (failures * policy.min_attempts)[: policy.min_attempts]
    state = CLOSED
    sent = 0
    for i, outcome in enumerate(failures):
        granted, state = send(state, policy, start + i * dt, outcome)
        assert granted
        sent += 1
        if state.state is BreakerStatus.OPEN:
            break
    assert state.state is BreakerStatus.OPEN
    assert sent <= policy.min_attempts


def test_with_the_defaults_the_breaker_opens_within_20_attempts() -> None:
    state = CLOSED
    for attempt in range(1, 21):
        _, state = send(state, DEFAULT, T0 + attempt * 13, FAIL)  # 260 s: one window
        if state.state is BreakerStatus.OPEN:
            break
    assert state.state is BreakerStatus.OPEN
    assert attempt == 20


@given(st.lists(st.tuples(st.floats(0, 100), outcomes), max_size=300), policies)
def test_window_memory_is_bounded(
    events: list[tuple[float, BreakerOutcome]], policy: BreakerPolicy
) -> None:
    state = CLOSED
    now = T0
    for dt, outcome in events:
        now += dt
        _, state = send(state, policy, now, outcome)
        assert len(state.buckets) <= policy.buckets
        assert len(msgspec.json.encode(state)) <= 300 + 40 * policy.buckets

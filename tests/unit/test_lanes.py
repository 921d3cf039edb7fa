"""Endpoint lanes: what a lane admits, what it defers and to when, and what outcomes do to it."""

from __future__ import annotations

import itertools
import random

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.domain.circuit_breaker import BreakerPolicy, BreakerState, BreakerStatus
from interlink.domain.delivery import AttemptOutcome
from interlink.domain.endpoint_health import DisableReason, HealthPolicy
from interlink.domain.lanes import (
    Lane,
    LanePolicy,
    LaneState,
    Outcome,
    admit,
    drain_window,
    settle,
)
from interlink.domain.rate_limit import RateLimit, TokenBucket

NOW = 1_700_000_000.0


def candidates(n: int, endpoint: str = "ep") -> list[tuple[str, str]]:
    return [(f"d{i}", endpoint) for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 200),
    concurrency=st.integers(1, 50),
    in_flight=st.integers(0, 60),
    rate=st.none() | st.floats(0.5, 500),
    tokens=st.floats(0, 50),
    seed=st.integers(0, 2**32),
)
def test_every_candidate_is_sent_or_deferred_within_the_lanes_limits(
    n: int, concurrency: int, in_flight: int, rate: float | None, tokens: float, seed: int
) -> None:
    limit = None if rate is None else RateLimit(rate)
    bucket = None if limit is None else TokenBucket(min(tokens, limit.capacity), NOW)
    lane = Lane(LanePolicy(concurrency, limit), LaneState(bucket=bucket), in_flight)
    out = admit(candidates(n), {"ep": lane}, NOW, random.Random(seed))

    ids = out.granted + [d for d, _ in out.deferred]
    assert sorted(ids) == sorted(d for d, _ in candidates(n))  # each exactly once
    assert len(out.granted) <= max(0, concurrency - in_flight)
    if bucket is not None:
        # take() grants a token a hair early (within the clock's resolution): at most this much.
        assert len(out.granted) <= int(bucket.tokens + 0.01)
    assert all(at > NOW for _, at in out.deferred)  # deferred means later, never lost
    # Granted in the order they were due: the earliest candidates go first.
    assert out.granted == [d for d, _ in candidates(n)][: len(out.granted)]


def test_deferred_deliveries_are_paced_at_the_rate_limit_with_jitter() -> None:
    limit = RateLimit(10)  # 10/s, burst 10
    lane = Lane(LanePolicy(100, limit), LaneState(), 0)
    out = admit(candidates(110), {"ep": lane}, NOW, random.Random(1))
    assert len(out.granted) == 10
    times = [at for _, at in out.deferred]
    assert times == sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.05 - 1e-9 <= g <= 0.15 + 1e-9 for g in gaps)  # 1/rate, ±50 %
    assert len({round(g, 6) for g in gaps}) > 50  # spread, not synchronized
    # 100 deferred at 10/s take about 10 s: the backlog drains at the rate.
    assert 8 <= times[-1] - NOW <= 12
    # The next claim continues after the horizon instead of stacking on the same slots.
    again = admit(
        [("late", "ep")],
        {"ep": Lane(lane.policy, out.states["ep"], 0)},
        NOW + 0.01,
        random.Random(2),
    )
    assert again.deferred[0][1] > times[-1]


def test_an_open_breaker_sends_nothing_and_holds_the_backlog_until_it_may_probe() -> None:
    opened = BreakerState(state=BreakerStatus.OPEN, opened_at=NOW - 1, retry_at=NOW + 30)
    lane = Lane(LanePolicy(), LaneState(breaker=opened), 0)
    out = admit(candidates(50), {"ep": lane}, NOW, random.Random(3))
    assert out.granted == []
    times = [at for _, at in out.deferred]
    assert all(NOW + 30 <= t <= NOW + 30 + 3 for t in times)  # retry_at plus a tenth's spread
    assert len(set(times)) == 50
    assert "ep" not in out.states  # nothing changed: nothing to write


def test_half_open_lets_one_probe_through_and_holds_the_rest() -> None:
    opened = BreakerState(
        state=BreakerStatus.OPEN, opened_at=NOW - 30, retry_at=NOW - 0.1, open_count=1
    )
    lane = Lane(LanePolicy(), LaneState(breaker=opened), 0)
    out = admit(candidates(20), {"ep": lane}, NOW, random.Random(4))
    assert out.granted == ["d0"]
    assert out.states["ep"].breaker.state is BreakerStatus.HALF_OPEN
    assert out.states["ep"].breaker.probes_in_flight == 1
    # Held as long as the next cool-down (60 s) would be, not re-asked every moment.
    assert all(at >= NOW + 60 for _, at in out.deferred)


def test_a_probe_is_not_spent_on_a_delivery_the_lane_cannot_send() -> None:
    opened = BreakerState(state=BreakerStatus.OPEN, opened_at=NOW - 30, retry_at=NOW - 0.1)
    lane = Lane(LanePolicy(concurrency=2), LaneState(breaker=opened), in_flight=2)
    out = admit(candidates(3), {"ep": lane}, NOW, random.Random(5))
    assert out.granted == []
    assert out.states.get("ep", lane.state).breaker.state is BreakerStatus.OPEN


def test_lanes_are_independent() -> None:
    full = Lane(LanePolicy(concurrency=1), LaneState(), in_flight=1)
    free = Lane(LanePolicy(concurrency=5), LaneState(), in_flight=0)
    mixed = [("a0", "full"), ("b0", "free"), ("a1", "full"), ("b1", "free")]
    out = admit(mixed, {"full": full, "free": free}, NOW, random.Random(6))
    assert out.granted == ["b0", "b1"]
    assert sorted(d for d, _ in out.deferred) == ["a0", "a1"]


def fail(n: int, start: float = NOW) -> list[Outcome]:
    return [Outcome(start + i * 0.01, AttemptOutcome.FAILED, 5.0) for i in range(n)]


def test_twenty_failures_open_the_breaker_and_a_probe_success_recovers_it() -> None:
    policy = LanePolicy()
    rng = random.Random(7)
    s = settle(LaneState(), policy, fail(19), NOW, rng)
    assert s.state.breaker.state is BreakerStatus.CLOSED
    s = settle(s.state, policy, fail(1, NOW + 1), NOW + 1, rng)
    assert s.state.breaker.state is BreakerStatus.OPEN
    assert s.state.failing_since == NOW
    assert not s.recovered and s.disabled is None

    probe = admit([("p", "ep")], {"ep": Lane(policy, s.state, 0)}, NOW + 100, rng)
    assert probe.granted == ["p"]
    ok = Outcome(NOW + 100, AttemptOutcome.SUCCEEDED, 3.0)
    s = settle(probe.states["ep"], policy, [ok], NOW + 100.1, rng)
    assert s.state.breaker.state is BreakerStatus.CLOSED
    assert s.recovered and s.failing_for is not None and s.failing_for >= 100
    assert s.state.failing_since is None


def test_gone_disables_and_a_long_failing_streak_disables() -> None:
    rng = random.Random(8)
    gone = settle(LaneState(), LanePolicy(), [Outcome(NOW, AttemptOutcome.GONE, 1)], NOW, rng)
    assert gone.disabled is DisableReason.GONE
    policy = LanePolicy(health=HealthPolicy(disable_after_seconds=3600))
    s = settle(LaneState(), policy, fail(1), NOW, rng)
    assert s.disabled is None
    later = NOW + 3600
    s = settle(s.state, policy, [Outcome(later, AttemptOutcome.ERROR, 1)], later, rng)
    assert s.disabled is DisableReason.FAILING


def test_latency_is_a_moving_average() -> None:
    rng = random.Random(9)
    s = settle(LaneState(), LanePolicy(), [Outcome(NOW, AttemptOutcome.SUCCEEDED, 100)], NOW, rng)
    assert s.state.latency == 0.1
    ten = [Outcome(NOW, AttemptOutcome.SUCCEEDED, 10)] * 20
    s = settle(s.state, LanePolicy(), ten, NOW, rng)
    assert s.state.latency is not None and 0.01 < s.state.latency < 0.012


def test_the_drain_window_follows_the_rate_limit() -> None:
    policy = LanePolicy(rate_limit=RateLimit(100, "minute"))
    assert drain_window(policy, LaneState(), 300) == 180  # 300 at 100/min
    assert drain_window(LanePolicy(), LaneState(), 0) == 1.0


@given(st.builds(LaneState))
def test_lane_state_round_trips_as_json(state: LaneState) -> None:
    assert msgspec.json.decode(msgspec.json.encode(state), type=LaneState) == state


def test_a_custom_breaker_policy_is_respected() -> None:
    policy = LanePolicy(breaker=BreakerPolicy(min_attempts=3, failure_ratio=1.0))
    s = settle(LaneState(), policy, fail(3), NOW, random.Random(10))
    assert s.state.breaker.state is BreakerStatus.OPEN


def test_a_fresh_lane_puts_no_more_in_flight_than_its_breaker_window_needs() -> None:
    # 20 attempts decide a fresh breaker: the 21st waits for their results, however many
    # slots the lane has, so a failing endpoint opens after 20 attempts, not 32.
    policy = LanePolicy(concurrency=32)
    out = admit(candidates(50), {"ep": Lane(policy, LaneState(), 0)}, NOW, random.Random(11))
    assert len(out.granted) == 20
    busy = admit(candidates(50), {"ep": Lane(policy, LaneState(), 15)}, NOW, random.Random(12))
    assert len(busy.granted) == 5
    # Once the window has its 20 (successes here), the lane's own concurrency is the limit.
    ok = [Outcome(NOW, AttemptOutcome.SUCCEEDED, 2.0)] * 20
    judged = settle(LaneState(), policy, ok, NOW, random.Random(13)).state
    out = admit(candidates(50), {"ep": Lane(policy, judged, 0)}, NOW, random.Random(14))
    assert len(out.granted) == 32


def test_a_lane_full_for_a_while_waits_at_least_that_long_for_a_slot() -> None:
    # A receiver that never answers: its attempts are out longer than the average says (it has
    # learned nothing yet), so its backlog is not claimed and deferred again every 50 ms.
    policy = LanePolicy(concurrency=4)
    full = Lane(policy, LaneState(), 4)
    first = admit(candidates(40), {"ep": full}, NOW, random.Random(1))
    assert first.granted == [] and first.states["ep"].full_since == NOW
    later = NOW + 3.0
    still = Lane(policy, first.states["ep"], 4)
    out = admit(candidates(40), {"ep": still}, later, random.Random(2))
    assert out.granted == []
    assert out.states.get("ep", still.state).full_since == NOW  # full since the first look
    assert min(at for _, at in out.deferred) >= later + 3.0
    # A slot free again: the lane is no longer full, and the next wait is the average's.
    freed = admit(candidates(40), {"ep": Lane(policy, still.state, 3)}, later, random.Random(3))
    assert len(freed.granted) == 1 and freed.states["ep"].full_since is None
    assert min(at for _, at in freed.deferred) < later + 1.0

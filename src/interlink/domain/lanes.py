"""An endpoint's lane: which of its due deliveries may be sent now, and what each outcome does.

A lane is the endpoint's sending policy (concurrency, rate limit, circuit breaker, health) and
its shared state, a plain record kept in the database so every dispatcher process sees the
same breaker, the same token bucket and the same failing streak. Both functions here are pure:
the storage adapters read the lanes, call them inside the claim or settle transaction, and
write back what changed.

A delivery the lane cannot take now is *deferred*: its ``next_attempt_at`` moves to when the
lane can take it, and its attempt count is untouched. Deferring instead of skipping keeps a
blocked endpoint's backlog out of the front of the claim order, so it costs the other endpoints
nothing; pacing deferred deliveries by the lane's rate (with jitter) is what makes a backlog
drain at the endpoint's rate limit, not as a storm, once its breaker closes.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from interlink.domain.circuit_breaker import (
    CLOSED,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    allow,
    breaker_outcome,
    cool_down,
    record,
    window_counts,
)
from interlink.domain.delivery import AttemptOutcome
from interlink.domain.endpoint_health import DisableReason, HealthPolicy, after_attempt
from interlink.domain.rate_limit import RateLimit, TokenBucket, full_bucket, take

DEFAULT_CONCURRENCY = 32
# Until an endpoint has answered, its latency is assumed to be this (seconds).
DEFAULT_LATENCY = 0.05
# A lane at its concurrency limit looks again no sooner than this: a slot frees when an attempt
# ends, which is never instantaneous, and looking sooner would only spin.
MIN_SLOT_WAIT = 0.005
_LATENCY_WEIGHT = 0.2  # of the newest attempt in the moving average


class LanePolicy(msgspec.Struct, frozen=True):
    concurrency: int = DEFAULT_CONCURRENCY
    rate_limit: RateLimit | None = None
    timeout_seconds: float = 15.0
    breaker: BreakerPolicy = BreakerPolicy()
    health: HealthPolicy = HealthPolicy()


class LaneState(msgspec.Struct, frozen=True):
    breaker: BreakerState = CLOSED
    bucket: TokenBucket | None = None
    # The latest time a delivery was deferred to for pacing: the next one goes after it.
    horizon: float = 0.0
    latency: float | None = None  # moving average of attempt latency, seconds
    failing_since: float | None = None
    # Since when every slot has been taken at each admission: how long its attempts have been
    # out at least, which the moving average learns only when they end.
    full_since: float | None = None


class Lane(msgspec.Struct, frozen=True):
    policy: LanePolicy
    state: LaneState
    in_flight: int  # attempts under way for this endpoint, in every process


class Admission(msgspec.Struct):
    granted: list[str]
    deferred: list[tuple[str, float]]  # (delivery id, its new next_attempt_at)
    states: dict[str, LaneState]  # endpoint id → new state, only where it changed


def _held_until(state: BreakerState, policy: BreakerPolicy, now: float) -> float:
    """How long a delivery the breaker denies is put aside: until it lets a probe through, or,
    while a probe is out, as long as the next cool-down would be if the probe fails. Each held
    delivery is touched about once per cool-down; a probe that succeeds releases them all at
    once (``drain_window``), so a recovered endpoint does not wait out that guess."""
    if state.state is BreakerStatus.OPEN and state.retry_at is not None:
        return state.retry_at
    return now + cool_down(policy, state.open_count + 1)


def drain_window(policy: LanePolicy, state: LaneState, backlog: int) -> float:
    """Over how long a backlog of ``backlog`` deliveries is spread when the breaker closes:
    the time the lane needs to send them, so they arrive at its rate and not as a storm."""
    return max(1.0, backlog * _gap(policy, state))


def _gap(policy: LanePolicy, state: LaneState) -> float:
    """The time between two sends the lane can sustain: by its rate limit or its slots."""
    latency = max(MIN_SLOT_WAIT, min(state.latency or DEFAULT_LATENCY, policy.timeout_seconds))
    by_slots = latency / policy.concurrency
    if policy.rate_limit is None:
        return by_slots
    return max(by_slots, 1.0 / policy.rate_limit.per_second)


def admit(
    candidates: Iterable[tuple[str, str]],
    lanes: Mapping[str, Lane],
    now: float,
    rng: random.Random,
) -> Admission:
    """Splits due ``(delivery_id, endpoint_id)`` pairs, earliest first, into sent and deferred."""
    out = Admission([], [], {})
    by_endpoint: dict[str, list[str]] = {}
    for delivery_id, endpoint_id in candidates:
        by_endpoint.setdefault(endpoint_id, []).append(delivery_id)
    for endpoint_id, ids in by_endpoint.items():
        lane = lanes[endpoint_id]
        state = _admit_lane(lane, ids, now, rng, out)
        if state != lane.state:
            out.states[endpoint_id] = state
    return out


def _admit_lane(
    lane: Lane, ids: Sequence[str], now: float, rng: random.Random, out: Admission
) -> LaneState:
    policy, state = lane.policy, lane.state
    breaker, horizon = state.breaker, state.horizon
    limit = policy.rate_limit
    bucket = state.bucket
    if limit is not None and bucket is None:
        bucket = full_bucket(limit, now)
    free = policy.concurrency - lane.in_flight
    if breaker.state is BreakerStatus.CLOSED:
        # Until the window holds enough attempts to judge by, no more go out than it needs:
        # a fresh endpoint that fails everything opens its breaker after min_attempts, not
        # after a whole concurrency's worth that was already in flight.
        seen, _ = window_counts(breaker, policy.breaker, now)
        if seen < policy.breaker.min_attempts:
            free = min(free, policy.breaker.min_attempts - seen - lane.in_flight)
    gap = _gap(policy, state)
    # A lane full since earlier admissions waits at least that long for a slot: attempts that
    # have not ended (a receiver that never answers) take longer than their average says, and
    # looking again at the average's pace would claim and defer its backlog over and over.
    # Only the first look waits that long; the backlog behind it keeps the average's pace. How
    # long slots have been held says when one may free, not how fast they free after: leases of
    # a dead process hold them until they lapse and then free all at once, so pacing each
    # delivery by it spread a backlog over hours (issue 11). A receiver that really is slow is
    # paced by its latency once its attempts end.
    full_since = (state.full_since or now) if free <= 0 and lane.in_flight > 0 else None
    held = 0.0 if full_since is None else now - full_since
    slot_wait = max(MIN_SLOT_WAIT, state.latency or DEFAULT_LATENCY, held)

    def pace(delivery_id: str, earliest: float) -> None:
        nonlocal horizon
        horizon = max(earliest, horizon) + gap * rng.uniform(0.5, 1.5)
        out.deferred.append((delivery_id, horizon))

    for delivery_id in ids:
        allowed, opened = allow(breaker, policy.breaker, now)
        if not allowed:
            until = _held_until(opened, policy.breaker, now)
            # Spread over a tenth of the wait, so the backlog does not return all at once.
            spread = max(1.0, 0.1 * (until - now))
            out.deferred.append((delivery_id, until + rng.uniform(0.0, spread)))
            continue
        if free <= 0:
            pace(delivery_id, now + slot_wait)
            continue
        if limit is not None and bucket is not None:
            granted, bucket, wait = take(bucket, limit, now)
            if not granted:
                pace(delivery_id, now + wait)
                continue
        breaker = opened  # a probe granted in half-open is counted only when it is sent
        free -= 1
        out.granted.append(delivery_id)
    return msgspec.structs.replace(
        state, breaker=breaker, bucket=bucket, horizon=horizon, full_since=full_since
    )


def restarted(state: LaneState) -> LaneState:
    """The lane when the only process on the database starts: none of its slots is taken
    (every lease was released) and nothing waits on its pacing (what it deferred is due again),
    so what was derived from slots and pacing starts afresh; breaker, token bucket, latency and
    failing streak carry over."""
    return msgspec.structs.replace(state, horizon=0.0, full_since=None)


class LaneChange(enum.StrEnum):
    """What an endpoint's operators are told about: the operator events."""

    DISABLED = "endpoint.disabled"
    RECOVERED = "endpoint.recovered"


class Outcome(msgspec.Struct, frozen=True):
    started_at: float
    outcome: AttemptOutcome
    latency_ms: float


class Settlement(msgspec.Struct, frozen=True):
    state: LaneState
    disabled: DisableReason | None
    recovered: bool  # the breaker closed again after it had opened
    failing_for: float | None  # seconds the endpoint had been failing, for the recovery


def settle(
    lane: LaneState,
    policy: LanePolicy,
    outcomes: Sequence[Outcome],
    now: float,
    rng: random.Random,
) -> Settlement:
    """The lane after a batch of attempts' outcomes (in the order they ended)."""
    breaker, latency, failing_since = lane.breaker, lane.latency, lane.failing_since
    was_tripped = breaker.state is not BreakerStatus.CLOSED
    streak_before = failing_since
    disabled: DisableReason | None = None
    for o in outcomes:
        breaker = record(
            breaker,
            policy.breaker,
            now,
            breaker_outcome(o.outcome),
            started_at=o.started_at,
            rng=rng,
        )
        seconds = o.latency_ms / 1000.0
        latency = seconds if latency is None else latency + _LATENCY_WEIGHT * (seconds - latency)
        verdict = after_attempt(failing_since, o.outcome, now, policy.health)
        failing_since = verdict.failing_since
        disabled = disabled or verdict.disable
    recovered = was_tripped and breaker.state is BreakerStatus.CLOSED
    failing_for = None if streak_before is None else now - streak_before
    state = msgspec.structs.replace(
        lane, breaker=breaker, latency=latency, failing_since=failing_since
    )
    return Settlement(state, disabled, recovered, failing_for if recovered else None)

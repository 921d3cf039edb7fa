"""A per-endpoint circuit breaker: an immutable state value and pure transitions.

The state is a plain record (it round-trips through ``msgspec.json``), so it can live in the
endpoint's row and be shared by every dispatcher process; time is always passed in as ``now``.

``closed`` sends everything and watches a sliding window of outcomes. It opens when, with at
least ``min_attempts`` in the window, the failure ratio reaches ``failure_ratio`` — or at once
after ``consecutive_connection_errors`` connection errors in a row, because a receiver that
does not answer at all should not cost a full window of timeouts. ``open`` sends nothing until
``retry_at``: a denied delivery waits without spending an attempt. Then ``half_open`` lets up
to ``half_open_probes`` probes through; a probe success closes the breaker with a fresh window,
a probe failure opens it again for twice as long (up to ``max_open_seconds``).
"""

from __future__ import annotations

import enum
import math
import random
from typing import Annotated

import msgspec

from interlink.domain.delivery import AttemptOutcome


class BreakerStatus(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerOutcome(enum.StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"  # the receiver answered, but not with 2xx
    CONNECTION_ERROR = "connection_error"  # no answer at all; timeouts included


def breaker_outcome(outcome: AttemptOutcome) -> BreakerOutcome:
    """How an attempt counts for the breaker."""
    if outcome is AttemptOutcome.SUCCEEDED:
        return BreakerOutcome.SUCCESS
    if outcome is AttemptOutcome.ERROR:
        return BreakerOutcome.CONNECTION_ERROR
    # GONE disables the endpoint anyway; counting it as a failure keeps the window honest.
    return BreakerOutcome.FAILURE


# Bounds the API states (and msgspec checks) on each threshold: wide, but finite.
_Seconds = Annotated[float, msgspec.Meta(gt=0, le=30 * 86400)]
_Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]


class BreakerPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    window_seconds: _Seconds = 300.0
    min_attempts: _Count = 20
    failure_ratio: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.5
    consecutive_connection_errors: _Count = 5
    open_seconds: _Seconds = 30.0
    max_open_seconds: _Seconds = 600.0
    half_open_probes: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    # The window is kept as this many time buckets, so its size is bounded whatever the traffic.
    buckets: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    # Spread of the cool-down (±), only applied when the caller passes an rng to ``record``.
    jitter: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.2
    # A probe that never reports back (its process died) frees its slot after this long, or a
    # half-open breaker would stay stuck; it matches the dispatcher's lease.
    probe_lease_seconds: _Seconds = 120.0

    def __post_init__(self) -> None:
        if not self.window_seconds > 0:
            raise ValueError("window_seconds must be positive")
        if self.min_attempts < 1:
            raise ValueError("min_attempts must be at least 1")
        if not 0 < self.failure_ratio <= 1:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.consecutive_connection_errors < 1:
            raise ValueError("consecutive_connection_errors must be at least 1")
        if not 0 < self.open_seconds <= self.max_open_seconds:
            raise ValueError("open_seconds must be positive and at most max_open_seconds")
        if self.half_open_probes < 1:
            raise ValueError("half_open_probes must be at least 1")
        if self.buckets < 1:
            raise ValueError("buckets must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if not self.probe_lease_seconds > 0:
            raise ValueError("probe_lease_seconds must be positive")

    @property
    def bucket_seconds(self) -> float:
        return self.window_seconds / self.buckets


class Bucket(msgspec.Struct, frozen=True, array_like=True):
    """Outcomes in one slice of the window; ``index`` is ``floor(time / bucket_seconds)``."""

    index: int
    successes: int = 0
    failures: int = 0


class BreakerState(msgspec.Struct, frozen=True):
    state: BreakerStatus = BreakerStatus.CLOSED
    opened_at: float | None = None
    retry_at: float | None = None  # when an open breaker may go half-open
    consecutive_errors: int = 0  # connection errors in a row
    buckets: tuple[Bucket, ...] = ()  # oldest first
    probes_in_flight: int = 0
    probe_started_at: float | None = None  # the latest probe granted
    open_count: int = 0  # times opened since it was last closed: drives the doubling


CLOSED = BreakerState()

_MAX_DOUBLINGS = 60  # beyond this 2**n only overflows; the cap has long been reached


def _bucket_index(policy: BreakerPolicy, now: float) -> int:
    return math.floor(now / policy.bucket_seconds)


def _live(buckets: tuple[Bucket, ...], current: int, size: int) -> tuple[Bucket, ...]:
    # Buckets slightly ahead of ``current`` come from a process whose clock runs ahead: keep
    # them. Far ahead can only be a changed bucket width: those counts mean nothing now.
    return tuple(b for b in buckets if current - size < b.index <= current + size)


def window_counts(state: BreakerState, policy: BreakerPolicy, now: float) -> tuple[int, int]:
    """``(attempts, failures)`` in the window that ends at ``now``."""
    live = _live(state.buckets, _bucket_index(policy, now), policy.buckets)
    return (
        sum(b.successes + b.failures for b in live),
        sum(b.failures for b in live),
    )


def allow(state: BreakerState, policy: BreakerPolicy, now: float) -> tuple[bool, BreakerState]:
    """May one attempt be sent now? A denied attempt must not be sent nor counted.

    The state comes back as the same object when nothing changed, so the caller can skip
    writing it.
    """
    if state.state is BreakerStatus.CLOSED:
        return True, state
    if state.state is BreakerStatus.OPEN:
        if state.retry_at is not None and now < state.retry_at:
            return False, state
        return True, msgspec.structs.replace(
            state, state=BreakerStatus.HALF_OPEN, probes_in_flight=1, probe_started_at=now
        )
    in_flight = state.probes_in_flight
    if state.probe_started_at is not None and now >= (
        state.probe_started_at + policy.probe_lease_seconds
    ):
        in_flight = 0  # lost probes: their processes are gone, their slots are free again
    if in_flight >= policy.half_open_probes:
        return False, state
    return True, msgspec.structs.replace(
        state, probes_in_flight=in_flight + 1, probe_started_at=now
    )


def denied_until(state: BreakerState, policy: BreakerPolicy) -> float | None:
    """When a denied attempt is worth asking about again; None when nothing is denied.

    For a half-open breaker this is the latest time: a probe's success closes it sooner.
    """
    if state.state is BreakerStatus.OPEN:
        return state.retry_at
    if state.state is BreakerStatus.HALF_OPEN and state.probe_started_at is not None:
        return state.probe_started_at + policy.probe_lease_seconds
    return None


def record(
    state: BreakerState,
    policy: BreakerPolicy,
    now: float,
    outcome: BreakerOutcome,
    *,
    started_at: float | None = None,
    rng: random.Random | None = None,
) -> BreakerState:
    """The state after an attempt's outcome.

    ``started_at`` (when the attempt was sent) lets an attempt that was already in flight when
    the breaker opened be ignored: it says nothing about a probe. ``rng`` jitters the cool-down
    when the breaker opens; without it the cool-down is exact.
    """
    if state.state is BreakerStatus.OPEN:
        # Stragglers sent before the breaker opened: the cool-down is already decided.
        return state
    if state.state is BreakerStatus.HALF_OPEN:
        if started_at is not None and state.opened_at is not None and started_at < state.opened_at:
            return state
        if outcome is BreakerOutcome.SUCCESS:
            return CLOSED
        return _open(state, policy, now, rng)

    failed = outcome is not BreakerOutcome.SUCCESS
    current = _bucket_index(policy, now)
    live = _live(state.buckets, current, policy.buckets)
    if live and live[-1].index >= current:
        # Never a bucket older than the newest: another process's clock may be a little ahead.
        last = live[-1]
        live = (
            *live[:-1],
            Bucket(last.index, last.successes + (not failed), last.failures + failed),
        )
    else:
        live = (*live, Bucket(current, int(not failed), int(failed)))
    live = live[-policy.buckets :]
    consecutive = state.consecutive_errors + 1 if outcome is BreakerOutcome.CONNECTION_ERROR else 0
    updated = msgspec.structs.replace(state, buckets=live, consecutive_errors=consecutive)
    if not failed:
        # A success can only lower the ratio; opening on one would be a surprise.
        return updated
    if consecutive >= policy.consecutive_connection_errors:
        return _open(updated, policy, now, rng)
    attempts = sum(b.successes + b.failures for b in live)
    failures = sum(b.failures for b in live)
    if attempts >= policy.min_attempts and failures >= policy.failure_ratio * attempts:
        return _open(updated, policy, now, rng)
    return updated


def cool_down(policy: BreakerPolicy, open_count: int) -> float:
    """The cool-down, before jitter, of the ``open_count``-th opening since the last close."""
    doublings = min(max(open_count - 1, 0), _MAX_DOUBLINGS)
    return min(policy.max_open_seconds, policy.open_seconds * 2.0**doublings)


def _open(
    state: BreakerState, policy: BreakerPolicy, now: float, rng: random.Random | None
) -> BreakerState:
    count = state.open_count + 1
    wait = cool_down(policy, count)
    if rng is not None and policy.jitter:
        wait = min(
            policy.max_open_seconds, wait * rng.uniform(1 - policy.jitter, 1 + policy.jitter)
        )
    # The window is kept for the record of why it opened; closing starts a fresh one.
    return msgspec.structs.replace(
        state,
        state=BreakerStatus.OPEN,
        opened_at=now,
        retry_at=now + wait,
        probes_in_flight=0,
        probe_started_at=None,
        open_count=count,
    )

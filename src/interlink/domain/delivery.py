"""The delivery state machine.

``pending → in_flight → succeeded | scheduled → (in_flight …) | dead``; a dead or succeeded
delivery may be sent again by an operator (``retry``), which makes it ``pending`` again.
"""

from __future__ import annotations

import enum

import msgspec

from interlink.domain.retry import RetryPolicy


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    SCHEDULED = "scheduled"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"  # never to be sent: its event was erased (domain/erasure.py)


class AttemptOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a response that is not 2xx
    ERROR = "error"  # no response: refused, reset, timed out, blocked address
    GONE = "gone"  # 410: the receiver asks us to stop, the endpoint is disabled


TRANSITIONS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.IN_FLIGHT, DeliveryStatus.CANCELLED}),
    DeliveryStatus.SCHEDULED: frozenset(
        {DeliveryStatus.IN_FLIGHT, DeliveryStatus.PENDING, DeliveryStatus.CANCELLED}
    ),
    DeliveryStatus.IN_FLIGHT: frozenset(
        {
            DeliveryStatus.SUCCEEDED,
            DeliveryStatus.SCHEDULED,
            DeliveryStatus.DEAD,
            DeliveryStatus.PENDING,  # lease lost (crash): sent again under the same webhook-id
        }
    ),
    DeliveryStatus.SUCCEEDED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.DEAD: frozenset({DeliveryStatus.PENDING, DeliveryStatus.CANCELLED}),
    DeliveryStatus.CANCELLED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(current: DeliveryStatus, new: DeliveryStatus) -> DeliveryStatus:
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"a delivery cannot go from {current} to {new}")
    return new


def classify_status(status_code: int) -> AttemptOutcome:
    """2xx succeeds; 410 disables; everything else, 3xx included (never followed), fails."""
    if 200 <= status_code < 300:
        return AttemptOutcome.SUCCEEDED
    if status_code == 410:
        return AttemptOutcome.GONE
    return AttemptOutcome.FAILED


class AttemptResult(msgspec.Struct, frozen=True):
    """What one try of sending a delivery came to."""

    outcome: AttemptOutcome
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_excerpt: str | None = None
    retry_after: float | None = None


class Decision(msgspec.Struct, frozen=True):
    status: DeliveryStatus
    attempt_count: int
    next_attempt_in: float | None  # seconds from now, for SCHEDULED
    disable_endpoint: bool = False


def decide(attempts_before: int, result: AttemptResult, policy: RetryPolicy) -> Decision:
    """The delivery's next state after an attempt: the whole retry rule in one place."""
    count = attempts_before + 1
    if result.outcome is AttemptOutcome.SUCCEEDED:
        return Decision(DeliveryStatus.SUCCEEDED, count, None)
    if result.outcome is AttemptOutcome.GONE:
        # The delivery is kept (dead, redrivable); the endpoint stops receiving.
        return Decision(DeliveryStatus.DEAD, count, None, disable_endpoint=True)
    delay = policy.next_delay(count, result.retry_after)
    if delay is None:
        return Decision(DeliveryStatus.DEAD, count, None)
    return Decision(DeliveryStatus.SCHEDULED, count, delay)

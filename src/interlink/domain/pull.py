"""Pull endpoints: deliveries that consumers claim instead of receiving them pushed.

A claim is the dispatcher's claim (a lease, the lane's admission, an ordered key's head only);
an ack or a nack is an attempt's outcome settled through the same path as a push attempt's, so
retries, dead letters, redrive and replay need nothing of their own. What is particular to pull
is the proof of the lease: a consumer may answer after its lease lapsed and another consumer
claimed the delivery again, and that answer must settle nothing.
"""

from __future__ import annotations

import msgspec

from interlink.domain.delivery import AttemptOutcome, AttemptResult, Decision, decide
from interlink.domain.retry import RetryPolicy

MAX_CLAIM = 100
MAX_LEASE_SECONDS = 600.0
DEFAULT_LEASE_SECONDS = 30.0
MAX_WAIT_SECONDS = 30.0

_PREFIX = "lse_"


def lease_id(lease_until: float) -> str:
    """The proof of a lease handed to its consumer: the lease's expiry as stored, which the
    settlement compares and sets (a claim after a lapse stores a later one). Exact: a float's
    hex form round-trips."""
    return _PREFIX + lease_until.hex()


def lease_of(token: str) -> float | None:
    """The lease expiry a token names, or None for a token no claim handed out."""
    if not token.startswith(_PREFIX):
        return None
    try:
        return float.fromhex(token[len(_PREFIX) :])
    except ValueError:
        return None


class Answer(msgspec.Struct, frozen=True):
    """A consumer's answer to a claimed delivery: handled (ack), or failed (nack)."""

    handled: bool
    error: str | None = None
    retry_after: float | None = None  # seconds; none: the endpoint's retry schedule


def attempt_of(answer: Answer, latency_ms: float) -> AttemptResult:
    """The answer as an attempt's result, as a push receiver's 2xx or failure would be."""
    if answer.handled:
        return AttemptResult(AttemptOutcome.SUCCEEDED, None, latency_ms)
    return AttemptResult(
        AttemptOutcome.FAILED,
        None,
        latency_ms,
        error=answer.error or "nacked by the consumer",
        retry_after=answer.retry_after,
    )


def settle_answer(
    attempts_before: int, answer: Answer, latency_ms: float, policy: RetryPolicy
) -> tuple[AttemptResult, Decision]:
    """The attempt and the delivery's next state: the push path's rule (domain.delivery.decide),
    so a nack after the last attempt is dead like a failed push."""
    result = attempt_of(answer, latency_ms)
    return result, decide(attempts_before, result, policy)

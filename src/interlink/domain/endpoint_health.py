"""When an endpoint is disabled automatically.

An endpoint that has failed without a single success for ``disable_after_seconds`` (5 days by
default: longer than the whole default retry schedule, so it has had every chance) is disabled,
and so is one that answers ``410 Gone`` (``AttemptOutcome.GONE``), which is the receiver asking
us to stop. The failing streak is one timestamp — when its first failure happened — reset by
any success; it lives on the endpoint's row.
"""

from __future__ import annotations

import enum

import msgspec

from interlink.domain.delivery import AttemptOutcome

DEFAULT_DISABLE_AFTER_SECONDS = 5 * 24 * 3600.0


class DisableReason(enum.StrEnum):
    GONE = "gone"  # the receiver answered 410 Gone
    FAILING = "failing"  # no success for disable_after_seconds


class HealthPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    disable_after_seconds: float = DEFAULT_DISABLE_AFTER_SECONDS

    def __post_init__(self) -> None:
        if not self.disable_after_seconds > 0:
            raise ValueError("disable_after_seconds must be positive")


class HealthVerdict(msgspec.Struct, frozen=True):
    failing_since: float | None  # the streak to store: None after a success
    disable: DisableReason | None


def failing_too_long(failing_since: float | None, policy: HealthPolicy, now: float) -> bool:
    """Has the failing streak lasted long enough to disable the endpoint?

    On its own for a periodic sweep: an endpoint whose deliveries are all held back (an open
    breaker, a blocked key) makes no attempts, yet its streak keeps ageing.
    """
    return failing_since is not None and now - failing_since >= policy.disable_after_seconds


def after_attempt(
    failing_since: float | None,
    outcome: AttemptOutcome,
    now: float,
    policy: HealthPolicy | None = None,
) -> HealthVerdict:
    """The streak after an attempt, and whether the endpoint is to be disabled now."""
    policy = policy or HealthPolicy()
    if outcome is AttemptOutcome.SUCCEEDED:
        return HealthVerdict(None, None)
    streak = now if failing_since is None else failing_since
    if outcome is AttemptOutcome.GONE:
        return HealthVerdict(streak, DisableReason.GONE)
    if failing_too_long(streak, policy, now):
        return HealthVerdict(streak, DisableReason.FAILING)
    return HealthVerdict(streak, None)

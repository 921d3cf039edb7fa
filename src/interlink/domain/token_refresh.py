"""When a connection's access token is refreshed, and what the connection's status is.

A token is refreshed proactively once ``refresh_fraction`` of its lifetime has passed (0.8: a
one-hour token at 48 minutes), so a caller is never handed one that runs out mid-request and a
refresh that fails still leaves the old token working while it is retried. A failed refresh is
retried with backoff; the connection is ``failed`` until one succeeds. Time is always passed in.
"""

from __future__ import annotations

import enum
import random

import msgspec

from interlink.domain.retry import RetryPolicy

# Backoff between refresh attempts after failures; the last entry repeats for as long as the
# failures last (a connection is never given up on: its partner may come back).
REFRESH_RETRY = RetryPolicy(schedule=(1.0, 2.0, 5.0, 15.0, 60.0, 300.0), jitter=0.2)


class ConnectionFlow(enum.StrEnum):
    CLIENT_CREDENTIALS = "client_credentials"
    AUTHORIZATION_CODE = "authorization_code"


class ConnectionStatus(enum.StrEnum):
    HEALTHY = "healthy"  # a valid token, not yet due for refresh
    EXPIRING = "expiring"  # due for refresh (or without a token) and not failed yet
    FAILED = "failed"  # the latest refresh failed; retried with backoff


class RefreshPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    refresh_fraction: float = 0.8
    retry: RetryPolicy = REFRESH_RETRY
    # How long one process may hold a connection's refresh before another may take it over.
    lease_seconds: float = 30.0
    # The lifetime assumed when a token endpoint does not say (no ``expires_in``).
    default_lifetime_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.refresh_fraction <= 1:
            raise ValueError("refresh_fraction must be in (0, 1]")
        if not self.lease_seconds >= 5:
            # A token request is bounded by the lease less a margin for writing its outcome.
            raise ValueError("lease_seconds must be at least 5")
        if not self.default_lifetime_seconds > 0:
            raise ValueError("default_lifetime_seconds must be positive")


def expires_at(issued_at: float, expires_in: float | None, policy: RefreshPolicy) -> float:
    lifetime = policy.default_lifetime_seconds if expires_in is None else max(0.0, expires_in)
    return issued_at + lifetime


def refresh_due_at(issued_at: float, expires_at: float, policy: RefreshPolicy) -> float:
    """When a token issued at ``issued_at`` and expiring at ``expires_at`` should be replaced."""
    lifetime = max(0.0, expires_at - issued_at)
    return issued_at + policy.refresh_fraction * lifetime


def is_usable(expires_at: float | None, now: float) -> bool:
    """May a token with this expiry be handed to a caller now? (None: there is no token.)"""
    return expires_at is not None and now < expires_at


def is_fresh(refresh_due_at: float | None, expires_at: float | None, now: float) -> bool:
    """Usable and not yet due for refresh: nothing to do."""
    return is_usable(expires_at, now) and refresh_due_at is not None and now < refresh_due_at


def status(
    *, failing: bool, refresh_due_at: float | None, expires_at: float | None, now: float
) -> ConnectionStatus:
    if failing:
        return ConnectionStatus.FAILED
    if is_fresh(refresh_due_at, expires_at, now):
        return ConnectionStatus.HEALTHY
    return ConnectionStatus.EXPIRING


def retry_delay(failures: int, policy: RefreshPolicy, rng: random.Random | None = None) -> float:
    """Seconds until the next refresh attempt after ``failures`` failures in a row (1 or more)."""
    if failures < 1:
        raise ValueError("a retry follows at least one failure")
    step = min(failures - 1, policy.retry.max_attempts - 1)
    delay = policy.retry.next_delay(step, rng=rng)
    assert delay is not None  # step is always within the schedule
    return delay

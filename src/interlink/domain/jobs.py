"""Bulk operations as tracked jobs: what they act on, their states, and how they are paced.

A job works through its items in batches, in id order, from a cursor it keeps; each batch is
paced by a token bucket (``domain/rate_limit.py``) whose burst is one batch, so over any window
of ``w`` seconds a job moves at most ``rate * w + batch`` items.
"""

from __future__ import annotations

import enum
import math

import msgspec

from interlink.domain.rate_limit import RateLimit, TokenBucket

# A job takes about this many steps a second: small batches keep the pace smooth, and each step
# is one transaction, so not so small that the steps cost more than the items.
STEPS_PER_SECOND = 10
MAX_BATCH = 500
MAX_EVENT_IDS = 1000


class JobKind(enum.StrEnum):
    REDRIVE = "redrive"  # dead deliveries matching a filter: back to pending, in place
    REPLAY = "replay"  # events matching a filter (or listed by id): sent again to one endpoint
    ERASURE = "erasure"  # events holding a subject's value: redacted (domain/erasure.py)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class InvalidFilter(ValueError):
    pass


def _check_range(after: float | None, before: float | None) -> None:
    if after is not None and before is not None and after >= before:
        raise InvalidFilter("'after' must be earlier than 'before'")


class RedriveFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Dead deliveries: of one endpoint, of one event type, created in a time range."""

    endpoint_id: str | None = None
    type: str | None = None
    created_after: float | None = None
    created_before: float | None = None

    def __post_init__(self) -> None:
        _check_range(self.created_after, self.created_before)


class ReplayFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Events listed by id, or those of a type, from a source, received in a time range."""

    event_ids: tuple[str, ...] = ()
    type: str | None = None
    source_id: str | None = None
    received_after: float | None = None
    received_before: float | None = None

    def __post_init__(self) -> None:
        _check_range(self.received_after, self.received_before)
        if len(self.event_ids) > MAX_EVENT_IDS:
            raise InvalidFilter(f"at most {MAX_EVENT_IDS} event ids per job")
        narrowed = (self.type, self.source_id, self.received_after, self.received_before)
        if self.event_ids and any(v is not None for v in narrowed):
            raise InvalidFilter("list event ids, or filter by type, source and time: not both")


class ErasureFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Events whose data holds a subject's value at ``path`` (its digest: domain/erasure.py),
    optionally from one source, received in a time range; who asked for it."""

    path: tuple[str, ...]
    value_digest: str
    source_id: str | None = None
    received_after: float | None = None
    received_before: float | None = None
    requested_by: str | None = None  # the API key's id; None: the admin

    def __post_init__(self) -> None:
        _check_range(self.received_after, self.received_before)


JobFilter = RedriveFilter | ReplayFilter | ErasureFilter


class Job(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    kind: JobKind
    status: JobStatus
    filter: JobFilter
    endpoint_id: str | None  # the one endpoint a replay sends to
    rate: float  # items per second, at most
    total: int | None  # counted when the job starts
    done: int  # items worked through, ``skipped`` among them
    skipped: int  # items left alone: being sent right now, or no longer dead
    cursor: str | None  # the last item id worked through: a restarted job resumes after it
    cursor_end: str | None  # the last item id the job will take (fixed when it starts)
    bucket: TokenBucket | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    last_error: str | None


def pacing(rate: float) -> RateLimit:
    """The bucket that paces a job: ``rate`` items a second, in bursts of at most one batch."""
    return RateLimit(rate=rate, per="second", burst=batch_size(rate))


def batch_size(rate: float) -> int:
    return max(1, min(MAX_BATCH, math.ceil(rate / STEPS_PER_SECOND)))


def give_back(bucket: TokenBucket, limit: RateLimit, n: int) -> TokenBucket:
    """Returns tokens taken for a batch but not used (a batch that found fewer items)."""
    if n <= 0:
        return bucket
    return TokenBucket(min(limit.capacity, bucket.tokens + n), bucket.updated_at)


def eta_seconds(job: Job, now: float) -> float | None:
    """Seconds until the job is through, at the pace it has kept (or its rate, before any)."""
    if job.status in FINISHED or job.total is None:
        return None
    remaining = max(0, job.total - job.done)
    if remaining == 0:
        return 0.0
    pace = job.rate
    if job.started_at is not None and job.done > 0 and now > job.started_at:
        pace = min(job.rate, job.done / (now - job.started_at))
    return remaining / pace

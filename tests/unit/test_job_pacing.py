"""Jobs' pacing rule (token bucket, one batch of burst), their filters and their ETA."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.domain.jobs import (
    MAX_BATCH,
    MAX_EVENT_IDS,
    InvalidFilter,
    Job,
    JobKind,
    JobStatus,
    RedriveFilter,
    ReplayFilter,
    batch_size,
    eta_seconds,
    give_back,
    pacing,
)
from interlink.domain.rate_limit import TokenBucket, full_bucket, take

T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("rate", "batch"), [(1, 1), (5, 1), (50, 5), (2000, 200), (2001, 201), (10**6, MAX_BATCH)]
)
def test_a_batch_is_about_a_tenth_of_a_second_of_the_rate(rate: float, batch: int) -> None:
    assert batch_size(rate) == batch
    assert pacing(rate).capacity == batch  # the burst is one batch
    assert pacing(rate).per_second == rate


def run(rate: float, found: list[int], delays: list[float]) -> list[tuple[float, float, int]]:
    """The job runner's loop on a clock of its own: wait for a batch of tokens, take up to a
    batch of items (``found`` says how many there were), give back what was not used. Each
    step lands ``delay`` after its tokens were taken (a busy event loop, a slow commit).
    Returns (tokens taken at, step landed at, items moved) per step."""
    limit, batch = pacing(rate), batch_size(rate)
    now, bucket = T0, full_bucket(pacing(rate), T0)
    moved: list[tuple[float, float, int]] = []
    for n, delay in zip(found, delays, strict=True):
        while True:
            granted, bucket, wait = take(bucket, limit, now, batch)
            if granted:
                break
            now += wait
        taken_at = now
        now += delay
        moved.append((taken_at, now, min(n, batch)))
        bucket = give_back(bucket, limit, batch - min(n, batch))
    return moved


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=1, max_value=5000),
    steps=st.lists(
        st.tuples(st.integers(0, 600), st.floats(min_value=0, max_value=0.3)),
        min_size=1,
        max_size=80,
    ),
)
def test_no_window_moves_more_than_the_rate_plus_one_batch(
    rate: float, steps: list[tuple[int, float]]
) -> None:
    batch = batch_size(rate)
    late = max(d for _, d in steps)
    moved = run(rate, [n for n, _ in steps], [d for _, d in steps])
    slack = 1e-5 * rate  # a few ulps of a clock at 1.7e9 s
    for i in range(len(moved)):
        total = 0
        for j in range(i, len(moved)):
            total += moved[j][2]
            taken = moved[j][0] - moved[i][0]
            assert total <= rate * taken + batch + slack, (i, j, total, taken)
            # Seen where the steps land, a late one can crowd the next: by its lateness.
            landed = max(0.0, moved[j][1] - moved[i][1])
            assert total <= rate * (landed + late) + batch + slack, (i, j, total, landed)


def test_full_batches_run_at_the_rate() -> None:
    moved = run(2000, [10**6] * 100, [0.0] * 100)
    items = sum(n for _, _, n in moved)
    span = moved[-1][0] - moved[0][0]
    assert items == 100 * 200
    # The first batch is the burst; the other 99 take 99 batches' time at 2,000/s.
    assert span == pytest.approx(99 * 200 / 2000)


def test_late_steps_slow_a_job_but_never_speed_it_up() -> None:
    on_time = run(500, [10**6] * 50, [0.0] * 50)
    late = run(500, [10**6] * 50, [0.05] * 50)
    assert late[-1][1] > on_time[-1][1]


def test_unused_tokens_come_back_but_never_beyond_the_burst() -> None:
    limit = pacing(100)
    bucket = TokenBucket(3.0, T0)
    assert give_back(bucket, limit, 0) == bucket
    assert give_back(bucket, limit, 4).tokens == 7.0
    assert give_back(bucket, limit, 1000).tokens == limit.capacity
    assert give_back(bucket, limit, 4).updated_at == T0


def test_filters_refuse_what_cannot_be_meant() -> None:
    with pytest.raises(InvalidFilter, match="earlier"):
        RedriveFilter(created_after=T0, created_before=T0)
    with pytest.raises(InvalidFilter, match="earlier"):
        ReplayFilter(received_after=T0 + 1, received_before=T0)
    with pytest.raises(InvalidFilter, match="not both"):
        ReplayFilter(event_ids=("evt_1",), type="booking.created")
    with pytest.raises(InvalidFilter, match="at most"):
        ReplayFilter(event_ids=tuple(f"evt_{i}" for i in range(MAX_EVENT_IDS + 1)))
    assert ReplayFilter(event_ids=("evt_1",)).event_ids == ("evt_1",)
    assert RedriveFilter(created_after=T0).created_after == T0


def job(status: JobStatus, total: int | None, done: int, started: float | None) -> Job:
    return Job(
        id="job_1",
        tenant_id="tnt_1",
        kind=JobKind.REDRIVE,
        status=status,
        filter=RedriveFilter(),
        endpoint_id=None,
        rate=100,
        total=total,
        done=done,
        skipped=0,
        cursor=None,
        cursor_end=None,
        bucket=None,
        created_at=T0,
        started_at=started,
        finished_at=None,
        last_error=None,
    )


def test_eta_follows_the_pace_kept_capped_by_the_rate() -> None:
    assert eta_seconds(job(JobStatus.QUEUED, None, 0, None), T0) is None
    assert eta_seconds(job(JobStatus.RUNNING, 1000, 0, T0), T0 + 1) == 10.0  # at its rate
    assert eta_seconds(job(JobStatus.RUNNING, 1000, 500, T0), T0 + 10) == 10.0  # at 50/s
    assert eta_seconds(job(JobStatus.RUNNING, 1000, 500, T0), T0 + 1) == 5.0  # never > rate
    assert eta_seconds(job(JobStatus.RUNNING, 10, 10, T0), T0 + 1) == 0.0
    for over in (JobStatus.SUCCEEDED, JobStatus.CANCELLED, JobStatus.FAILED):
        assert eta_seconds(job(over, 10, 5, T0), T0 + 1) is None

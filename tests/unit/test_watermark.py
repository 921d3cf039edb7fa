"""The ingest watermark's decision (domain/watermark.py): trips at its limits, clears only with
room to spare, and holds its verdict when a measure is missing."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.watermark import CLEAR_MARGIN, WatermarkPolicy, assess
from interlink.observability.metrics import rejection_reason

MB = 1024 * 1024
POLICY = WatermarkPolicy(min_free_bytes=100 * MB, max_backlog=1000)


def test_trips_at_each_limit_and_says_which() -> None:
    assert assess(POLICY, 200 * MB, 10) is None
    disk = assess(POLICY, 99 * MB, 10)
    assert disk is not None and disk.reason == "disk" and "ingest_min_free_mb" in disk.detail
    backlog = assess(POLICY, 200 * MB, 1000)
    assert backlog is not None and backlog.reason == "backlog" and "1000" in backlog.detail
    assert assess(WatermarkPolicy(), 0, 10**9) is None  # both off


def test_clears_only_with_room_to_spare() -> None:
    tripped = assess(POLICY, 99 * MB, 0)
    assert assess(POLICY, 105 * MB, 0, tripped) is not None  # over the limit, inside the margin
    assert assess(POLICY, 111 * MB, 0, tripped) is None
    full = assess(POLICY, None, 1000)
    assert assess(POLICY, None, 950, full) is not None
    assert assess(POLICY, None, 899, full) is None


def test_a_missing_measure_keeps_the_verdict() -> None:
    tripped = assess(POLICY, 1, None)
    assert assess(POLICY, None, None, tripped) == tripped
    assert assess(POLICY, None, None, None) is None


def test_the_rejection_reason_is_its_own() -> None:
    assert rejection_reason(503, "over-watermark") == "watermark"
    assert rejection_reason(503, "unavailable") == "unavailable"


@given(
    free=st.lists(st.integers(0, 300 * MB), min_size=1, max_size=30),
)
def test_hysteresis_never_flaps_inside_the_margin(free: list[int]) -> None:
    """Between the limit and the limit plus its margin, the verdict is what it was before."""
    verdict = None
    low, high = POLICY.min_free_bytes, POLICY.min_free_bytes * (1 + CLEAR_MARGIN)
    for f in free:
        before = verdict
        verdict = assess(POLICY, f, None, before)
        if f < low:
            assert verdict is not None
        elif f >= high:
            assert verdict is None
        else:
            assert (verdict is None) == (before is None)

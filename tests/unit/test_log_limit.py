"""The per-endpoint log limit: at most N lines per interval, then a count of what was held."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.observability.log_limit import LogLimiter, Verdict


def test_lines_beyond_the_limit_are_held_and_counted_on_the_next_window() -> None:
    limiter = LogLimiter(lines=3, interval=10.0)
    assert [limiter.check("ep", 0.0 + i).emit for i in range(5)] == [True] * 3 + [False] * 2
    assert limiter.check("ep", 9.9) == Verdict(False)
    assert limiter.check("ep", 10.0) == Verdict(True, suppressed=3)
    assert limiter.check("ep", 10.1) == Verdict(True, suppressed=0)


def test_keys_are_limited_independently() -> None:
    limiter = LogLimiter(lines=1, interval=60.0)
    assert limiter.check("dead", 0.0).emit and not limiter.check("dead", 1.0).emit
    assert limiter.check("healthy", 1.0).emit


def test_memory_is_bounded_by_max_keys() -> None:
    limiter = LogLimiter(lines=1, interval=60.0, max_keys=100)
    for i in range(1_000):
        limiter.check(f"ep{i}", float(i) / 1000)
    assert len(limiter._windows) <= 100


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        LogLimiter(lines=0)
    with pytest.raises(ValueError):
        LogLimiter(interval=0)


@given(
    lines=st.integers(1, 5),
    interval=st.floats(0.5, 10.0),
    gaps=st.lists(st.floats(0.0, 3.0), max_size=200),
)
def test_never_more_than_n_lines_per_window_and_every_line_is_accounted_for(
    lines: int, interval: float, gaps: list[float]
) -> None:
    limiter = LogLimiter(lines=lines, interval=interval)
    now, emitted, reported = 0.0, [], 0
    for gap in gaps:
        now += gap
        verdict = limiter.check("ep", now)
        reported += verdict.suppressed
        if verdict.emit:
            emitted.append(now)
    # Windows are fixed (each starts with its first line), so any span of `interval` seconds
    # overlaps at most two of them: at most 2 * lines lines, however the failures come.
    for i, start in enumerate(emitted):
        assert sum(1 for t in emitted[i:] if t - start < interval) <= 2 * lines
    window = limiter._windows.get("ep")
    pending = 0 if window is None else window.suppressed
    assert len(emitted) + reported + pending == len(gaps)

"""The partition layout's pure parts: bounds read back from the catalog, day names, the days
between two bounds, and the statements that split the future partition."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from interlink.storage import partitions

DAY = partitions.DAY
days = st.integers(min_value=0, max_value=40_000).map(lambda d: d * DAY)  # 1970 to 2079


def _render(bound: float) -> str:
    """As pg_get_expr renders a bound of a double precision column: quoted, or the limits."""
    return {-math.inf: "MINVALUE", math.inf: "MAXVALUE"}.get(bound, f"'{bound!r}'")


bounds = st.floats(-1e12, 1e12) | st.integers(-(10**12), 10**12).map(float)


@given(st.just(-math.inf) | bounds, st.just(math.inf) | bounds)
def test_bounds_read_back_as_written(lower: float, upper: float) -> None:
    text = f"FOR VALUES FROM ({_render(lower)}) TO ({_render(upper)})"
    assert partitions.parse_bound(text) == (lower, upper)
    integral = f"FOR VALUES FROM ('{int(lower)}') TO (MAXVALUE)" if math.isfinite(lower) else None
    if integral:  # PostgreSQL writes 1764720000, not 1764720000.0
        assert partitions.parse_bound(integral) == (float(int(lower)), math.inf)


def test_a_bound_that_is_no_range_is_refused() -> None:
    for text in ("DEFAULT", "FOR VALUES IN ('a')", ""):
        try:
            partitions.parse_bound(text)
        except ValueError:
            continue
        raise AssertionError(text)


@given(days, st.floats(0, DAY - 1e-3))
def test_a_time_falls_in_the_day_its_partition_is_named_after(day: float, into: float) -> None:
    assert partitions.day_start(day + into) == day
    assert partitions.day_name("events", day) == partitions.day_name("events", day + into)
    assert partitions.day_name("events", day) != partitions.day_name("events", day + DAY)


@given(days, st.integers(0, 60))
def test_the_days_between_two_bounds_tile_them(start: float, n: int) -> None:
    between = partitions.days_between(start, start + n * DAY)
    assert len(between) == n
    assert all(b - a == DAY for a, b in itertools.pairwise(between))
    assert not between or between[0] == start


def test_splitting_the_future_makes_each_day_and_moves_the_future_after_them() -> None:
    start = 20_000 * DAY
    statements = partitions.extend_statements("events", start, start + 3 * DAY)
    assert statements[0] == "ALTER TABLE events DETACH PARTITION events_future"
    made = [s for s in statements if s.startswith("CREATE TABLE")]
    assert len(made) == 3
    for day in range(3):  # each new day carries the tenant policy, not just one of them
        name = partitions.day_name("events", start + day * DAY)
        assert any(name in m for m in made)
        assert f'ALTER TABLE "{name}" ENABLE ROW LEVEL SECURITY' in statements
        assert f'ALTER TABLE "{name}" FORCE ROW LEVEL SECURITY' in statements
    assert statements[-1] == (
        f"ALTER TABLE events ATTACH PARTITION events_future FOR VALUES FROM ({start + 3 * DAY!r})"
        " TO (MAXVALUE)"
    )

"""Hostile filters (issue 16, acceptance 3): refused at save, or stopped by the cost bound before
they run; routing of the event to other subscriptions, and of other events, goes on."""

from __future__ import annotations

import contextlib
import re
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.domain.filters import (
    FilterError,
    Outcome,
    activation,
    compile_filter,
    evaluate,
    event_shape,
)
from interlink.domain.models import Subscription
from interlink.routing.filtering import INVALID, FilterCache, routes_of, targets
from interlink.storage.ports import EventContent, LogEntry

REFUSED = {
    "(" * 33 + "1" + ")" * 33: "nests deeper than 32",
    "data.l.exists(x, data.m.all(y, y == x))": "inside another",
    "data.l.map(x, x).size() > 0": "map() or filter()",
    " + ".join(['"aaaaaaaa"'] * 18) + ' == ""': "17 '+' operators",
    "x" * 2049: "limit is 2048",
    "data.a.exists(x, x) && data.b.exists(x, x) && data.c.exists(x, x) && "
    "data.d.exists(x, x) && data.e.exists(x, x)": "5 comprehensions",
    "data.s.lowerAscii()": "unknown function",
    "amount > 1": "unknown variable 'amount'",
}


@pytest.mark.parametrize("text", list(REFUSED))
def test_hostile_filters_are_refused_at_save(text: str) -> None:
    with pytest.raises(FilterError, match=re.escape(REFUSED[text])):
        compile_filter(text, {})


def test_a_string_literal_hides_nothing_and_counts_for_nothing() -> None:
    compiled = compile_filter('data.s == "((((segment(\\"x\\")))))" && data.t == \'map(\'', {})
    assert compiled.shape.depth == 0 and not compiled.shape.segments


def test_regex_blow_up_is_linear() -> None:
    """The engine's regular expressions are the Rust regex crate's: no backtracking."""
    compiled = compile_filter('data.s.matches("(a+)+$") || data.s.matches("(a|aa)+$")', {})
    started = time.perf_counter()
    assert evaluate(compiled, activation({"data": {"s": "a" * 100_000 + "!"}})) is Outcome.NO_MATCH
    assert time.perf_counter() - started < 2.0  # microseconds in practice: a wide margin


def test_a_filter_over_its_cost_bound_is_not_run() -> None:
    compiled = compile_filter("data.l.exists(x, (data.s + data.s + data.s).contains(x))", {})
    data = {"l": ["b"] * 100_000, "s": "a" * 10_000}
    assert evaluate(compiled, activation({"data": data}), event_shape(data)) is Outcome.COST


def _sub(n: int, filter: str | None) -> Subscription:
    return Subscription(f"sub_{n}", "tnt_1", f"ep_{n}", ("*",), 0.0, filter=filter)


def test_routing_goes_on_past_errors_cost_and_invalid_filters() -> None:
    cache = FilterCache()
    subs = [
        _sub(1, "data.missing.deeper == 1"),  # an evaluation error
        _sub(2, "data.l.exists(x, (data.s + data.s).contains(x))"),  # over its cost bound
        _sub(3, 'segment("gone")'),  # stored, but its segment no longer exists
        _sub(4, "data.n > 1"),
        _sub(5, None),
    ]
    routes = routes_of(subs, {}, cache)
    counted: dict[str, int] = {}
    data = {"l": ["b"] * 100_000, "s": "a" * 10_000, "n": 2}
    content = EventContent("src_1", msgspec.json.encode(data), {}, None)
    entry = LogEntry(1, "evt_1", "tnt_1", "booking.created")
    got = targets(entry, routes, content, counted)
    assert got == [("ep_4", "sub_4"), ("ep_5", "sub_5")]
    assert counted == {"error": 1, "cost_exceeded": 1, INVALID: 1, "match": 1}
    small = EventContent("src_1", b'{"n": 0}', {}, None)
    assert targets(LogEntry(2, "evt_2", "tnt_1", "x"), routes, small, counted) == [
        ("ep_5", "sub_5")
    ]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_compiles_or_is_a_filter_error(text: str) -> None:
    """Never another exception (the API would answer 500): found by schemathesis (ß)."""
    with contextlib.suppress(FilterError):
        compile_filter(text, {"a": "true"})

"""The filter engine against a reference evaluator written here in Python, over generated events
and expressions of the supported subset (issue 16, acceptance 1): 0 differences.

The subset: fields of ``data`` (ints, strings, missing), comparisons with literals, ``in`` a
list, ``startsWith``, ``has()``, ``!``, ``&&``, ``||`` and the event's ``type``. The reference
follows CEL's semantics for it: a missing field or an ordering across types is an error; ``==``
across types is false; ``&&``/``||`` absorb an error when the other side decides (commutative);
``!`` of an error is an error. An error is no match (filters.Outcome.ERROR).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.domain.filters import Outcome, activation, compile_filter, evaluate
from interlink.domain.models import Subscription
from interlink.routing.filtering import FilterCache, routes_of, targets
from interlink.storage.ports import EventContent, LogEntry

FIELDS = ["a", "b", "c"]
ERR = object()  # the reference's error value


@dataclass(frozen=True)
class Expr:
    text: str
    ref: Any  # event -> True | False | ERR


def _field(name: str) -> Any:
    def get(event: dict[str, Any]) -> Any:
        return event["data"].get(name, ERR)

    return get


ints = st.integers(-5, 5)
strs = st.sampled_from(["", "x", "xy", "y", "EUR"])
literals = st.one_of(ints, strs)


def _compare(op: str, left: Any, right: Any) -> Any:
    if left is ERR:
        return ERR
    if op == "==":
        return type(left) is type(right) and left == right
    if op == "!=":
        return not (type(left) is type(right) and left == right)
    if type(left) is not type(right):
        return ERR
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


@st.composite
def comparisons(draw: st.DrawFn) -> Expr:
    name = draw(st.sampled_from(FIELDS))
    op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
    lit = draw(literals)
    get = _field(name)
    return Expr(f"data.{name} {op} {json.dumps(lit)}", lambda e: _compare(op, get(e), lit))


@st.composite
def atoms(draw: st.DrawFn) -> Expr:
    kind = draw(st.sampled_from(["cmp", "in", "starts", "has", "type"]))
    name = draw(st.sampled_from(FIELDS))
    get = _field(name)
    if kind == "in":
        items = draw(st.lists(literals, max_size=3))

        def member(e: dict[str, Any]) -> Any:
            v = get(e)
            return ERR if v is ERR else any(type(v) is type(i) and v == i for i in items)

        return Expr(f"data.{name} in {json.dumps(items)}", member)
    if kind == "starts":
        prefix = draw(strs)

        def starts(e: dict[str, Any]) -> Any:
            v = get(e)
            return v.startswith(prefix) if isinstance(v, str) else ERR

        return Expr(f"data.{name}.startsWith({json.dumps(prefix)})", starts)
    if kind == "has":
        return Expr(f"has(data.{name})", lambda e: name in e["data"])
    if kind == "type":
        t = draw(st.sampled_from(["a.b", "a.c"]))
        return Expr(f'type == "{t}"', lambda e: e["type"] == t)
    return draw(comparisons())


def _and(x: Any, y: Any) -> Any:
    if x is False or y is False:
        return False
    return ERR if x is ERR or y is ERR else True


def _or(x: Any, y: Any) -> Any:
    if x is True or y is True:
        return True
    return ERR if x is ERR or y is ERR else False


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    def negate(x: Expr) -> Expr:
        return Expr(f"!({x.text})", lambda e: ERR if (v := x.ref(e)) is ERR else not v)

    def both(pair: tuple[Expr, Expr], op: str) -> Expr:
        x, y = pair
        fn = _and if op == "&&" else _or
        return Expr(f"({x.text}) {op} ({y.text})", lambda e: fn(x.ref(e), y.ref(e)))

    pairs = st.tuples(children, children)
    return st.one_of(
        children.map(negate),
        pairs.map(lambda p: both(p, "&&")),
        pairs.map(lambda p: both(p, "||")),
    )


expressions = st.recursive(atoms(), _extend, max_leaves=8)
events = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["a.b", "a.c"]),
        "data": st.dictionaries(st.sampled_from(FIELDS), literals, max_size=3),
    }
)


def _expected(value: Any) -> Outcome:
    if value is ERR:
        return Outcome.ERROR
    return Outcome.MATCH if value else Outcome.NO_MATCH


@settings(max_examples=400, deadline=None)
@given(expressions, st.lists(events, min_size=1, max_size=10))
def test_engine_agrees_with_reference(expr: Expr, batch: list[dict[str, Any]]) -> None:
    compiled = compile_filter(expr.text, {})
    for event in batch:
        got = evaluate(compiled, activation(event))
        assert got == _expected(expr.ref(event)), (expr.text, event)


@settings(max_examples=200, deadline=None)
@given(expressions, st.lists(events, min_size=1, max_size=10))
def test_routing_with_pruned_data_agrees_with_reference(
    expr: Expr, batch: list[dict[str, Any]]
) -> None:
    """Routing converts only the fields of ``data`` filters name (routing/filtering.py): the
    same answers, with unrelated fields in the event to prune."""
    sub = Subscription("sub_1", "tnt_1", "ep_1", ("*",), 0.0, filter=expr.text)
    routes = routes_of([sub], {}, FilterCache())
    for n, event in enumerate(batch):
        data = {**event["data"], "unrelated": {"x": [1, 2]}}
        content = EventContent("src_1", json.dumps(data).encode(), {}, None)
        entry = LogEntry(n, f"evt_{n}", "tnt_1", event["type"])
        routed = targets(entry, routes, content, {}) == [("ep_1", "sub_1")]
        assert routed == (_expected(expr.ref(event)) is Outcome.MATCH), (expr.text, event)

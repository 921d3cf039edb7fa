"""Content filters: CEL expressions over an event, compiled once and evaluated per event (pure).

The engine is ``common-expression-language`` (Rust ``cel`` crate bindings). Measured against
``cel-python`` on the same workload (compile once, evaluate 5,000 events by 5 filters, 2 shared
cores): 24.7 µs against 276.6 µs an evaluation, both 0 differences from a Python reference;
with one ``cel.Context`` per event shared by 20 filters, 1.8 µs an evaluation.

CEL is not Turing-complete: no loops but comprehensions over collections that already exist,
no recursion. What can still cost is bounded here, because the library has no cost limit:
- at save: the text's size (MAX_CHARS, and MAX_EXPANDED_CHARS with its segments in),
  bracket nesting (MAX_DEPTH), no comprehension inside another and at most MAX_MACROS, no
  ``map()``/``filter()`` (they build lists in quadratic time in this engine), at most
  MAX_PLUS ``+`` (concatenation grows strings quadratically along a chain), variables and
  functions from known sets only. Regular expressions are the Rust ``regex`` crate's: linear
  time, no backtracking, so ``(a+)+$`` costs what ``a+$`` does.
- per event: a filter with a comprehension, ``+`` or a string function has its cost bounded
  from the event's shape before it runs (``cost_bound``); over COST_LIMIT it is not run and
  counts as an error (no match). Everything else costs at most its length times the event's.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import cel
import msgspec

from interlink.domain.filter_text import SEGMENT_NAME, Shape, expand, line_col, scan

MAX_CHARS = 2048
MAX_EXPANDED_CHARS = 8192
MAX_DEPTH = 32
MAX_MACROS = 4
MAX_PLUS = 16
COST_LIMIT = 50_000_000  # operand bytes touched, as cost_bound counts them
MAX_DATA_BYTES = 16 * 1024 * 1024  # above any event's cap

VARIABLES = frozenset({"type", "source", "key", "data", "headers", "occurred_at"})
FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double",
        "string", "bytes", "bool", "dyn", "type", "timestamp", "duration", "getFullYear",
        "getMonth", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getHours",
        "getMinutes", "getSeconds", "getMilliseconds", "max", "min",
    }
)  # fmt: skip
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*?)(?:\n|$)")


class FilterError(ValueError):
    """A filter (or segment) refused at save: what is wrong and where (1-based line, column)."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"{message}{where}")
        self.line = line
        self.column = column


class Outcome(enum.StrEnum):
    MATCH = "match"
    NO_MATCH = "no_match"
    ERROR = "error"  # evaluation failed (a missing field, a type mismatch): no match
    COST = "cost_exceeded"  # the event's shape would make it cost over COST_LIMIT: not run


class Compiled(msgspec.Struct, frozen=True):
    source: str  # with segments expanded
    program: Any  # cel.Program
    shape: Shape
    # Whether its cost depends on the event's shape (a comprehension, '+', a string function):
    # then it is bounded before each run.
    shaped: bool = False
    names: frozenset[str] = VARIABLES  # the event's variables it reads
    # The largest event data (bytes of JSON) on which it is within COST_LIMIT whatever the
    # data's shape: below it, routing skips walking the event (``within_bound``).
    safe_bytes: int = 0


def _compiled(source: str, program: Any, shape: Shape) -> Compiled:
    shaped = bool(shape.macros or shape.plus or shape.string_calls)
    names = frozenset(program.variables()) & VARIABLES
    compiled = Compiled(source, program, shape, shaped, names)
    lo, hi = 0, MAX_DATA_BYTES  # the bound grows with the size: bisect for the largest safe
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost_bound(compiled, (mid // 2, mid)) <= COST_LIMIT else (lo, mid - 1)
    return msgspec.structs.replace(compiled, safe_bytes=lo)


def _at(text: str, offset: int) -> tuple[int, int]:
    return line_col(text, offset)


def _parse(text: str) -> Any:
    try:
        return cel.compile(text)
    except (ValueError, RuntimeError) as exc:
        found = _POSITION.search(str(exc))
        if found is None:
            raise FilterError(f"does not compile: {str(exc)[:200]}") from None
        line, column, why = int(found.group(1)), int(found.group(2)), found.group(3)
        raise FilterError(f"syntax error: {why[:200]}", line, column) from None


def check_text(text: str, *, allow_segments: bool = True) -> Shape:
    """The rules on the text as written (positions are in it); returns its shape."""
    if not text.strip():
        raise FilterError("is empty")
    if len(text) > MAX_CHARS:
        raise FilterError(f"is {len(text)} characters long; the limit is {MAX_CHARS}")
    shape = scan(text)
    if shape.depth > MAX_DEPTH:
        raise FilterError(
            f"nests deeper than {MAX_DEPTH} brackets", *_at(text, shape.depth_at[MAX_DEPTH])
        )
    program = _parse(text)
    if shape.nested_macro_at is not None:
        raise FilterError(
            "has a comprehension inside another (its cost would multiply)",
            *_at(text, shape.nested_macro_at),
        )
    if shape.builder_at is not None:
        raise FilterError(
            "uses map() or filter(), which build lists at a cost quadratic in the list's length "
            "in this engine (4,000 items: 1.4 s); use exists(), all() or exists_one()",
            *_at(text, shape.builder_at),
        )
    if shape.macros > MAX_MACROS:
        raise FilterError(f"has {shape.macros} comprehensions; the limit is {MAX_MACROS}")
    if shape.plus > MAX_PLUS:
        raise FilterError(f"has {shape.plus} '+' operators; the limit is {MAX_PLUS}")
    for ref in shape.segments:
        if not allow_segments:
            raise FilterError("a segment cannot refer to another segment", *_at(text, ref.start))
        if not SEGMENT_NAME.match(ref.name):
            raise FilterError(f"'{ref.name}' is not a segment name", *_at(text, ref.start))
    unknown_vars = set(program.variables()) - VARIABLES - shape.bound
    if unknown_vars:
        name = sorted(unknown_vars)[0]
        raise FilterError(
            f"unknown variable '{name}' (an event has {', '.join(sorted(VARIABLES))})",
            *_at(text, _find_word(text, name)),
        )
    named = {f for f in program.functions() if f[0] not in "_@!"} - {"segment"}
    unknown = named - FUNCTIONS
    if unknown:
        name = sorted(unknown)[0]
        raise FilterError(f"unknown function '{name}'", *_at(text, _find_word(text, name)))
    return shape


def _find_word(text: str, word: str) -> int:
    m = re.search(rf"\b{re.escape(word)}\b", text)
    return 0 if m is None else m.start()


def segment_names(text: str) -> list[str]:
    return sorted({ref.name for ref in scan(text).segments})


def compile_filter(text: str, segments: Mapping[str, str]) -> Compiled:
    """A filter as saved: checked as written, then compiled with its segments expanded.
    Unknown segments are refused (FilterError) like any other mistake."""
    shape = check_text(text)
    for ref in shape.segments:
        if ref.name not in segments:
            raise FilterError(f"unknown segment '{ref.name}'", *_at(text, ref.start))
    if not shape.segments:
        return _compiled(text, _parse(text), shape)
    full = expand(text, shape.segments, dict(segments))
    if len(full) > MAX_EXPANDED_CHARS:
        raise FilterError(
            f"is {len(full)} characters with its segments; the limit is {MAX_EXPANDED_CHARS}"
        )
    try:
        full_shape = check_text_expanded(full)
    except FilterError as exc:
        raise FilterError(f"with its segments expanded, {exc}") from None
    return _compiled(full, _parse(full), full_shape)


def check_text_expanded(full: str) -> Shape:
    shape = scan(full)
    if shape.depth > MAX_DEPTH:
        raise FilterError(f"nests deeper than {MAX_DEPTH} brackets")
    if shape.nested_macro_at is not None or shape.builder_at is not None:
        raise FilterError("has a comprehension inside another, or map() or filter()")
    if shape.macros > MAX_MACROS or shape.plus > MAX_PLUS:
        raise FilterError(f"has over {MAX_MACROS} comprehensions or {MAX_PLUS} '+' operators")
    return shape


def activation(event: Mapping[str, object]) -> Any:
    """One event's variables, converted once for every filter evaluated on it."""
    return cel.Context(variables=dict(event))


def event_shape(value: object) -> tuple[int, int]:
    """The largest collection's length and the longest string's, anywhere in ``value``."""
    items = longest = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            longest = max(longest, len(v))
        elif isinstance(v, dict):
            items = max(items, len(v))
            stack.extend(v.values())
            stack.extend(v.keys())
        elif isinstance(v, list):
            items = max(items, len(v))
            stack.extend(v)
    return items, longest


def within_bound(compiled: Compiled, data_bytes: int) -> bool:
    """Whether the filter is within COST_LIMIT on any event whose data has this many bytes of
    JSON (no collection has more items than half of them, no string more than all): checking
    this first spares walking the event (``event_shape``) for the usual small one."""
    return data_bytes <= compiled.safe_bytes


def cost_bound(compiled: Compiled, shape: tuple[int, int]) -> int:
    """An upper bound on the operand bytes one run touches: each step of the text may touch the
    longest string (grown along a ``+`` chain), once per item of the largest collection for
    each comprehension (never nested, so they add up)."""
    items, longest = shape
    steps = len(compiled.source)
    width = (compiled.shape.plus + 1) ** 2 * max(1, longest)
    return steps * width * (1 + compiled.shape.macros * items)


def evaluate(compiled: Compiled, context: Any, shape: tuple[int, int] | None = None) -> Outcome:
    """Whether the event in ``context`` matches. Never raises for an event's content: a missing
    field or a type mismatch is ERROR, a result that is not ``true`` or ``false`` ERROR too."""
    if shape is not None and cost_bound(compiled, shape) > COST_LIMIT:
        return Outcome.COST
    try:
        result = compiled.program.execute(context)
    except Exception:
        return Outcome.ERROR
    if result is True:
        return Outcome.MATCH
    return Outcome.NO_MATCH if result is False else Outcome.ERROR


def explain(
    compiled: Compiled, context: Any, shape: tuple[int, int] | None = None
) -> tuple[Outcome, str | None]:
    """``evaluate`` with the reason of an ERROR or COST (for previews)."""
    if shape is not None:
        bound = cost_bound(compiled, shape)
        if bound > COST_LIMIT:
            return Outcome.COST, f"cost bound {bound:,} is over the limit {COST_LIMIT:,}"
    try:
        result = compiled.program.execute(context)
    except Exception as exc:
        return Outcome.ERROR, _evaluation_error(exc)
    if result is True:
        return Outcome.MATCH, None
    if result is False:
        return Outcome.NO_MATCH, None
    return Outcome.ERROR, f"the filter gave {type(result).__name__}, not a bool"


def _evaluation_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no field {exc}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"

"""The lexical shape of a filter's CEL text (pure): what the CEL library does not report.

The library (``common-expression-language``) parses and evaluates but shows no syntax tree, so
the rules it cannot enforce are checked on the tokens here: bracket nesting, comprehension
macros (and whether one sits inside another), ``+`` count, the string functions a filter calls,
and ``segment("name")`` references (expanded before compiling, domain/filters.py). String
literals are skipped, so a ``(`` or ``segment(`` inside quotes counts for nothing.
"""

from __future__ import annotations

import re

import msgspec

MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
# The macros that build a list: refused in filters (domain/filters.py).
BUILDERS = frozenset({"map", "filter"})
# Functions whose cost grows with the length of a string operand (see filters.cost_bound).
STRING_FUNCTIONS = frozenset({"matches", "contains", "startsWith", "endsWith"})
SEGMENT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT_CALL = re.compile(r"""segment\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")


class SegmentRef(msgspec.Struct, frozen=True):
    name: str
    start: int  # offsets of the whole ``segment("…")`` call in the text
    end: int


class Shape(msgspec.Struct, frozen=True):
    depth: int  # deepest bracket nesting
    depth_at: tuple[int, ...]  # offset where each depth (1, 2, …) was first reached
    macros: int  # comprehension macro calls
    nested_macro_at: int | None  # offset of a macro inside another macro's arguments
    builder_at: int | None  # offset of the first map() or filter()
    plus: int  # ``+`` operators (string and list concatenation among them)
    string_calls: int  # calls of STRING_FUNCTIONS
    bound: frozenset[str]  # the variables comprehensions bind (``x`` in ``l.all(x, …)``)
    # The fields of ``data`` read by name (``data.amount``): only these need converting for
    # the engine. None: ``data`` is used otherwise too (``data["x"]``, ``size(data)``).
    data_fields: frozenset[str] | None
    segments: tuple[SegmentRef, ...]


def _string_end(text: str, i: int) -> int:
    """The offset after the string literal starting at ``i`` (a quote), or len(text)."""
    quote = text[i]
    raw = i > 0 and text[i - 1] in "rR" and (i < 2 or not text[i - 2].isalnum())
    triple = text.startswith(quote * 3, i)
    close = quote * 3 if triple else quote
    j = i + len(close)
    while j < len(text):
        if text[j] == "\\" and not raw:
            j += 2
            continue
        if text.startswith(close, j):
            return j + len(close)
        if text[j] == "\n" and not triple:
            return j
        j += 1
    return len(text)


def scan(text: str) -> Shape:
    depth = deepest = macros = plus = string_calls = 0
    depth_at: list[int] = []
    nested_at: int | None = None
    builder_at: int | None = None
    open_macros: list[int] = []  # depth at which each open macro's arguments started
    bound: set[str] = set()
    segments: list[SegmentRef] = []
    fields: set[str] | None = set()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            i = _string_end(text, i)
            continue
        if ch in "([{":
            depth += 1
            if depth > deepest:
                deepest = depth
                depth_at.append(i)
        elif ch in ")]}":
            if open_macros and open_macros[-1] == depth:
                open_macros.pop()
            depth -= 1
        elif ch == "+":
            plus += 1
        elif ch.isascii() and (ch.isalpha() or ch == "_"):
            m = _IDENT.match(text, i)
            assert m is not None
            name, after = m.group(), m.end()
            call = after < len(text) and text[after] == "("
            method = i > 0 and text[i - 1] == "."
            if name == "data" and not method and fields is not None:
                field = _field_after(text, after)
                if field is None:
                    fields = None
                else:
                    fields.add(field)
            if name == "segment" and call and not method:
                seg = _SEGMENT_CALL.match(text, i)
                if seg is not None:
                    segments.append(SegmentRef(seg.group(1) or seg.group(2) or "", i, seg.end()))
            if call and method and name in BUILDERS and builder_at is None:
                builder_at = i
            if call and method and name in MACROS:
                macros += 1
                if open_macros and nested_at is None:
                    nested_at = i
                open_macros.append(depth + 1)
                var = _IDENT.match(text, after + 1 + _spaces(text, after + 1))
                if var is not None:
                    bound.add(var.group())
            if call and method and name in STRING_FUNCTIONS:
                string_calls += 1
            i = after
            continue
        i += 1
    return Shape(
        deepest,
        tuple(depth_at),
        macros,
        nested_at,
        builder_at,
        plus,
        string_calls,
        frozenset(bound),
        None if fields is None else frozenset(fields),
        tuple(segments),
    )


def _field_after(text: str, i: int) -> str | None:
    """The name in ``.name`` at ``i`` (spaces allowed around the dot), else None."""
    i += _spaces(text, i)
    if i >= len(text) or text[i] != ".":
        return None
    i += 1
    m = _IDENT.match(text, i + _spaces(text, i))
    if m is None:
        return None
    after = m.end() + _spaces(text, m.end())
    # data.all(k, …), data.size(): a macro or method over the whole map, not a field
    return None if after < len(text) and text[after] == "(" else m.group()


def _spaces(text: str, i: int) -> int:
    n = 0
    while i + n < len(text) and text[i + n].isspace():
        n += 1
    return n


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of an offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def expand(text: str, segments: tuple[SegmentRef, ...], bodies: dict[str, str]) -> str:
    """The text with each ``segment("name")`` replaced by its body, parenthesised."""
    out, last = [], 0
    for ref in segments:
        out.append(text[last : ref.start])
        out.append(f"({bodies[ref.name]})")
        last = ref.end
    out.append(text[last:])
    return "".join(out)

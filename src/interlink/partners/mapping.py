"""The declarative normalizer: a mapping file turns a partner's payload into canonical events.

A mapping file (TOML) has

- ``[type]``: the canonical type, from a partner field (``path`` and a ``map`` of its values to
  canonical types) or a ``const``; ``ignore`` lists partner types (patterns like ``customer.*``)
  that are deliberately not normalized.
- ``[[events]]``: rules, each for the canonical ``types`` it names (all when omitted). A rule
  makes one event, or one per element of the array at ``each`` (``$item`` names the element in
  paths); it has a ``key`` (a template), an ``occurred_at`` and ``[events.data]``: output field
  (dotted names nest) → field spec.
- A field spec is a path (``reservation.guest.email``), or a table with one of ``path``,
  ``template`` (``"{a.b}-{c}"``) or ``const``, and optionally ``map`` (an enum map, applied
  first), ``as`` (a coercion: see ``COERCIONS``), ``default`` and ``optional``.

Paths are dotted, with integer segments indexing arrays; ``$item.…`` is the current element of
``each`` and ``$headers.<name>`` a request header. A missing or null value is an error unless
the field has a default or is optional. The core is pure: it reads no files (``load`` parses
the text it is given) and every failure on a payload is a ``MappingError`` naming the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

from interlink.domain.patterns import InvalidPattern, matches_any, validate_event_type
from interlink.partners.normalizer import Canonical, Inbound, MappingError

TIMESTAMPS = ("iso8601", "rfc2822", "epoch", "epoch_ms")
COERCIONS = ("str", "int", "float", "bool", "upper", "lower", "date", "minor_units", *TIMESTAMPS)

_MISSING: Any = object()
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


class InvalidMapping(ValueError):
    """The mapping file itself is wrong (found when a kit is loaded, not per payload)."""


# The file's shape ---------------------------------------------------------------------------------


class _FieldFile(msgspec.Struct, forbid_unknown_fields=True, rename={"as_": "as"}):
    path: str | None = None
    template: str | None = None
    const: Any = msgspec.UNSET
    map: dict[str, Any] | None = None
    as_: str | None = None
    default: Any = msgspec.UNSET
    optional: bool = False


class _TypeFile(msgspec.Struct, forbid_unknown_fields=True):
    path: str | None = None
    map: dict[str, str] = msgspec.field(default_factory=dict)
    const: str | None = None
    ignore: list[str] = msgspec.field(default_factory=list)


class _RuleFile(msgspec.Struct, forbid_unknown_fields=True):
    types: list[str] | None = None
    each: str | None = None
    key: str | None = None
    occurred_at: str | _FieldFile | None = None
    data: dict[str, str | _FieldFile] = msgspec.field(default_factory=dict)


class _MappingFile(msgspec.Struct, forbid_unknown_fields=True):
    type: _TypeFile
    events: list[_RuleFile]


# The compiled mapping -----------------------------------------------------------------------------


class Field(msgspec.Struct, frozen=True):
    name: str
    path: str | None = None
    template: str | None = None
    const: Any = msgspec.UNSET
    map: Mapping[str, Any] | None = None
    coerce: str | None = None
    default: Any = msgspec.UNSET
    optional: bool = False


class Rule(msgspec.Struct, frozen=True):
    types: frozenset[str] | None
    each: str | None
    key: str | None
    occurred_at: Field | None
    data: tuple[tuple[tuple[str, ...], Field], ...]


class _Context(msgspec.Struct, frozen=True):
    payload: Any
    headers: Mapping[str, str]
    item: Any = _MISSING


class MappingNormalizer:
    """A normalizer compiled from a mapping file."""

    def __init__(self, type_: _TypeFile, rules: tuple[Rule, ...]) -> None:
        self._type = type_
        self._rules = rules

    @property
    def canonical_types(self) -> frozenset[str]:
        if self._type.const is not None:
            return frozenset({self._type.const})
        return frozenset(self._type.map.values())

    def normalize(self, inbound: Inbound) -> list[Canonical]:
        if not isinstance(inbound.payload, dict):
            raise MappingError("the payload is not a JSON object")
        ctx = _Context(inbound.payload, inbound.headers)
        event_type = self._choose_type(ctx)
        if event_type is None:
            return []
        rules = [r for r in self._rules if r.types is None or event_type in r.types]
        if not rules:
            raise MappingError(f"no [[events]] rule of the mapping makes '{event_type}'")
        out: list[Canonical] = []
        for rule in rules:
            if rule.each is None:
                out.append(_event(rule, event_type, ctx))
                continue
            items = _resolve(ctx, rule.each)
            if not isinstance(items, list):
                raise MappingError(f"'{rule.each}' is not an array")
            for item in items:
                out.append(_event(rule, event_type, _Context(ctx.payload, ctx.headers, item)))
        return out

    def _choose_type(self, ctx: _Context) -> str | None:
        if self._type.const is not None:
            return self._type.const
        assert self._type.path is not None
        value = _resolve(ctx, self._type.path)
        if value is _MISSING or value is None:
            raise MappingError(f"the payload has no event type at '{self._type.path}'")
        name = _map_key(value)
        if name is not None and name in self._type.map:
            return self._type.map[name]
        if name is not None and self._type.ignore and _ignored(self._type.ignore, name):
            return None
        known = ", ".join(sorted(self._type.map))
        raise MappingError(
            f"partner event type {_shown(value)} at '{self._type.path}' is not one the mapping "
            f"knows ({known})"
        )


def _ignored(patterns: list[str], name: str) -> bool:
    try:
        validate_event_type(name, partner=True)
    except InvalidPattern:
        return False
    return matches_any(patterns, name)


def _event(rule: Rule, event_type: str, ctx: _Context) -> Canonical:
    key = _template(ctx, rule.key, "key") if rule.key is not None else None
    occurred_at = None
    if rule.occurred_at is not None:
        value = _field(ctx, rule.occurred_at, coerced=False)
        if value is not _MISSING:
            occurred_at = _instant(rule.occurred_at.coerce or "iso8601", value, "occurred_at")
    data: dict[str, Any] = {}
    for names, spec in rule.data:
        value = _field(ctx, spec)
        if value is _MISSING:
            continue
        node = data
        for part in names[:-1]:
            node = node.setdefault(part, {})
        node[names[-1]] = value
    return Canonical(type=event_type, key=key, occurred_at=occurred_at, data=data)


# Reading values -----------------------------------------------------------------------------------


def _resolve(ctx: _Context, path: str) -> Any:
    head, _, rest = path.partition(".")
    node: Any
    if head == "$item":
        node = ctx.item
    elif head == "$headers":
        return ctx.headers.get(rest.lower(), _MISSING) if rest else _MISSING
    else:
        node, rest = ctx.payload, path
    if node is _MISSING:
        return _MISSING
    for part in rest.split(".") if rest else ():
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, list) and _INTEGER.fullmatch(part):
            index = int(part)
            node = node[index] if -len(node) <= index < len(node) else _MISSING
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return node


def _field(ctx: _Context, spec: Field, *, coerced: bool = True) -> Any:
    """The field's value, or _MISSING when it is optional and absent."""
    if spec.const is not msgspec.UNSET:
        return spec.const
    if spec.template is not None:
        value: Any = _template(ctx, spec.template, spec.name)
    else:
        assert spec.path is not None
        value = _resolve(ctx, spec.path)
    if value is _MISSING or value is None:
        if spec.default is not msgspec.UNSET:
            return spec.default
        if spec.optional:
            return _MISSING
        raise MappingError(f"{spec.name}: the payload has no value at '{spec.path}'")
    if spec.map is not None:
        name = _map_key(value)
        if name is None or name not in spec.map:
            known = ", ".join(sorted(spec.map))
            raise MappingError(
                f"{spec.name}: {_shown(value)} at '{spec.path}' is not one the mapping knows "
                f"({known})"
            )
        value = spec.map[name]
    return value if spec.coerce is None or not coerced else coerce(spec.coerce, value, spec.name)


def _template(ctx: _Context, template: str, name: str) -> str:
    def value(match: re.Match[str]) -> str:
        found = _resolve(ctx, match[1])
        text = _scalar_text(found)
        if text is None:
            raise MappingError(f"{name}: the payload has no text or number at '{match[1]}'")
        return text

    return _PLACEHOLDER.sub(value, template)


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return None


_map_key = _scalar_text


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Coercions ----------------------------------------------------------------------------------------


def coerce(kind: str, value: Any, name: str) -> Any:
    """``value`` as ``kind`` (one of COERCIONS); MappingError saying why it cannot be."""
    try:
        return _COERCE[kind](value)
    except (ValueError, TypeError, OverflowError, OSError, ArithmeticError) as exc:
        raise MappingError(f"{name}: {_shown(value)} is not {_ARTICLE[kind]} ({exc})") from None


def _str(value: Any) -> str:
    text = _scalar_text(value)
    if text is None:
        raise TypeError("it is not a text or number")
    return text


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("it has a fraction")
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    raise ValueError("it is not a whole number")


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("it is not a number")
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("it is not finite")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _scalar_text(value)
    if text is not None and text.strip().lower() in _TRUE:
        return True
    if text is not None and text.strip().lower() in _FALSE:
        return False
    raise ValueError("it is not true/false, yes/no or 1/0")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("it is not a text")
    return value


def _datetime(kind: str, value: Any) -> datetime:
    if kind == "iso8601":
        parsed = datetime.fromisoformat(_text(value).strip().replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            raise ValueError("it has no time zone")
        return parsed.astimezone(UTC)
    if kind == "rfc2822":  # "Tue, 02 Jun 2026 10:00:00 +0200", as in mail and HTTP dates
        parsed = parsedate_to_datetime(_text(value).strip())
        if parsed.tzinfo is None:  # "-0000": the zone is unknown, by the RFC
            raise ValueError("it has no known time zone")
        return parsed.astimezone(UTC)
    seconds = _float(value)
    return datetime.fromtimestamp(seconds / 1000 if kind == "epoch_ms" else seconds, UTC)


def _instant(kind: str, value: Any, name: str) -> float:
    try:
        return _datetime(kind, value).timestamp()
    except (ValueError, TypeError, OverflowError, OSError) as exc:
        raise MappingError(f"{name}: {_shown(value)} is not {_ARTICLE[kind]} ({exc})") from None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _date(value: Any) -> str:
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return _datetime("iso8601", text).date().isoformat()
    return _datetime("epoch", value).date().isoformat()


def _minor_units(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("it is not an amount")
    try:
        amount = Decimal(str(value).strip()) * 100
    except InvalidOperation:
        raise ValueError("it is not a decimal amount") from None
    if not amount.is_finite() or amount != amount.to_integral_value():
        raise ValueError("it has more than two decimals")
    return int(amount)


_COERCE: dict[str, Any] = {
    "str": _str,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "upper": lambda v: _text(v).upper(),
    "lower": lambda v: _text(v).lower(),
    "date": _date,
    "minor_units": _minor_units,
    "iso8601": lambda v: _iso(_datetime("iso8601", v)),
    "rfc2822": lambda v: _iso(_datetime("rfc2822", v)),
    "epoch": lambda v: _iso(_datetime("epoch", v)),
    "epoch_ms": lambda v: _iso(_datetime("epoch_ms", v)),
}
_ARTICLE = {
    "str": "a text",
    "int": "a whole number",
    "float": "a number",
    "bool": "a boolean",
    "upper": "a text",
    "lower": "a text",
    "date": "a date",
    "minor_units": "an amount",
    "iso8601": "an ISO 8601 time",
    "rfc2822": "an RFC 2822 time",
    "epoch": "epoch seconds",
    "epoch_ms": "epoch milliseconds",
}


# Loading ------------------------------------------------------------------------------------------


def load(text: str, *, where: str = "mapping") -> MappingNormalizer:
    """Compiles a mapping file's text; InvalidMapping says what is wrong with it."""
    try:
        spec = msgspec.convert(tomllib.loads(text), _MappingFile)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise InvalidMapping(f"{where}: {exc}") from None
    try:
        return _compile(spec)
    except ValueError as exc:
        raise InvalidMapping(f"{where}: {exc}") from None


def _compile(spec: _MappingFile) -> MappingNormalizer:
    t = spec.type
    if (t.const is None) == (t.path is None):
        raise ValueError("[type] needs either 'path' (with 'map') or 'const'")
    if t.path is not None and not t.map:
        raise ValueError("[type] with a 'path' needs a 'map' of partner types to canonical ones")
    for canonical in [*t.map.values(), *([t.const] if t.const else [])]:
        validate_event_type(canonical)
    for pattern in t.ignore:
        if pattern in t.map:
            raise ValueError(f"[type] '{pattern}' is both mapped and ignored")
    if not spec.events:
        raise ValueError("a mapping needs at least one [[events]] rule")
    rules = tuple(_rule(i, r) for i, r in enumerate(spec.events))
    made = frozenset(t.map.values()) | ({t.const} if t.const else set())
    for i, rule in enumerate(rules):
        if rule.types is not None and not rule.types <= made:
            extra = ", ".join(sorted(rule.types - made))
            raise ValueError(f"[[events]] #{i + 1} names types [type] never chooses: {extra}")
    return MappingNormalizer(t, rules)


def _rule(index: int, r: _RuleFile) -> Rule:
    where = f"[[events]] #{index + 1}"
    occurred = None
    if r.occurred_at is not None:
        occurred = _compile_field(f"{where} occurred_at", r.occurred_at, "occurred_at")
        if occurred.coerce not in (None, *TIMESTAMPS):
            raise ValueError(f"{where} occurred_at: 'as' must be one of {', '.join(TIMESTAMPS)}")
    data = []
    leaves: set[tuple[str, ...]] = set()
    for name, spec in r.data.items():
        names = tuple(name.split("."))
        if not all(names):
            raise ValueError(f"{where} data field '{name}' has an empty segment")
        data.append((names, _compile_field(f"{where} data.{name}", spec, name)))
        leaves.add(names)
    for names in leaves:
        for i in range(1, len(names)):
            if names[:i] in leaves:
                raise ValueError(f"{where} data field '{'.'.join(names[:i])}' is also a parent")
    if r.key is not None and not r.key:
        raise ValueError(f"{where} key may not be empty")
    return Rule(
        types=frozenset(r.types) if r.types is not None else None,
        each=r.each,
        key=r.key,
        occurred_at=occurred,
        data=tuple(data),
    )


def _compile_field(where: str, spec: str | _FieldFile, name: str | None = None) -> Field:
    shown = name or where
    if isinstance(spec, str):
        return Field(name=shown, path=spec)
    sources = [spec.path is not None, spec.template is not None, spec.const is not msgspec.UNSET]
    if sum(sources) != 1:
        raise ValueError(f"{where}: give exactly one of 'path', 'template' or 'const'")
    if spec.as_ is not None and spec.as_ not in COERCIONS:
        raise ValueError(f"{where}: 'as' must be one of {', '.join(COERCIONS)}")
    return Field(
        name=shown,
        path=spec.path if spec.path is not None else spec.template,
        template=spec.template,
        const=spec.const,
        map=spec.map,
        coerce=spec.as_,
        default=spec.default,
        optional=spec.optional,
    )

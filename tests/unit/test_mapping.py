"""The declarative mapping engine: coercions, paths, templates, fan-out, and that no payload —
however odd — makes it fail other than with a MappingError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.catalog.catalog import EventCatalog
from interlink.partners import mapping
from interlink.partners.kit import KitRegistry
from interlink.partners.mapping import InvalidMapping, coerce
from interlink.partners.normalizer import Inbound, MappingError
from interlink.partners.pipeline import Rejected, normalize

KITS = KitRegistry.installed()
CATALOG = EventCatalog.builtin()
CONTRACTS = Path(__file__).parents[1] / "contracts"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


def _mutate(payload: Any, path: list[int], value: Any) -> Any:
    """``payload`` with the node that ``path`` picks (by index into keys) replaced by ``value``."""
    if not path or not isinstance(payload, dict | list) or not payload:
        return value
    if isinstance(payload, dict):
        keys = sorted(payload)
        key = keys[path[0] % len(keys)]
        return {**payload, key: _mutate(payload[key], path[1:], value)}
    i = path[0] % len(payload)
    return [*payload[:i], _mutate(payload[i], path[1:], value), *payload[i + 1 :]]


SAMPLES = [
    (case.parent.name, json.loads((case / "input.json").read_text()))
    for case in sorted(CONTRACTS.glob("*/*"))
    if (case / "input.json").exists()
]


@settings(max_examples=300, deadline=None)
@given(payload=json_values, kit_name=st.sampled_from(sorted(k.name for k in KITS.all())))
def test_arbitrary_json_gives_events_or_a_mapping_error(payload: Any, kit_name: str) -> None:
    kit = KITS.get(kit_name)
    assert kit is not None
    try:
        events = kit.normalizer.normalize(Inbound(payload))
    except MappingError:
        return
    assert isinstance(events, list)


@settings(max_examples=400, deadline=None)
@given(
    sample=st.sampled_from(SAMPLES),
    path=st.lists(st.integers(min_value=0, max_value=50), max_size=4),
    value=json_values,
)
def test_a_real_payload_with_any_field_changed_never_crashes_the_pipeline(
    sample: tuple[str, Any], path: list[int], value: Any
) -> None:
    kit = KITS.get(sample[0])
    assert kit is not None
    try:
        events = normalize(kit, CATALOG, Inbound(_mutate(sample[1], path, value)))
    except Rejected as exc:
        assert exc.reason
        return
    for event in events:  # what passes is valid against its schema
        assert CATALOG.errors(event.type, event.version, event.data) == []


@given(kind=st.sampled_from(mapping.COERCIONS), value=json_values)
def test_every_coercion_gives_a_value_or_a_mapping_error(kind: str, value: Any) -> None:
    try:
        coerce(kind, value, "field")
    except MappingError as exc:
        assert str(exc).startswith("field: ")


@pytest.mark.parametrize(
    ("kind", "value", "result"),
    [
        ("str", 7, "7"),
        ("str", 7.0, "7"),
        ("str", True, "true"),
        ("int", "42", 42),
        ("int", 3.0, 3),
        ("float", "2.5", 2.5),
        ("bool", "Yes", True),
        ("bool", 0, False),
        ("upper", "eur", "EUR"),
        ("lower", "EUR", "eur"),
        ("date", "2026-04-01", "2026-04-01"),
        ("date", "2026-04-01T23:30:00-02:00", "2026-04-02"),
        ("date", 1775001600, "2026-04-01"),
        ("minor_units", "480.50", 48050),
        ("minor_units", 12, 1200),
        ("iso8601", "2026-03-01T10:00:00+01:00", "2026-03-01T09:00:00Z"),
        ("epoch", 1772359200, "2026-03-01T10:00:00Z"),
        ("epoch_ms", 1772359200500, "2026-03-01T10:00:00.500000Z"),
        ("rfc2822", "Sun, 01 Mar 2026 11:00:00 +0100", "2026-03-01T10:00:00Z"),
        ("rfc2822", "Sun, 01 Mar 2026 10:00:00 GMT", "2026-03-01T10:00:00Z"),
    ],
)
def test_coercions(kind: str, value: Any, result: Any) -> None:
    assert coerce(kind, value, "f") == result


@pytest.mark.parametrize(
    ("kind", "value", "words"),
    [
        ("int", True, "boolean"),
        ("int", 2.5, "fraction"),
        ("int", "4x", "whole number"),
        ("float", "nan", "finite"),
        ("bool", "maybe", "true/false"),
        ("iso8601", "2026-03-01T10:00:00", "no time zone"),
        ("rfc2822", "Sun, 01 Mar 2026 10:00:00 -0000", "no known time zone"),
        ("rfc2822", "2026-03-01T10:00:00Z", "RFC 2822"),
        ("minor_units", "1.005", "two decimals"),
        ("date", "01/04/2026", "date"),
        ("epoch", 10**20, "epoch seconds"),
        ("str", {"a": 1}, "text or number"),
    ],
)
def test_coercion_failures_say_why(kind: str, value: Any, words: str) -> None:
    with pytest.raises(MappingError, match=words):
        coerce(kind, value, "f")


MAPPING = """
[type]
path = "kind"
map = { new = "thing.created", gone = "thing.deleted" }
ignore = ["noise.*", "orders/delete"]

[[events]]
types = ["thing.created"]
each = "items"
key = "t-{id}-{$item.n}"
occurred_at = { path = "at", as = "epoch" }

[events.data]
"a.b" = { path = "$item.n", as = "int" }
"a.c" = { const = "x" }
colour = { path = "$item.colour", map = { r = "red", g = "green" }, default = "none" }
note = { path = "note", optional = true }
agent = { path = "$headers.User-Agent", optional = true }

[[events]]
types = ["thing.deleted"]
key = "t-{id}"

[events.data]
id = "id"
"""


def test_fan_out_nesting_maps_defaults_and_headers() -> None:
    normalizer = mapping.load(MAPPING)
    payload = {
        "kind": "new",
        "id": 9,
        "at": 1772359200,
        "items": [{"n": "1", "colour": "g"}, {"n": 2}],
    }
    events = normalizer.normalize(Inbound(payload, {"user-agent": "pms/1"}))
    assert [e.key for e in events] == ["t-9-1", "t-9-2"]
    assert events[0].occurred_at == 1772359200.0
    assert events[0].data == {"a": {"b": 1, "c": "x"}, "colour": "green", "agent": "pms/1"}
    assert events[1].data["colour"] == "none"
    assert normalizer.normalize(Inbound({"kind": "noise.ping"})) == []
    assert normalizer.normalize(Inbound({"kind": "orders/delete"})) == []  # a partner's topic
    (gone,) = normalizer.normalize(Inbound({"kind": "gone", "id": "z"}))
    assert gone.type == "thing.deleted" and gone.occurred_at is None and gone.data == {"id": "z"}


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"kind": "other"}, "'other' at 'kind' is not one the mapping knows"),
        ({}, "no event type at 'kind'"),
        ({"kind": "new", "id": 1, "at": 1, "items": {}}, "'items' is not an array"),
        ({"kind": "new", "id": [1], "at": 1, "items": [{"n": 1}]}, "no text or number at 'id'"),
        ({"kind": "new", "id": 1, "at": 1, "items": [{"n": 1, "colour": "b"}]}, "'b' at"),
        ({"kind": "gone"}, "no text or number at 'id'"),
    ],
)
def test_mapping_errors_name_the_field(payload: dict[str, Any], words: str) -> None:
    with pytest.raises(MappingError, match=words):
        mapping.load(MAPPING).normalize(Inbound(payload))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[type]\nconst = 'a.b'\n", "events"),
        ("events = []\n[type]\nconst = 'a.b'\n", "at least one"),
        ("[type]\npath = 'k'\n[[events]]\n", "needs a 'map'"),
        ("[type]\nconst = 'a.b'\n[[events]]\ntypes = ['c.d']\n", "never chooses: c.d"),
        ("[type]\nconst = 'a.b'\n[[events]]\ndata = { x = { as = 'int' } }\n", "exactly one"),
        ("[type]\nconst = 'a.b'\n[[events]]\ndata = { x = { path = 'x', as = 'hex' } }\n", "'as'"),
        ("[type]\nconst = 'a.b'\n[[events]]\ndata = { x = 'x', 'x.y' = 'y' }\n", "also a parent"),
        ("[type]\nconst = 'a.b'\n[[events]]\noccurred_at = { path = 't', as = 'int' }\n", "'as'"),
        ("[type]\nconst = 'a b'\n[[events]]\n", "invalid event type"),
        ("[type]\nconst = 'a.b'\nbogus = 1\n[[events]]\n", "bogus"),
        ("not toml [", "mapping"),
    ],
)
def test_a_wrong_mapping_file_is_refused_when_loaded(text: str, words: str) -> None:
    with pytest.raises(InvalidMapping, match=words):
        mapping.load(text)

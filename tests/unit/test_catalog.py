"""The event catalog: every schema compiles, shared parts resolve, and validation says where."""

from __future__ import annotations

import pytest

from interlink.catalog.catalog import EventCatalog, UnknownEventType

CATALOG = EventCatalog.builtin()
REFERENCE_TYPES = {
    "booking.created",
    "booking.updated",
    "booking.cancelled",
    "listing.updated",
    "availability.updated",
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
}


def test_the_reference_types_are_in_the_catalog_at_version_1() -> None:
    assert {t.type for t in CATALOG.types()} == REFERENCE_TYPES
    for name in REFERENCE_TYPES:
        assert CATALOG.latest(name).version == 1
        assert CATALOG.latest(name).schema["$schema"].endswith("2020-12/schema")


def test_errors_name_the_field() -> None:
    ok = {"listing_id": "L", "partner": "p", "date": "2026-04-01", "available": 1}
    assert CATALOG.errors("availability.updated", 1, ok) == []
    errors = CATALOG.errors("availability.updated", 1, ok | {"date": "April", "x": 1})
    assert any(e.startswith("date: ") for e in errors)
    assert any("x" in e and "Additional" in e for e in errors), errors
    # booking.cancelled pulls the booking's shape from booking.v1.defs.json by $ref.
    assert CATALOG.errors("booking.cancelled", 1, {"booking_id": "b", "partner": "p"}) == [
        '(root): "status" is a required property'
    ]


def test_unknown_types_and_versions() -> None:
    with pytest.raises(UnknownEventType):
        CATALOG.latest("booking.exploded")
    with pytest.raises(UnknownEventType):
        CATALOG.errors("booking.created", 9, {})


def test_a_second_version_becomes_the_latest() -> None:
    v1 = {"type": "object", "required": ["a"]}
    v2 = {"type": "object", "required": ["a", "b"]}
    catalog = EventCatalog({"thing.made.v1.json": v1, "thing.made.v2.json": v2})
    assert [t.version for t in catalog.versions("thing.made")] == [1, 2]
    assert catalog.latest("thing.made").version == 2
    assert catalog.errors("thing.made", 1, {"a": 1}) == []
    assert catalog.errors("thing.made", 2, {"a": 1}) != []
    with pytest.raises(ValueError, match="named"):
        EventCatalog({"thing.json": v1})

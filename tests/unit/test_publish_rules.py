"""The domain's publishing rules: namespaces, default keys, catalog refusals of a whole batch."""

from __future__ import annotations

import msgspec
import pytest

from interlink.catalog.catalog import EventCatalog
from interlink.domain import publish
from interlink.domain.publish import Publication, PublishRefused

CATALOG = EventCatalog.builtin()
CANCELLED = {"booking_id": "b-1", "partner": "hotel", "status": "cancelled"}


def test_each_tenant_publishes_in_a_namespace_of_its_own() -> None:
    a, b = publish.source_id("tnt_0192aa"), publish.source_id("tnt_0192bb")
    assert a != b and a.startswith("api_") and not a.startswith("src_")
    assert len(publish.source_id("tnt_" + "f" * 32)) <= 40  # the column's width


def test_events_carry_their_publication() -> None:
    batch = [
        Publication("order.placed", {"n": 1}, key="o-1", idempotency_key="k1", occurred_at=5.0),
        Publication("order.placed", {"n": 2}),
    ]
    first, second = publish.prepare("tnt_1", batch, 100.0, CATALOG)
    assert first.origin == second.origin == "api"
    assert first.source_id == second.source_id == publish.source_id("tnt_1")
    assert (first.idempotency_key, first.key, first.occurred_at) == ("k1", "o-1", 5.0)
    assert msgspec.json.decode(first.data) == {"n": 1} and first.received_at == 100.0
    assert first.schema_version is None  # not a catalog type: not validated
    # Without a key an event is its own key: never a duplicate of another.
    assert second.idempotency_key == second.id and second.id != first.id


def test_a_catalog_type_is_validated_and_stamped_with_its_version() -> None:
    (ok,) = publish.prepare("t", [Publication("booking.cancelled", CANCELLED)], 1.0, CATALOG)
    assert ok.schema_version == 1


def test_one_invalid_event_refuses_the_batch_naming_index_and_path() -> None:
    batch = [Publication("booking.cancelled", CANCELLED) for _ in range(3)]
    batch[1] = Publication("booking.cancelled", CANCELLED | {"guest": {"name": 7}})
    with pytest.raises(PublishRefused) as refused:
        publish.prepare("t", batch, 1.0, CATALOG)
    (refusal,) = refused.value.refusals
    assert (refusal.index, refusal.path) == (1, "/data/guest/name")
    assert refusal.describe(batch=True).startswith("events[1]/data/guest/name: 7 is not")
    assert "booking.cancelled v1" in refusal.message


def test_refusals_are_bounded_and_batches_too() -> None:
    bad = [Publication("booking.cancelled", {}) for _ in range(50)]
    with pytest.raises(PublishRefused) as refused:
        publish.prepare("t", bad, 1.0, CATALOG, max_refusals=4)
    assert len(refused.value.refusals) == 4
    with pytest.raises(ValueError, match="at most 1000"):
        publish.prepare("t", [Publication("a", {})] * 1001, 1.0, CATALOG)

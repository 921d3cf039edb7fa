"""The Python SDK (sdk/python, ``interlink_client``) against a real Interlink in-process.

The drift test holds every operation the SDK declares (operations.py: method, path, query,
the fields it sends and decodes) to the server's live ``/openapi.json``; a doctored document, an
operation renamed or a field renamed, shows the check fails (acceptance 4). The other tests call
the SDK over the management and publish APIs and check its models and its problem+json errors.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from tests.integration.conftest import Harness

from interlink_client import (
    AsyncInterlink,
    BadRequest,
    EventToPublish,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from interlink_client.drift import check
from interlink_client.operations import OPERATIONS, PUBLISH_BATCH


async def _spec(harness: Harness) -> dict[str, Any]:
    r = await harness.client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


@pytest.fixture
async def sdk(harness: Harness) -> AsyncIterator[AsyncInterlink]:
    key = await harness.tenant("sdk")
    transport = httpx.ASGITransport(app=harness.system)
    async with AsyncInterlink("http://interlink", key, transport=transport) as client:
        yield client


async def test_every_sdk_operation_matches_the_live_openapi_document(harness: Harness) -> None:
    spec = await _spec(harness)
    assert check(spec) == []
    # Every operation is checked, not just the first that matches a path.
    assert len({op.name for op in OPERATIONS}) == len(OPERATIONS) >= 20


async def test_a_renamed_operation_or_field_fails_the_drift_check(harness: Harness) -> None:
    spec = await _spec(harness)
    renamed = copy.deepcopy(spec)
    renamed["paths"]["/api/v1/events/publish-batch"] = renamed["paths"].pop("/api/v1/events/batch")
    assert check(renamed, [PUBLISH_BATCH]) == [
        "POST /api/v1/events/batch: no such operation on the server"
    ]
    assert "POST /api/v1/events/batch: no such operation on the server" in check(renamed)

    # A field the SDK decodes, renamed in the answer; a field it sends, renamed in the body.
    fields = copy.deepcopy(spec)
    schemas = fields["components"]["schemas"]
    schemas["PublishedOut"]["properties"]["event_id"] = schemas["PublishedOut"]["properties"].pop(
        "id"
    )
    schemas["PublishedOut"]["required"] = ["event_id", "duplicate"]
    schemas["PublishIn"]["properties"]["dedupe_key"] = schemas["PublishIn"]["properties"].pop(
        "idempotency_key"
    )
    problems = check(fields)
    unknown = "decoded by the client, not in the server's answer"
    assert f"POST /api/v1/events 202.id: {unknown}" in problems
    assert f"POST /api/v1/events/batch 202.data.id: {unknown}" in problems
    unsent = "sent by the client, unknown to the server"
    assert f"POST /api/v1/events body.idempotency_key: {unsent}" in problems
    assert f"POST /api/v1/events/batch body.events.idempotency_key: {unsent}" in problems


async def test_publish_manage_and_list_with_the_sdk(sdk: AsyncInterlink) -> None:
    created = await sdk.create_endpoint("https://example.com/hooks", ordering="ordered")
    assert created.secret and created.endpoint.ordering == "ordered"
    assert (created.endpoint.kind, created.endpoint.url) == ("push", "https://example.com/hooks")
    pull = await sdk.create_endpoint(kind="pull")
    assert (pull.endpoint.kind, pull.endpoint.url) == ("pull", None)
    await sdk.delete_endpoint(pull.endpoint.id)
    sub = await sdk.create_subscription(created.endpoint.id, ["order.*"])
    assert (await sdk.get_subscription(sub.id)).event_types == ["order.*"]

    one = await sdk.publish("order.confirmed", {"n": 0}, key="b-1", idempotency_key="i-0")
    again = await sdk.publish("order.confirmed", {"n": 0}, idempotency_key="i-0")
    assert again.id == one.id and again.duplicate and not one.duplicate
    batch = await sdk.publish_batch(
        [
            EventToPublish(type="order.confirmed", data={"n": 1}, key="b-1"),
            {"type": "order.cancelled", "data": {"n": 2}, "idempotency_key": "i-0"},
        ]
    )
    assert [p.duplicate for p in batch.data] == [False, True] and batch.data[1].id == one.id

    event = await sdk.get_event(one.id)
    assert (event.type, event.key, event.origin, event.data) == (
        "order.confirmed",
        "b-1",
        "api",
        {"n": 0},
    )
    seen = [e.id async for e in sdk.iter_events(type="order.confirmed", limit=1)]
    assert sorted(seen) == sorted([one.id, batch.data[0].id])  # two pages of one
    deliveries = (await sdk.list_deliveries(event_id=one.id)).data
    assert [d.endpoint_id for d in deliveries] == [created.endpoint.id]
    await sdk.update_endpoint(created.endpoint.id, status="paused")
    assert (await sdk.get_endpoint(created.endpoint.id)).status == "paused"
    await sdk.delete_subscription(sub.id)
    await sdk.delete_endpoint(created.endpoint.id)
    assert (await sdk.list_endpoints()).data == []


async def test_errors_carry_the_servers_problem_json(harness: Harness, sdk: AsyncInterlink) -> None:
    with pytest.raises(NotFound) as missing:
        await sdk.get_event("evt_nope")
    assert missing.value.status == 404 and missing.value.detail
    assert missing.value.type.startswith("https://")

    with pytest.raises(BadRequest) as bad:
        await sdk.publish("has space", {})
    assert bad.value.status == 400 and "type" in bad.value.detail

    with pytest.raises(PayloadTooLarge):
        await sdk.publish_batch([{"type": "t.x", "data": {}}] * 1001)

    transport = httpx.ASGITransport(app=harness.system)
    async with AsyncInterlink("http://interlink", "wrong", transport=transport) as stranger:
        with pytest.raises(Unauthorized) as refused:
            await stranger.list_sources()
    assert refused.value.status == 401 and not refused.value.retryable

"""docs/routing.md as written: its JSON blocks are what the API takes and answers."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Harness
from tests.readme import routing_block


def _with_endpoint(block: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
    return {**block, "endpoint_id": endpoint_id}


async def test_routing_doc_examples(harness: Harness) -> None:
    h = harness
    key = await h.tenant()
    ep = (await h.post(key, "/api/v1/endpoints", {"url": "http://example.com/hook"}))["endpoint"]
    segment = await h.post(key, "/api/v1/segments", routing_block("segment"))
    assert segment["name"] == "premium-hosts"
    await h.post(key, "/api/v1/subscriptions", _with_endpoint(routing_block("transform"), ep["id"]))
    body = _with_endpoint(routing_block("subscription"), ep["id"])
    sub = await h.post(key, "/api/v1/subscriptions", {**body, "transform": '{"eur": amount / 100}'})
    r = await h.client.post(
        f"/api/v1/subscriptions/{sub['id']}/preview",
        json=routing_block("preview-request"),
        headers=h.auth(key),
    )
    assert r.status_code == 200, r.text
    answer = r.json()
    for name, value in routing_block("preview-answer").items():
        assert answer[name] == value, (name, answer)

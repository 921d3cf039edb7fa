"""An endpoint's lane over the API and the CLI: ordering, concurrency, rate limit, breaker
policy, health; bad values refused with 400; another tenant's endpoint is not found."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Harness
from tests.integration.test_cli_sources import run_cli, running  # noqa: F401  (fixture)

from interlink.app import Interlink
from interlink.storage.tenancy import system_scope

URL = "http://127.0.0.1:9/hook"


async def test_lane_options_round_trip_and_bad_values_are_refused(harness: Harness) -> None:
    key, other = await harness.tenant("a"), await harness.tenant("b")
    created = await harness.post(
        key,
        "/api/v1/endpoints",
        {
            "url": URL,
            "ordering": "ordered",
            "on_head_dead": "skip",
            "concurrency": 8,
            "rate_limit": {"rate": 600, "per": "minute", "burst": 20},
            "breaker": {"min_attempts": 50, "open_seconds": 10},
            "disable_after_seconds": 86400,
        },
    )
    ep = created["endpoint"]
    assert ep["ordering"] == "ordered" and ep["on_head_dead"] == "skip"
    assert ep["concurrency"] == 8 and ep["disable_after_seconds"] == 86400
    assert ep["rate_limit"] == {"rate": 600, "per": "minute", "burst": 20}
    assert ep["breaker"]["min_attempts"] == 50 and ep["breaker"]["open_seconds"] == 10
    health = (await harness.get(key, f"/api/v1/endpoints/{ep['id']}/health")).json()
    assert health["breaker"] == "closed" and health["failing_since"] is None
    # What holds the lane: nothing yet.
    held = ("concurrency", "slots_in_use", "deferred", "horizon", "full_since")
    assert {k: health[k] for k in held} == dict(zip(held, (8, 0, 0, None, None), strict=True))

    # PATCH: null removes the rate limit and the custom breaker; leaving them out keeps them.
    r = await harness.client.patch(
        f"/api/v1/endpoints/{ep['id']}",
        json={"concurrency": 4},
        headers=harness.auth(key),
    )
    assert r.status_code == 200 and r.json()["rate_limit"]["rate"] == 600
    r = await harness.client.patch(
        f"/api/v1/endpoints/{ep['id']}",
        json={"rate_limit": None, "breaker": None, "ordering": "unordered"},
        headers=harness.auth(key),
    )
    body = r.json()
    assert r.status_code == 200, r.text
    assert body["rate_limit"] is None and body["breaker"] is None
    assert body["ordering"] == "unordered" and body["concurrency"] == 4

    bad: list[dict[str, Any]] = [
        {"ordering": "sideways"},
        {"on_head_dead": "explode"},
        {"concurrency": 0},
        {"concurrency": 10_000},
        {"rate_limit": {"rate": -1}},
        {"rate_limit": {"rate": 10, "per": "hour"}},
        {"rate_limit": {"rate": 10, "burst": 0}},
        {"breaker": {"failure_ratio": 2}},
        {"breaker": {"open_seconds": 0}},
        {"breaker": {"unknown": 1}},
        {"disable_after_seconds": 1},
    ]
    for extra in bad:
        r = await harness.client.post(
            "/api/v1/endpoints", json={"url": URL, **extra}, headers=harness.auth(key)
        )
        assert r.status_code == 400, (extra, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        r = await harness.client.patch(
            f"/api/v1/endpoints/{ep['id']}", json=extra, headers=harness.auth(key)
        )
        assert r.status_code == 400, (extra, r.status_code, r.text)

    # Another tenant: not found, whatever it asks.
    assert (await harness.get(other, f"/api/v1/endpoints/{ep['id']}/health")).status_code == 404


async def test_the_cli_creates_an_ordered_rate_limited_endpoint(running: Interlink) -> None:  # noqa: F811
    with system_scope("test: the operator"):
        _, key = await running.management.create_tenant("acme")
    out = await run_cli(
        running,
        key,
        "endpoints",
        "create",
        URL,
        "--ordered",
        "--concurrency",
        "4",
        "--rate-limit",
        "600/minute",
    )
    assert out.exit_code == 0, out.output
    ep = json.loads(out.output)["endpoint"]
    assert ep["ordering"] == "ordered" and ep["concurrency"] == 4
    assert ep["rate_limit"]["rate"] == 600 and ep["rate_limit"]["per"] == "minute"
    health = await run_cli(running, key, "endpoints", "health", ep["id"])
    assert health.exit_code == 0 and json.loads(health.output)["breaker"] == "closed"
    assert json.loads(health.output)["slots_in_use"] == 0
    refused = await run_cli(running, key, "endpoints", "create", URL, "--rate-limit", "fast")
    assert refused.exit_code == 2 and "not like 10/second" in refused.output

"""The server log tells about deliveries: failed attempts, dead letters, a breaker opening and
closing, an endpoint disabled; each line names its ids, and a dead endpoint cannot flood it.

Captured by the canary sweep (production processors, redaction included), which also checks
that no secret is in any of these lines.
"""

from __future__ import annotations

import json
from typing import Any

from tests.canary import Sweep
from tests.integration.conftest import Harness, eventually
from tests.integration.test_delivery import send, wire

IDS = ("tenant_id", "endpoint_id", "delivery_id", "event_id")


def delivery_lines(canary: Sweep, endpoint_id: str) -> list[dict[str, Any]]:
    lines = []
    for text in canary.log_lines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if str(line.get("event", "")).startswith("delivery.") and (
            line.get("endpoint_id") == endpoint_id
        ):
            lines.append(line)
    return lines


def events(lines: list[dict[str, Any]]) -> list[str]:
    return [str(line["event"]) for line in lines]


async def test_failures_and_a_breaker_that_opens_and_closes_are_logged_with_ids(
    harness: Harness, canary: Sweep, receiver_factory
) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory(answers=[500, 500, 500])
    breaker = {"min_attempts": 3, "failure_ratio": 0.5, "open_seconds": 0.5, "jitter": 0}
    source, secret, ep = await wire(
        harness, key, receiver.url, retry_schedule=[0, 0.2, 0.2, 0.2, 0.2], breaker=breaker
    )
    receiver.secret, endpoint_id = ep.split("|")
    sent = {await send(harness, source, secret, f"m{i}") for i in range(3)}
    await eventually(
        lambda: "delivery.breaker_closed" in events(delivery_lines(canary, endpoint_id)),
        timeout=15,
    )
    await eventually(lambda: {m for m, _ in receiver.received if m} >= sent, timeout=10)
    lines = delivery_lines(canary, endpoint_id)
    failed = [line for line in lines if line["event"] == "delivery.attempt_failed"]
    assert len(failed) == 3
    for line in failed:
        assert all(line.get(k) for k in IDS), line
        assert line["status_code"] == 500 and line["outcome"] == "failed"
        assert line["event_id"] in sent
    names = events(lines)
    assert names.index("delivery.breaker_opened") < names.index("delivery.breaker_closed")


async def test_a_gone_endpoint_is_dead_lettered_and_disabled_in_the_log(
    harness: Harness, canary: Sweep, receiver_factory
) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory(default=410)
    source, secret, ep = await wire(harness, key, receiver.url)
    receiver.secret, endpoint_id = ep.split("|")
    event_id = await send(harness, source, secret, "m1")
    await eventually(
        lambda: "delivery.endpoint_disabled" in events(delivery_lines(canary, endpoint_id)),
        timeout=10,
    )
    lines = delivery_lines(canary, endpoint_id)
    (dead,) = [line for line in lines if line["event"] == "delivery.dead_lettered"]
    assert dead["event_id"] == event_id and all(dead.get(k) for k in IDS)
    (disabled,) = [line for line in lines if line["event"] == "delivery.endpoint_disabled"]
    assert disabled["tenant_id"] and disabled["reason"]


async def test_a_dead_endpoint_cannot_flood_the_log(
    harness: Harness, canary: Sweep, receiver_factory
) -> None:  # type: ignore[no-untyped-def]
    key = await harness.tenant()
    receiver = await receiver_factory(default=500)
    source, secret, ep = await wire(harness, key, receiver.url, retry_schedule=[0])
    receiver.secret, endpoint_id = ep.split("|")
    for i in range(15):  # fewer than the breaker's min_attempts: all go dead, none held
        await send(harness, source, secret, f"m{i}")

    async def all_dead() -> bool:
        r = await harness.get(key, "/api/v1/deliveries", endpoint_id=endpoint_id, status="dead")
        return len(r.json()["data"]) == 15

    await eventually(all_dead, timeout=15)
    lines = delivery_lines(canary, endpoint_id)
    limit = harness.system.dispatcher.delivery_log.limiter.lines
    dead = [line for line in lines if line["event"] == "delivery.dead_lettered"]
    assert limit < 15 and len(dead) == limit  # 15 dead letters, the first `limit` of them logged

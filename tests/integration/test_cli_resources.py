"""The day-to-day CLI against a real Interlink on loopback: tenants, a first webhook with
`sources send`, events, deliveries and their retry, endpoints paused, resumed, changed and
deleted, subscriptions deleted; JSON by default, tables on request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.conftest import ADMIN, eventually
from tests.integration.test_cli_sources import run_cli, running
from typer.testing import CliRunner

from interlink import cli
from interlink.app import Interlink

__all__ = ["running"]  # the fixture, shared with test_cli_sources


async def ok(system: Interlink, key: str, *args: str) -> Any:
    result = await run_cli(system, key, *args)
    assert result.exit_code == 0, f"interlink {' '.join(args)}: {result.output}"
    out = result.stdout  # `sources send` adds a hint on stderr
    return json.loads(out) if out.lstrip().startswith(("{", "[")) else out


async def test_a_first_hour_from_the_cli(running: Interlink, receiver_factory) -> None:  # type: ignore[no-untyped-def]
    env = {"INTERLINK_API_URL": running.settings.public_url, "INTERLINK_ADMIN_KEY": ADMIN}
    runner = CliRunner()
    created = await asyncio.to_thread(
        runner.invoke, cli.app, ["tenants", "create", "acme"], env=env
    )
    assert created.exit_code == 0, created.output
    key, tenant_id = (
        json.loads(created.output)["api_key"],
        json.loads(created.output)["tenant"]["id"],
    )
    listed = await asyncio.to_thread(
        runner.invoke, cli.app, ["tenants", "list", "--output", "table"], env=env
    )
    assert listed.output.splitlines()[0].split() == ["ID", "NAME", "CREATED_AT"]
    assert tenant_id in listed.output and "acme" in listed.output
    another = await asyncio.to_thread(
        runner.invoke, cli.app, ["tenants", "new-key", tenant_id], env=env
    )
    assert json.loads(another.output)["api_key"].startswith("ik_")

    source = await ok(running, key, "sources", "create", "pms")
    source_id, secret = source["source"]["id"], source["secrets"][0]
    receiver = await receiver_factory()
    created_endpoint = await ok(running, key, "endpoints", "create", receiver.url)
    endpoint, receiver.secret = created_endpoint["endpoint"], created_endpoint["secret"]
    sub = await ok(running, key, "subscriptions", "create", endpoint["id"], "--type", "booking.*")

    # Paused: the event is routed, and waits.
    assert (await ok(running, key, "endpoints", "pause", endpoint["id"]))["status"] == "paused"
    sent = await ok(
        running,
        key,
        "sources",
        "send",
        "pms",
        "--secret",
        secret,  # by name
        "--type",
        "booking.created",
        "--data",
        '{"booking_id": "b-1"}',
    )
    assert sent["duplicate"] is False
    events = await ok(running, key, "events", "list", "--type", "booking.created")
    assert [e["id"] for e in events] == [sent["id"]]
    shown = await ok(running, key, "events", "show", sent["id"])
    assert shown["data"] == {"booking_id": "b-1"} and shown["source_id"] == source_id
    await asyncio.sleep(0.5)
    assert receiver.received == []

    resumed = await ok(running, key, "endpoints", "resume", endpoint["id"])
    assert resumed["status"] == "active"

    async def delivered() -> bool:
        return len(receiver.received) == 1

    await eventually(delivered, timeout=15)
    deliveries = await ok(running, key, "deliveries", "list", "--event", sent["id"])
    assert [d["status"] for d in deliveries] == ["succeeded"]
    delivery_id = deliveries[0]["id"]
    attempts = await ok(running, key, "deliveries", "attempts", delivery_id, "-o", "table")
    assert "succeeded" in attempts.splitlines()[1]
    retried = await ok(running, key, "deliveries", "retry", delivery_id)
    assert retried["id"] == delivery_id

    async def twice() -> bool:
        return len(receiver.received) == 2

    await eventually(twice, timeout=15)
    assert receiver.received[0][0] == receiver.received[1][0]  # the same webhook-id

    changed = await ok(
        running,
        key,
        "endpoints",
        "update",
        endpoint["id"],
        "--description",
        "bookings",
        "--retry-schedule",
        "0,5,60",
    )
    assert changed["description"] == "bookings" and changed["retry_schedule"] == [0, 5, 60]
    await ok(running, key, "subscriptions", "delete", sub["id"])
    assert await ok(running, key, "subscriptions", "list") == []
    await ok(running, key, "endpoints", "delete", endpoint["id"])
    gone = await run_cli(running, key, "endpoints", "show", endpoint["id"])
    assert gone.exit_code == 1 and "404" in gone.output


async def test_a_pull_endpoint_from_the_cli(running: Interlink) -> None:
    env = {"INTERLINK_API_URL": running.settings.public_url, "INTERLINK_ADMIN_KEY": ADMIN}
    created = await asyncio.to_thread(
        CliRunner().invoke, cli.app, ["tenants", "create", "acme"], env=env
    )
    key = json.loads(created.output)["api_key"]
    made = await ok(running, key, "endpoints", "create", "--pull", "--ordered")
    endpoint = made["endpoint"]
    assert (endpoint["kind"], endpoint["url"], endpoint["ordering"]) == ("pull", None, "ordered")
    table = await ok(running, key, "endpoints", "list", "--output", "table")
    assert table.splitlines()[0].split()[:3] == ["ID", "KIND", "URL"] and "pull" in table
    both = await run_cli(running, key, "endpoints", "create", "https://example.com/x", "--pull")
    neither = await run_cli(running, key, "endpoints", "create")
    assert both.exit_code == neither.exit_code == 2
    assert "--pull" in both.output


async def test_a_kafka_endpoint_from_the_cli_names_a_cluster_never_a_broker(
    running: Interlink,
) -> None:
    env = {"INTERLINK_API_URL": running.settings.public_url, "INTERLINK_ADMIN_KEY": ADMIN}
    created = await asyncio.to_thread(
        CliRunner().invoke, cli.app, ["tenants", "create", "acme"], env=env
    )
    key = json.loads(created.output)["api_key"]
    # No cluster is configured here: the API's 422 names the field.
    refused = await run_cli(running, key, "endpoints", "create", "--kafka", "main/orders")
    assert refused.exit_code == 1 and "422" in refused.output
    assert "kafka.cluster" in refused.output
    both = await run_cli(running, key, "endpoints", "create", "--pull", "--kafka", "main/x")
    assert both.exit_code == 2 and "--kafka" in both.output

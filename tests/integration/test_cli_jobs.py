"""`interlink deliveries list` and `interlink jobs …` against a real Interlink on loopback."""

from __future__ import annotations

import json
import time

from tests.integration.conftest import ADMIN, Harness, eventually, invoke
from tests.integration.test_jobs import Tenant, all_dead


async def test_dead_letters_and_a_redrive_job_from_the_cli(
    served: Harness, receiver_factory
) -> None:  # type: ignore[no-untyped-def]
    h = served
    r = await h.client.post("/api/v1/tenants", json={"name": "acme"}, headers=h.auth(ADMIN))
    key, tenant_id = r.json()["api_key"], r.json()["tenant"]["id"]
    source = await h.post(key, "/api/v1/sources", {"name": "pms"})
    t = Tenant(h, key, tenant_id, source["source"]["id"])
    receiver = await receiver_factory(default=500)
    ep = await t.endpoint(receiver, "*")
    await t.append(30, "booking.created")
    await t.append(5, "invoice.paid")
    await all_dead(h, ep, 35)

    result = await invoke(
        h, key, "deliveries", "list", "--status", "dead", "--endpoint", ep, "--type", "invoice.paid"
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert len(listed) == 5 and {d["status"] for d in listed} == {"dead"}
    result = await invoke(h, key, "deliveries", "list", "--status", "dead", "--after", "soon")
    assert result.exit_code == 1 and "400" in result.output and "after" in result.output

    receiver.default = 200
    result = await invoke(
        h, key, "jobs", "redrive", "--endpoint", ep, "--type", "booking.created", "--rate", "20"
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.output)
    assert job["status"] == "queued" and job["rate"] == 20

    started = time.monotonic()
    result = await invoke(h, key, "jobs", "show", job["id"], "--watch", "--interval", "0.2")
    took = time.monotonic() - started
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) >= 3 and all(line.startswith(job["id"]) for line in lines)
    assert "succeeded" in lines[-1] and "30/30 (100%)" in lines[-1]
    assert any("running" in line and "eta" in line for line in lines[:-1])
    assert took >= (30 - 2) / 20  # paced: 30 at 20/s, one batch of 2 at once
    await eventually(lambda: len(receiver.received) == 35 + 30)

    result = await invoke(h, key, "jobs", "list")
    assert result.exit_code == 0 and job["id"] in result.output and "succeeded" in result.output
    result = await invoke(h, key, "jobs", "cancel", job["id"])
    assert result.exit_code == 1 and "409" in result.output

    result = await invoke(h, key, "jobs", "replay", ep, "--type", "invoice.paid", "--rate", "50")
    assert result.exit_code == 0, result.output
    replay = json.loads(result.output)
    assert replay["kind"] == "replay" and replay["endpoint_id"] == ep
    result = await invoke(h, key, "jobs", "show", replay["id"], "--watch", "--interval", "0.1")
    assert result.exit_code == 0 and "5/5 (100%)" in result.output.splitlines()[-1]
    result = await invoke(h, key, "jobs", "show", "job_nope")
    assert result.exit_code == 1 and "404" in result.output

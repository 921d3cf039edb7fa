"""The reconciliation resource and CLI: settings refused with a clear 4xx when they cannot work,
runs listed per source and tenant, a partner that is down makes a failed run (not a 500), the
scheduler runs a source on its interval; and the simulator's changed-since listing pages."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from tests.integration.conftest import ADMIN, Harness, eventually
from tests.integration.test_cli_sources import run_cli, running  # noqa: F401 - a fixture

from interlink.app import Interlink
from interlink.partners.booking_story import interleave, stories
from interlink.partners.simulator import PartnerSimulator


@pytest.fixture
async def partner() -> AsyncIterator[PartnerSimulator]:
    sim = PartnerSimulator()
    await sim.start()
    yield sim
    await sim.stop()


async def setup(h: Harness, key: str, partner: PartnerSimulator, kit: str = "pms_alpha") -> Any:
    source = await h.post(key, "/api/v1/sources", {"name": kit, "kit": kit})
    connection = await h.post(
        key,
        "/api/v1/connections",
        {
            "partner": "alpha",
            "token_url": partner.token_url,
            "client_id": partner.client_id,
            "client_secret": partner.client_secret,
        },
    )
    return source["source"]["id"], connection["id"]


def printed(output: str) -> Any:
    """What the CLI printed, past the log lines the in-process server wrote to the same output."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "[", "[]"))
    return json.loads("\n".join(lines[start:]))


async def put(h: Harness, key: str, source_id: str, **body: Any) -> Any:
    return await h.client.put(
        f"/api/v1/sources/{source_id}/reconciler", json=body, headers=h.auth(key)
    )


async def test_settings_that_cannot_work_are_refused_with_the_reason(
    harness: Harness, partner: PartnerSimulator
) -> None:
    h = harness
    key = await h.tenant()
    source_id, connection_id = await setup(h, key, partner)
    beta_id, _ = await setup(h, key, partner, kit="pms_beta")
    good = {"connection_id": connection_id, "api_url": partner.url}
    cases = [
        ("src_unknown", good, 404, "no source"),
        # 422: rules the OpenAPI document cannot state; 400: what it states
        (beta_id, good, 422, "declares no reconciler"),
        (source_id, {**good, "connection_id": "conn_nope"}, 422, "no connection 'conn_nope'"),
        (source_id, {**good, "api_url": "http://10.1.2.3/api"}, 422, "api_url"),
        (source_id, {**good, "interval_seconds": 0}, 400, "interval_seconds"),
        (source_id, {**good, "surprise": 1}, 400, "surprise"),
    ]
    for sid, body, status, detail in cases:
        r = await put(h, key, sid, **body)
        assert r.status_code == status, (body, r.text)
        assert detail in r.text, r.text
    r = await h.client.post(f"/api/v1/sources/{source_id}/reconciliations", headers=h.auth(key))
    assert r.status_code == 422 and "no reconciler settings" in r.json()["detail"]
    kits = {k["name"]: k for k in (await h.get(key, "/api/v1/partner-kits")).json()["data"]}
    assert kits["pms_alpha"]["reconciles"] == "booking" and kits["pms_beta"]["reconciles"] is None
    r = await put(h, key, source_id, **good, interval_seconds=600)
    assert r.status_code == 200, r.text
    assert r.json()["interval_seconds"] == 600 and r.json()["running"] is False
    assert (await h.get(key, f"/api/v1/sources/{source_id}/reconciler")).json() == r.json()
    # Another tenant sees none of it.
    other = await h.tenant("other")
    assert (await h.get(other, f"/api/v1/sources/{source_id}/reconciler")).status_code == 404
    assert (await h.get(other, f"/api/v1/sources/{source_id}/reconciliations")).status_code == 404
    r = await h.client.post(f"/api/v1/sources/{source_id}/reconciliations", headers=h.auth(other))
    assert r.status_code == 404


async def test_a_partner_that_is_down_makes_a_failed_run_and_a_later_one_succeeds(
    harness: Harness, partner: PartnerSimulator
) -> None:
    h = harness
    key = await harness.tenant()
    source_id, connection_id = await setup(h, key, partner)
    assert (
        await put(h, key, source_id, connection_id=connection_id, api_url=partner.url)
    ).is_success
    partner.api_mode = "error"
    r = await h.client.post(f"/api/v1/sources/{source_id}/reconciliations", headers=h.auth(key))
    assert r.status_code == 201, r.text
    failed = r.json()
    assert failed["status"] == "failed" and "503" in failed["error"] and failed["pulled"] == 0
    partner.api_mode = "up"
    rng = random.Random(3)
    for change in interleave(rng, stories(rng, 5)):
        partner.apply(change)
    r = await h.client.post(f"/api/v1/sources/{source_id}/reconciliations", headers=h.auth(key))
    ok = r.json()
    assert ok["status"] == "succeeded" and (ok["pulled"], ok["missing"]) == (5, 5), ok
    runs = (await h.get(key, f"/api/v1/sources/{source_id}/reconciliations", limit=1)).json()
    assert [x["id"] for x in runs["data"]] == [ok["id"]] and runs["next_cursor"]


async def test_the_scheduler_runs_a_source_on_its_interval(
    harness: Harness, partner: PartnerSimulator
) -> None:
    h = harness
    key = await harness.tenant()
    source_id, connection_id = await setup(h, key, partner)
    r = await put(
        h, key, source_id, connection_id=connection_id, api_url=partner.url, interval_seconds=1
    )
    assert r.status_code == 200

    async def two_scheduled() -> bool:
        runs = (await h.get(key, f"/api/v1/sources/{source_id}/reconciliations")).json()["data"]
        return sum(x["trigger"] == "schedule" and x["status"] == "succeeded" for x in runs) >= 2

    await eventually(two_scheduled, 20)


async def test_cli_sets_runs_and_lists_reconciliations(
    running: Interlink,  # noqa: F811 - the fixture imported above
    partner: PartnerSimulator,
) -> None:
    async with httpx.AsyncClient(base_url=running.settings.public_url) as client:
        r = await client.post(
            "/api/v1/tenants",
            json={"name": "cli"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        key = r.json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        r = await client.post(
            "/api/v1/sources", json={"name": "a", "kit": "pms_alpha"}, headers=auth
        )
        source_id = r.json()["source"]["id"]
        r = await client.post(
            "/api/v1/connections",
            json={
                "partner": "alpha",
                "token_url": partner.token_url,
                "client_id": partner.client_id,
                "client_secret": partner.client_secret,
            },
            headers=auth,
        )
        connection_id = r.json()["id"]
    rng = random.Random(4)
    for change in interleave(rng, stories(rng, 3)):
        partner.apply(change)
    result = await run_cli(
        running,
        key,
        "sources",
        "set-reconciler",
        source_id,
        "--connection",
        connection_id,
        "--api-url",
        partner.url,
        "--interval",
        "600",
    )
    assert result.exit_code == 0, result.output
    result = await run_cli(running, key, "sources", "reconcile", source_id)
    assert result.exit_code == 0, result.output
    run = printed(result.output)
    assert (run["pulled"], run["missing"], run["trigger"]) == (3, 3, "api")
    result = await run_cli(running, key, "sources", "reconciliations", source_id)
    assert [x["id"] for x in printed(result.output)] == [run["id"]]
    result = await run_cli(running, key, "sources", "reconcile", "src_nope")
    assert result.exit_code != 0 and "404" in result.output


async def test_the_simulators_changed_since_listing_pages_through_each_booking_once(
    partner: PartnerSimulator,
) -> None:
    rng = random.Random(5)
    for change in interleave(rng, stories(rng, 23)):
        partner.apply(change)
    seen: list[str] = []
    async with aiohttp.ClientSession() as session:
        form = {"grant_type": "client_credentials"}
        basic = base64.b64encode(f"{partner.client_id}:{partner.client_secret}".encode()).decode()
        auth = {"Authorization": f"Basic {basic}"}
        async with session.post(partner.token_url, data=form, headers=auth) as r:
            access = (await r.json())["access_token"]
        session.headers["Authorization"] = f"Bearer {access}"
        cursor = None
        while True:
            params = {"updated_since": "0", "limit": "5", **({"cursor": cursor} if cursor else {})}
            async with session.get(f"{partner.url}/bookings", params=params) as r:
                assert r.status == 200
                page = await r.json()
            seen += [b["id"] for b in page["data"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(partner.bookings) and len(seen) == 23
        newest = max(b["updated_at"] for b in partner.bookings.values())
        async with session.get(
            f"{partner.url}/bookings", params={"updated_since": repr(newest)}
        ) as r:
            assert len((await r.json())["data"]) >= 1
        async with session.get(f"{partner.url}/bookings", params={"cursor": "x"}) as r:
            assert r.status == 400

"""An erasure job survives SIGKILLs of ``interlink up``: restarted, the job resumes from its
cursor (each batch's redaction commits with the cursor's move) and ends having scanned every
event once and erased exactly the subject's. ``INTERLINK_ERASURE_EVENTS`` sets the size (the
issue's acceptance: 100,000 events, 1,000 of them the subject's; default 3,000 and 300)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from .conftest import Api, InterlinkProcess, wait_for

pytestmark = pytest.mark.e2e

EVENTS = int(os.environ.get("INTERLINK_ERASURE_EVENTS", "3000"))
EMAIL = "carol.erased@example.com"


async def test_an_erasure_job_resumes_after_sigkills(api: Api, interlink: InterlinkProcess) -> None:
    tenant = await api.tenant("acme")
    source = await api.source(tenant)
    theirs: list[str] = []

    async def send(first: int) -> None:
        for n in range(first, EVENTS, 8):
            guest = EMAIL if n % 10 == 0 else f"guest{n}@example.com"
            body = json.dumps({"type": "booking.created", "data": {"guest": {"email": guest}}})
            reply = await api.ingest(source, f"msg_{n}", body.encode())
            assert reply.status == 202, reply.body
            if guest == EMAIL:
                theirs.append(reply.body["id"])

    await asyncio.gather(*(send(i) for i in range(8)))
    rate = max(100, EVENTS // 20)  # about 20 s of work, whatever the size
    job = await api.ok(
        "POST",
        "/api/v1/erasures",
        key=tenant.key,
        json={"path": "data.guest.email", "equals": EMAIL, "rate": rate},
        expect=202,
    )
    path = f"/api/v1/jobs/{job['id']}"
    for pause in (3.0, 4.0):
        await asyncio.sleep(pause)
        progress = await api.ok("GET", path, key=tenant.key)
        assert progress["status"] == "running", progress
        interlink.sigkill()
        await interlink.restart()

    async def finished() -> bool:
        return bool((await api.ok("GET", path, key=tenant.key))["status"] == "succeeded")

    await wait_for(finished, timeout=120, what="the erasure job to finish")
    record = await api.ok("GET", path, key=tenant.key)
    assert record["done"] == EVENTS, record
    assert record["done"] - record["skipped"] == len(theirs) == EVENTS // 10
    for event_id in theirs[:50] + theirs[-50:]:
        event = await api.ok("GET", f"/api/v1/events/{event_id}", key=tenant.key)
        assert event["data"] == {"erased": True}

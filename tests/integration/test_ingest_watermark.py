"""The bound on what ingest acknowledges (domain/watermark.py), in process on the real store:
over the backlog or free-space watermark, ingest and publish answer 503 with Retry-After and a
problem body; what was acknowledged before is delivered; ingest takes events again once the
backlog drains."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from tests.canary import Sweep
from tests.integration.conftest import Harness, eventually, running, settings_for, signed
from tests.integration.test_ingest import make_source

from interlink.storage.backlog import unsettled_deliveries

MAX_BACKLOG = 30


async def test_over_the_backlog_watermark_ingest_refuses_then_delivers_all_it_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep, receiver_factory: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = settings_for(
        tmp_path, ingest_max_backlog=MAX_BACKLOG, ingest_watermark_interval_seconds=0.05
    )
    async with running(settings, canary) as h:
        key = await h.tenant()
        source, secret = await make_source(h, key)
        receiver = await receiver_factory()
        ep = await h.post(key, "/api/v1/endpoints", {"url": receiver.url})
        endpoint_id = ep["endpoint"]["id"]
        receiver.secret = ep["secret"]
        await h.post(
            key, "/api/v1/subscriptions", {"endpoint_id": endpoint_id, "event_types": ["*"]}
        )
        paused = await h.client.patch(
            f"/api/v1/endpoints/{endpoint_id}", json={"status": "paused"}, headers=h.auth(key)
        )
        assert paused.status_code == 200, paused.text

        # The paused endpoint's deliveries pile up until the backlog reaches the watermark.
        accepted: list[str] = []
        refused = None
        for n in range(10 * MAX_BACKLOG):
            body, headers = signed(
                secret, f"msg_{n}", {"type": "booking.created", "data": {"n": n}}
            )
            r = await h.client.post(f"/in/{source}", content=body, headers=headers)
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 202, r.text
            accepted.append(r.json()["id"])
            # Routed (its delivery exists) and measured, so the next request sees the count.
            await eventually(lambda: _unsettled(h, len(accepted)), 10)
            await h.system.watermark.measure()
        assert refused is not None, "the watermark never tripped"
        assert len(accepted) == MAX_BACKLOG
        assert refused.headers["retry-after"] == "30"
        problem = refused.json()
        assert problem["type"].endswith("/over-watermark") and problem["status"] == 503
        assert "ingest_max_backlog" in problem["detail"]

        # The publish API acknowledges too: the same bound.
        published = await h.client.post(
            "/api/v1/events", json={"type": "invoice.paid", "data": {}}, headers=h.auth(key)
        )
        assert published.status_code == 503, published.text
        assert published.headers["retry-after"] == "30"
        assert published.json()["type"].endswith("/over-watermark")
        metrics = (await h.client.get("/metrics")).text
        assert 'interlink_ingest_watermark_tripped{reason="backlog"} 1.0' in metrics
        assert 'reason="watermark"' in metrics  # counted among ingest rejections

        # Resumed: every acknowledged event is delivered, then ingest takes events again.
        resumed = await h.client.patch(
            f"/api/v1/endpoints/{endpoint_id}", json={"status": "active"}, headers=h.auth(key)
        )
        assert resumed.status_code == 200, resumed.text
        await eventually(lambda: len(receiver.received) >= len(accepted), 30)
        assert sorted(w for w, _ in receiver.received) == sorted(accepted)
        await eventually(lambda: h.system.watermark.breach is None, 10)
        body, headers = signed(secret, "msg_after", {"type": "booking.created", "data": {}})
        after = await h.client.post(f"/in/{source}", content=body, headers=headers)
        assert after.status_code == 202, after.text


async def _unsettled(h: Harness, n: int) -> bool:
    return await unsettled_deliveries(h.system.db, 10 * MAX_BACKLOG) == n


async def test_short_of_free_space_ingest_refuses_before_reading_the_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canary: Sweep
) -> None:
    monkeypatch.chdir(tmp_path)
    free_mb = shutil.disk_usage(tmp_path).free // (1024 * 1024)
    settings = settings_for(
        tmp_path,
        ingest_min_free_mb=free_mb + 1024 * 1024,  # a terabyte more than this disk has free
        ingest_disk_path=str(tmp_path),
    )
    async with running(settings, canary) as h:
        key = await h.tenant()
        source, secret = await make_source(h, key)
        body, headers = signed(secret, "msg_1", {"type": "booking.created", "data": {}})
        r = await h.client.post(f"/in/{source}", content=body, headers=headers)
        assert r.status_code == 503 and r.headers["retry-after"] == "30"
        assert "ingest_min_free_mb" in r.json()["detail"]
        # Unknown sources are still told so: the watermark is no cover for a wrong URL.
        missing = await h.client.post("/in/src_nope", content=body, headers=headers)
        assert missing.status_code == 404
        events = await h.get(key, "/api/v1/events")
        assert events.json()["data"] == []
        metrics = (await h.client.get("/metrics")).text
        assert 'interlink_ingest_watermark_tripped{reason="disk"} 1.0' in metrics

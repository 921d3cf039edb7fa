"""The volume monitor on a real database: counts by log position, learns from the log's
history at start-up, sets the gauge and logs the transitions."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from structlog.testing import capture_logs
from tests.integration.conftest import Harness, signed

from interlink.domain.ids import new_id
from interlink.domain.volume import VolumeConfig
from interlink.observability.metrics import Metrics
from interlink.observability.volume_monitor import VolumeMonitor
from interlink.storage.tables import events, sources
from interlink.storage.tenancy import system_scope

DAY = 24 * 3600.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def gauge(metrics: Metrics, source_id: str) -> float | None:
    return metrics.registry.get_sample_value(
        "interlink_source_volume_dropped", {"source_id": source_id}
    )


async def make_source(h: Harness, key: str) -> tuple[str, str]:
    created = await h.post(key, "/api/v1/sources", {"name": "pms"})
    return created["source"]["id"], created["secrets"][0]


async def ingest(h: Harness, source: str, secret: str, n: int, prefix: str) -> None:
    for i in range(n):
        body, headers = signed(secret, f"{prefix}{i}", {"type": "booking.created", "data": {}})
        r = await h.client.post(f"/in/{source}", content=body, headers=headers)
        assert r.status_code == 202


async def test_counts_new_events_per_interval_and_flags_a_drop(harness: Harness) -> None:
    h = harness
    key = await h.tenant()
    source, secret = await make_source(h, key)
    metrics = Metrics()
    # A tiny window and no minimum history, so four minutes tell the story.
    config = VolumeConfig(window_seconds=120, min_expected=5, min_samples=1, min_days=1)
    # 10:00:30 on a Monday: the minutes ahead stay in one hour of the day.
    clock = Clock(1767607230.0)
    monitor = VolumeMonitor(h.system.db, metrics, config, clock=clock)
    await monitor.start()
    assert gauge(metrics, source) == 0

    await ingest(h, source, secret, 30, "a")
    assert await monitor.tick(clock.now + 60) == []  # 10:00 counted: 30 events
    assert monitor.detector.expected(source, clock.now + 60) == 30
    assert await monitor.tick(clock.now + 120) == []  # 10:01: 0, window not judged yet
    with capture_logs() as logs:
        (dropped,) = await monitor.tick(clock.now + 180)  # 10:02: 0 again
    assert dropped.dropped and dropped.source_id == source and dropped.observed == 0
    assert gauge(metrics, source) == 1
    (line,) = [e for e in logs if e["event"] == "source.volume_dropped"]
    assert line["source_id"] == source and line["log_level"] == "warning"
    assert line["tenant_id"].startswith("tnt_") and line["expected"] > 0

    await ingest(h, source, secret, 40, "b")
    with capture_logs() as logs:
        (recovered,) = await monitor.tick(clock.now + 240)
    assert not recovered.dropped and recovered.observed == 40
    assert gauge(metrics, source) == 0
    assert [e["event"] for e in logs] == ["source.volume_recovered"]
    # The same interval twice (a clock step back) is not counted twice.
    assert await monitor.tick(clock.now + 240) == []


async def test_a_deleted_source_is_forgotten(harness: Harness) -> None:
    h = harness
    key = await h.tenant()
    source, _ = await make_source(h, key)
    metrics = Metrics()
    clock = Clock(time.time())
    monitor = VolumeMonitor(h.system.db, metrics, clock=clock)
    await monitor.start()
    await monitor.tick(clock.now + 60)
    assert gauge(metrics, source) == 0
    r = await h.client.delete(f"/api/v1/sources/{source}", headers=h.auth(key))
    assert r.status_code in (200, 204)
    await monitor.tick(clock.now + 120)
    assert gauge(metrics, source) is None
    assert source not in monitor.detector.sources()


async def test_learns_from_the_log_at_start_up(harness: Harness) -> None:
    """Two weeks back, the same weekday, ten events a minute around this time of day, and the
    same in the half hour before now: after a restart the baseline expects them, and the
    silence that follows is a drop within the window."""
    h = harness
    key = await h.tenant()
    source, _ = await make_source(h, key)
    now = time.time()
    await _history(
        h, source, now, ((14, range(-120, 121)), (7, range(-120, 121)), (0, range(-30, 0)))
    )
    metrics = Metrics()
    clock = Clock(now)
    config = VolumeConfig(window_seconds=600)
    monitor = VolumeMonitor(h.system.db, metrics, config, backfill_seconds=15 * DAY, clock=clock)
    await monitor.start()
    expected = monitor.detector.expected(source, now)
    assert expected is not None and 7 <= expected <= 11  # edges of the hours learned are 0
    assert gauge(metrics, source) == 0
    transitions = []
    for minute in range(1, 12):
        transitions += await monitor.tick(now + minute * 60)
    assert [t.dropped for t in transitions] == [True]
    assert gauge(metrics, source) == 1


async def test_a_source_silent_at_start_up_is_dropped_at_once(harness: Harness) -> None:
    """Learned two weeks of this hour, silent for the last ten minutes: dropped on start."""
    h = harness
    key = await h.tenant()
    source, _ = await make_source(h, key)
    now = time.time()
    await _history(
        h, source, now, ((14, range(-120, 121)), (7, range(-120, 121)), (0, range(-60, -10)))
    )
    metrics = Metrics()
    monitor = VolumeMonitor(
        h.system.db,
        metrics,
        VolumeConfig(window_seconds=600),
        backfill_seconds=15 * DAY,
        clock=Clock(now),
    )
    with capture_logs() as logs:
        await monitor.start()
    assert monitor.detector.is_dropped(source)
    assert gauge(metrics, source) == 1
    assert [e["event"] for e in logs] == ["source.volume_dropped"]


async def _history(
    h: Harness, source: str, now: float, spec: tuple[tuple[int, range], ...]
) -> None:
    """Ten events a minute for the given minutes (relative to now) of the given days back;
    the source made before all of it, and one much older event outside what is learned.
    Written straight to the tables, so in the system scope (PostgreSQL's row-level security)."""
    with system_scope("test: the log's history"):
        await _write_history(h, source, now, spec)


async def _write_history(
    h: Harness, source: str, now: float, spec: tuple[tuple[int, range], ...]
) -> None:
    async with h.system.db.read() as conn:
        tenant = (
            await conn.execute(sa.select(sources.c.tenant_id).where(sources.c.id == source))
        ).scalar_one()
    rows: list[dict[str, Any]] = []
    for days_back, minutes in spec:
        minute0 = (now - days_back * DAY) // 60 * 60
        for m in minutes:
            for k in range(10):
                rows.append(
                    {
                        "id": new_id("event"),
                        "tenant_id": tenant,
                        "source_id": source,
                        "idempotency_key": f"{days_back}-{m}-{k}",
                        "type": "booking.created",
                        "key": None,
                        "received_at": minute0 + m * 60 + k,
                        "occurred_at": None,
                        "data": b"{}",
                        "raw": b"{}",
                        "headers": {},
                    }
                )
    old = {**rows[0], "id": new_id("event"), "idempotency_key": "old", "received_at": 1.0}
    async with h.system.db.write() as conn:
        await conn.execute(events.insert(), [old])
        await conn.execute(events.insert(), rows)
        await conn.execute(
            sources.update().where(sources.c.id == source).values(created_at=now - 15 * DAY)
        )

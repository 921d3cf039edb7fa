"""Nothing in a hot path scans a table (PostgreSQL): every statement the storage code sends for
the router's read after its cursor, ingest's dedupe and append, the dispatcher's claim and
settle, a pull consumer's claim, probe and ack, an event by id, the retry of failed fetches,
and each of the API's list filters is recorded as it runs on tables of tens of thousands of
rows (ANALYZEd), then EXPLAINed with its own parameters; no plan may hold a sequential scan
of events, deliveries, attempts (or a partition of them), idempotency keys or the quarantine
that has rows.

Skipped without INTERLINK_TEST_POSTGRES_URL, a failure in CI.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from tests.conftest import app_url, connect

from interlink.domain.delivery import AttemptOutcome, AttemptResult, decide
from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.domain.retry import RetryPolicy
from interlink.partners.pipeline import Stage
from interlink.storage import migrate, partitions
from interlink.storage.database import Database
from interlink.storage.deliveries import Deliveries, DeliveryFilter
from interlink.storage.event_log import EventFilter, EventLog
from interlink.storage.normalization import NormalizationStore
from interlink.storage.pagination import Page
from interlink.storage.ports import Settled
from interlink.storage.quarantine import Quarantine, QuarantineFilter
from interlink.storage.stream_log import StreamLog
from interlink.storage.tenancy import system_scope

ROWS = 40_000
TENANT = "tnt_plans"
SCANNED = ("events", "deliveries", "attempts", "idempotency_keys", "quarantine")

_POPULATE = """
SELECT set_config('interlink.scope', 'system', false);
INSERT INTO tenants (id, name, created_at) VALUES ('tnt_plans', 'plans', 0), ('tnt_other', 'o', 0);
INSERT INTO endpoints (id, tenant_id, url, description, secret, status, retry_schedule,
                       timeout_seconds, created_at, updated_at)
  SELECT 'ep_' || i, CASE WHEN i % 2 = 0 THEN 'tnt_plans' ELSE 'tnt_other' END,
         'https://example.com/' || i, '', 'whsec_x', 'active', '[1, 2]', 5, 0, 0
  FROM generate_series(1, 20) i;
-- Half the log in the history partition, half in the first daily partition.
INSERT INTO events (id, tenant_id, source_id, idempotency_key, type, key, received_at, data,
                    raw, headers)
  SELECT 'evt_' || lpad(i::text, 10, '0'),
         CASE WHEN i % 2 = 0 THEN 'tnt_plans' ELSE 'tnt_other' END,
         'src_' || (i % 10), 'k' || i, 'type.' || (i % 25), 'key' || (i % 500),
         CASE WHEN i <= $1 / 2 THEN $2 - 86400 + i ELSE $3 + i END, '{}', '{}', '{}'
  FROM generate_series(1, $1) i;
INSERT INTO idempotency_keys (source_id, idempotency_key, event_id, tenant_id, received_at)
  SELECT source_id, idempotency_key, id, tenant_id, received_at FROM events;
INSERT INTO deliveries (id, tenant_id, event_id, event_seq, endpoint_id, key, endpoint_kind,
                        status, attempt_count, next_attempt_at, created_at, updated_at)
  SELECT 'dlv_' || lpad(e.seq::text, 10, '0'), e.tenant_id, e.id, e.seq,
         'ep_' || (1 + e.seq % 20), CASE WHEN e.seq % 20 = 19 THEN e.key END,
         CASE WHEN e.seq % 20 = 19 THEN 'pull' ELSE 'push' END,
         CASE WHEN e.seq % 200 = 0 THEN 'pending' WHEN e.seq % 7 = 0 THEN 'dead'
              ELSE 'succeeded' END, 1,
         CASE WHEN e.seq % 200 = 0 THEN e.received_at END, e.received_at, e.received_at
  FROM events e;
INSERT INTO attempts (id, tenant_id, delivery_id, number, started_at, latency_ms, outcome)
  SELECT 'att_' || d.id, d.tenant_id, d.id, 1, d.created_at, 1, 'failed' FROM deliveries d;
INSERT INTO cursors (name, position) VALUES ('router', $1 - 100);
-- An ordered pull endpoint (ep_20: its deliveries are of kind pull, with keys, above) with a
-- few waiting: its claim walks its keys for heads.
UPDATE endpoints SET kind = 'pull', ordering = 'ordered' WHERE id = 'ep_20';
UPDATE deliveries SET status = 'pending', next_attempt_at = created_at
  WHERE endpoint_id = 'ep_20' AND event_seq % 380 = 19;
-- Mostly resolved entries; one in fifty still open, waiting for a fetch to be retried.
INSERT INTO quarantine (id, tenant_id, source_id, event_id, stage, reason, created_at,
                        resolved_at, resolution)
  SELECT 'qtn_' || lpad(e.seq::text, 10, '0'), e.tenant_id, e.source_id, e.id,
         CASE WHEN e.seq % 3 = 0 THEN 'fetch_failed' ELSE 'mapping' END, 'why', e.received_at,
         CASE WHEN e.seq % 50 = 0 THEN NULL ELSE e.received_at END,
         CASE WHEN e.seq % 50 = 0 THEN NULL ELSE 'reprocessed' END
  FROM events e;
"""


def _nodes(plan: Any) -> Iterator[dict[str, Any]]:
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for value in plan.values():
            yield from _nodes(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from _nodes(value)


async def test_no_hot_path_or_list_query_scans_a_table(postgres_database: str) -> None:
    await asyncio.to_thread(migrate.upgrade, postgres_database)
    first_day = partitions.day_start(time.time()) + 2 * partitions.DAY
    owner = await connect(postgres_database)
    try:
        for statement in _POPULATE.strip().split(";\n"):
            values = (ROWS, time.time(), first_day)
            await owner.execute(
                statement,
                *values[: max(int(c) for c in "0123" if f"${c}" in statement or c == "0")],
            )
        await owner.execute("ANALYZE")
        rows = {
            r["relname"]: r["reltuples"]
            for r in await owner.fetch("SELECT relname, reltuples FROM pg_class")
        }
    finally:
        await owner.close()

    db = Database(app_url(postgres_database))
    recorded: list[tuple[str, tuple[Any, ...]]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, many: bool
    ) -> None:
        if any(t in statement for t in SCANNED):  # a batch: its first row's parameters
            recorded.append((statement, tuple((parameters[0] if many else parameters) or ())))

    sa.event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        with system_scope("test: query plans"):
            await _exercise(db, first_day)
    finally:
        sa.event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        await db.close()
    assert len(recorded) >= 15

    owner = await connect(postgres_database)
    scans: list[str] = []
    try:
        await owner.execute("SELECT set_config('interlink.scope', 'system', false)")
        for statement, parameters in recorded:
            (plan,) = json.loads(
                await owner.fetchval("EXPLAIN (FORMAT JSON) " + statement, *parameters)
            )
            for node in _nodes(plan["Plan"]):
                relation = node.get("Relation Name", "")
                if (
                    node["Node Type"] == "Seq Scan"
                    and relation.startswith(SCANNED)
                    and rows.get(relation, 0) > 100
                ):
                    scans.append(f"{relation} in: {statement}")
                # A stream's replay reads its tenant's rows by position, not every tenant's
                # between two positions, filtered (migration 0017).
                if (
                    "seq <= " in statement
                    and "tnt_rare" in parameters
                    and "Index Name" in node
                    and "tenant_id" not in node.get("Index Cond", "")
                ):
                    scans.append(f"{node['Index Name']} walks every tenant in: {statement}")
    finally:
        await owner.close()
    assert scans == []


async def _exercise(db: Database, first_day: float) -> None:
    log, found = EventLog(db), Deliveries(db)
    now = time.time()
    # The router's read after its cursor; ingest's append with its dedupe (a new key, a
    # duplicate); an event by id.
    assert len(await log.read_after(ROWS - 100, 100)) == 100
    # A stream's replay of one tenant's positions, the log's bounds, the hub's read. The replay
    # is of a tenant with few events among many (here none): by position alone it would walk
    # every tenant's rows to find its own.
    streams = StreamLog(db)
    assert await streams.replay("tnt_rare", ROWS // 2, ROWS, [], [], 500) == []
    assert (await streams.bounds()).last == ROWS
    assert len(await streams.read_after(ROWS - 100, 100)) == 100
    fresh = Event(
        id=new_id("event"),
        tenant_id=TENANT,
        source_id="src_1",
        idempotency_key="brand-new",
        type="type.1",
        key=None,
        received_at=now,
        occurred_at=None,
        data=b"{}",
        raw=b"{}",
        headers={},
    )
    duplicate = msgspec_replace(fresh, id=new_id("event"), source_id="src_2", idempotency_key="k2")
    appended = await log.append([fresh, duplicate])
    assert [a.duplicate for a in appended] == [False, True]
    assert await log.get(TENANT, "evt_0000000002") is not None
    # The dispatcher's claim of due deliveries and its settlement.
    claimed = await found.claim_due(now + 10 * partitions.DAY, 20, 60)
    assert claimed
    ok = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)
    await found.settle([Settled(c, now, ok, decide(0, ok, RetryPolicy())) for c in claimed])
    # A pull consumer's claim, the long polls' probe, and an ack.
    later = now + 10 * partitions.DAY
    assert await found.claimable(["ep_20", "ep_1"], later) == {"ep_20"}
    pulled = await found.claim_due(later, 20, 60, "ep_20")
    assert pulled
    held = await found.held(pulled[0].tenant_id, pulled[0].delivery_id)
    assert held is not None
    assert await found.settle_held(
        Settled(held.claimed, now, ok, decide(0, ok, RetryPolicy())), now
    )
    # The API's list filters.
    page = Page(limit=50)
    for where in (
        EventFilter(),
        EventFilter(type="type.3"),
        EventFilter(source_id="src_4"),
        EventFilter(received_after=first_day + 10, received_before=first_day + 500),
    ):
        await log.find(TENANT, where, page)
    for dwhere in (
        DeliveryFilter(),
        DeliveryFilter(status="dead"),
        DeliveryFilter(status="succeeded"),
        DeliveryFilter(endpoint_id="ep_4"),
        DeliveryFilter(event_id="evt_0000000002"),
        DeliveryFilter(type="type.2"),
    ):
        await found.find(TENANT, dwhere, page)
    assert await found.attempts(TENANT, "dlv_0000000002")
    # The stage's retry of failed fetches, and the quarantine's list filters.
    assert await NormalizationStore(db).open_entries(Stage.FETCH.value, 50)
    for qwhere in (
        QuarantineFilter(),
        QuarantineFilter(status="open"),
        QuarantineFilter(stage=Stage.FETCH.value),
        QuarantineFilter(event_id="evt_0000000002"),
    ):
        await Quarantine(db).find(TENANT, qwhere, page)


def msgspec_replace(event: Event, **changes: Any) -> Event:
    import msgspec

    return msgspec.structs.replace(event, **changes)

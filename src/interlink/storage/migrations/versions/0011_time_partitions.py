"""Growth: events and attempts partitioned by day (PostgreSQL), dedupe in its own table, list
indexes

On PostgreSQL ``events`` becomes a table partitioned by range of ``received_at`` and
``attempts`` one by ``started_at`` (storage/partitions.py), so retention drops whole days
instead of deleting rows. A partitioned table cannot have a unique constraint without its
partition key, so ingest's dedupe moves to ``idempotency_keys`` (source, partner event id →
event id, with its tenant and ``received_at``): exact across partitions. On SQLite, which cannot
partition, the unique constraint on events stays and retention deletes in batches. The API's
event list filters get indexes (by type, by source, by time) on PostgreSQL only: on SQLite the
three would cost ingest a fifth of its append rate (bench/append_throughput.py), and its event
lists walk ``ix_events_tenant_id`` newest first. Deliveries need none: by status they are
served by the dead-letter partial indexes or walk ``ix_deliveries_tenant_id``.

Safe on a live database (PostgreSQL), step by step, and the locks each takes:

1. (one transaction) create ``idempotency_keys`` and the empty partitioned parents
   ``events_partitioned``, ``attempts_partitioned`` with their indexes; rename the two plain
   tables' clashing index names. Catalog only: ACCESS EXCLUSIVE on the new tables, SHARE UPDATE
   EXCLUSIVE on the renamed indexes, an instant each.
2. (autocommit) ``CREATE INDEX CONCURRENTLY`` on the plain ``events`` for each index of the
   parent it lacks, so the attach adopts them instead of building them under its lock.
   SHARE UPDATE EXCLUSIVE: reads and writes go on.
3. (autocommit) ``CHECK (received_at < B) NOT VALID`` on the plain tables, B the start of the
   day after tomorrow (UTC): ACCESS EXCLUSIVE for an instant, no scan. ``VALIDATE CONSTRAINT``
   then scans under SHARE UPDATE EXCLUSIVE: reads and writes go on.
4. (one statement) copy the keys of the existing events into ``idempotency_keys``: ACCESS
   SHARE on events, writes go on; the rows written meanwhile are caught in step 5.
5. (one transaction, short) ACCESS EXCLUSIVE on ``events`` and ``attempts`` for as long as it
   takes to copy the keys of events appended since step 4 (seconds' worth of rows), rename
   the plain tables to ``*_history`` and the parents to their names, ``ATTACH PARTITION`` the
   history FROM (MINVALUE) TO (B) (no scan: step 3's check proves the bound; indexes adopted:
   step 2), hand the ``seq`` sequence to the new ``events.seq`` (so the log position goes on
   where it was and a dropped history partition does not take it along), create the daily
   partitions up to ``AHEAD_DAYS`` ahead and the future partition, and put the tenant policy on
   the parents and every partition.

Appends of a process still running the previous version fail after step 5 (their
``ON CONFLICT`` names a constraint the partitioned table cannot have): they answer 503 and the
partner retries, so nothing acknowledged is lost; start the new version's processes (they
migrate at start-up) and stop the old ones.

The downgrade copies the partitions back into one plain table (a table rewrite: it is for
development databases and an emergency, not for a live large one).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from interlink.storage import partitions, rls

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.Float(precision=53)
_SYSTEM = f"SELECT set_config('{rls.SCOPE_SETTING}', '{rls.SYSTEM}', true)"

# Indexes of the partitioned events, each also built on the plain table before it is attached.
_EVENT_INDEXES = {
    "ix_events_seq": "(seq)",  # the router reads after its cursor
    "ix_events_id": "(id)",  # an event by id: the API, the dispatcher's claim
    "ix_events_tenant_id": "(tenant_id, id)",  # a tenant's events, newest first
    "ix_events_tenant_type": "(tenant_id, type, id)",  # ... of a type
    "ix_events_tenant_source": "(tenant_id, source_id, id)",  # ... of a source
    "ix_events_tenant_received": "(tenant_id, received_at)",  # ... received in a time range
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: nothing to partition (retention deletes in batches), no new index
    bound = partitions.day_start(time.time()) + 2 * partitions.DAY

    # 1. New tables, empty.
    op.create_table(
        "idempotency_keys",
        sa.Column("source_id", sa.String(40), primary_key=True),
        sa.Column("idempotency_key", sa.String(300), primary_key=True),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("received_at", Time, nullable=False),
    )
    rls.protect("idempotency_keys")
    op.execute("ALTER INDEX ix_events_tenant_id RENAME TO events_history_tenant_id")
    op.execute("ALTER INDEX ix_attempts_delivery RENAME TO attempts_history_delivery")
    for table, column in partitions.PARTITIONED.items():
        op.execute(
            f"CREATE TABLE {table}_partitioned (LIKE {table} INCLUDING DEFAULTS)"
            f" PARTITION BY RANGE ({column})"
        )
    for name, columns in _EVENT_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON events_partitioned {columns}")
    op.execute("CREATE INDEX ix_attempts_delivery ON attempts_partitioned (delivery_id, number)")

    with op.get_context().autocommit_block():
        # Session-wide on the owner's migration connection: each statement below is a
        # transaction of its own, and row-level security binds the owner too.
        op.execute(rls.SYSTEM_SESSION)
        # 2. The parent's indexes on the plain table, without blocking its writers.
        for name, columns in _EVENT_INDEXES.items():
            if name != "ix_events_tenant_id":  # the plain table has that one
                op.execute(
                    f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_0011 ON events {columns}"
                )
        # 3. The history partition's bound, proven without a long lock.
        for table, column in partitions.PARTITIONED.items():
            check = f"{table}_history_bound"
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {check}")
            op.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({column} < {bound!r}) NOT VALID"
            )
            op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {check}")
        # 4. The keys of the events there are, while appends go on.
        bind = op.get_bind()
        copied = bind.execute(sa.text("SELECT coalesce(max(seq), 0) FROM events")).scalar_one()
        _copy_keys(after=False, seq=copied)

    # 5. The swap, in one transaction (the migration's last).
    op.execute("LOCK TABLE events, attempts IN ACCESS EXCLUSIVE MODE")
    _copy_keys(after=True, seq=copied)
    for table in partitions.PARTITIONED:
        history = partitions.history_name(table)
        op.execute(f"ALTER TABLE {table} RENAME TO {history}")
        op.execute(f"ALTER TABLE {table}_partitioned RENAME TO {table}")
        op.execute(
            f"ALTER TABLE {table} ATTACH PARTITION {history}"
            f" FOR VALUES FROM (MINVALUE) TO ({bound!r})"
        )
        op.execute(f"ALTER TABLE {history} DROP CONSTRAINT {table}_history_bound")
        for day in partitions.days_between(bound, bound + partitions.AHEAD_DAYS * partitions.DAY):
            for statement in partitions.create_day_statements(table, day):
                op.execute(statement)
        end = bound + partitions.AHEAD_DAYS * partitions.DAY
        for statement in partitions.create_future_statements(table, end):
            op.execute(statement)
        rls.protect(table)
        rls.protect(history)
    op.execute("ALTER SEQUENCE events_seq_seq OWNED BY events.seq")
    op.execute(f"RESET {rls.SCOPE_SETTING}")


_COPY_KEYS = (
    "INSERT INTO idempotency_keys (source_id, idempotency_key, event_id, tenant_id, received_at)"
    " SELECT source_id, idempotency_key, id, tenant_id, received_at FROM events"
)


def _copy_keys(*, after: bool, seq: int) -> None:
    where = " WHERE seq > :seq" if after else " WHERE seq <= :seq"
    op.get_bind().execute(sa.text(_COPY_KEYS + where + " ON CONFLICT DO NOTHING"), {"seq": seq})


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_SYSTEM)
    for table in partitions.PARTITIONED:
        op.execute(f"CREATE TABLE {table}_plain (LIKE {table} INCLUDING DEFAULTS)")
        op.execute(f"INSERT INTO {table}_plain SELECT * FROM {table}")  # noqa: S608
    op.execute("ALTER SEQUENCE events_seq_seq OWNED BY events_plain.seq")
    for table in partitions.PARTITIONED:
        op.execute(f"DROP TABLE {table}")  # and its partitions
        op.execute(f"ALTER TABLE {table}_plain RENAME TO {table}")
        rls.protect(table)
    op.create_primary_key("events_pkey", "events", ["seq"])
    op.create_unique_constraint("events_id_key", "events", ["id"])
    op.create_unique_constraint(
        "uq_events_source_idempotency", "events", ["source_id", "idempotency_key"]
    )
    op.create_index("ix_events_tenant_id", "events", ["tenant_id", "id"])
    op.create_primary_key("attempts_pkey", "attempts", ["id"])
    op.create_index("ix_attempts_delivery", "attempts", ["delivery_id", "number"])
    op.drop_table("idempotency_keys")

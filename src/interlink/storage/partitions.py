"""Time partitions of the event log and the attempts (PostgreSQL): their names, bounds and DDL.

``events`` is partitioned by range of ``received_at``, ``attempts`` by ``started_at``, one
partition a day (UTC). Every time has a partition, so no insert can fail for want of one: the
first partition, ``<table>_history``, reaches back to MINVALUE (it is the table as it was
before partitioning, migration 0011), and the last, ``<table>_future``, on to MAXVALUE. Days are
made ahead of time by splitting the future partition (``extend_statements``); a default
partition is avoided because ``DETACH PARTITION … CONCURRENTLY`` refuses a table that has one.

These are statement builders, without I/O: migration 0011 runs them on its connection,
``storage/maintenance.py`` on the running system's. Each partition gets the tenant policy too
(``rls.protect_statements``): a query naming a partition is checked against the partition's
policies, not its parent's, so a partition without one would show every tenant's rows.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from interlink.storage import rls

DAY = 86_400.0
# How far ahead of today the daily partitions are made (the maintenance task tops it up).
AHEAD_DAYS = 7
# The time column each partitioned table is split by.
PARTITIONED: dict[str, str] = {"events": "received_at", "attempts": "started_at"}

_BOUND = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lower: float  # -inf: MINVALUE
    upper: float  # inf: MAXVALUE
    detach_pending: bool = False  # a DETACH … CONCURRENTLY was interrupted


def day_start(t: float) -> float:
    return math.floor(t / DAY) * DAY


def history_name(table: str) -> str:
    return f"{table}_history"


def future_name(table: str) -> str:
    return f"{table}_future"


def day_name(table: str, start: float) -> str:
    return f"{table}_p{dt.datetime.fromtimestamp(start, dt.UTC):%Y%m%d}"


def _literal(bound: float) -> str:
    if bound == -math.inf:
        return "MINVALUE"
    if bound == math.inf:
        return "MAXVALUE"
    return repr(float(bound))


def _value(text: str) -> float:
    text = text.strip().strip("'")
    if text == "MINVALUE":
        return -math.inf
    if text == "MAXVALUE":
        return math.inf
    return float(text)


def parse_bound(expression: str) -> tuple[float, float]:
    """The bounds of ``pg_get_expr(relpartbound, oid)``: ``FOR VALUES FROM ('1') TO (MAXVALUE)``."""
    found = _BOUND.search(expression)
    if found is None:
        raise ValueError(f"not a range partition bound: {expression}")
    return _value(found.group(1)), _value(found.group(2))


def create_day_statements(table: str, start: float) -> list[str]:
    name = day_name(table, start)
    return [
        f"CREATE TABLE {name} PARTITION OF {table}"
        f" FOR VALUES FROM ({_literal(start)}) TO ({_literal(start + DAY)})",
        *rls.protect_statements(name),
    ]


def create_future_statements(table: str, start: float) -> list[str]:
    name = future_name(table)
    return [
        f"CREATE TABLE {name} PARTITION OF {table}"
        f" FOR VALUES FROM ({_literal(start)}) TO (MAXVALUE)",
        *rls.protect_statements(name),
    ]


def days_between(start: float, end: float) -> list[float]:
    return [start + i * DAY for i in range(max(0, round((end - start) / DAY)))]


def extend_statements(table: str, future_from: float, until: float) -> list[str]:
    """Day partitions for [future_from, until) cut out of the future partition, in one
    transaction (and its ACCESS EXCLUSIVE lock on the table, held for milliseconds: the future
    partition is empty unless a clock ran ahead, and its few rows move to their days)."""
    column = PARTITIONED[table]
    future = future_name(table)
    check = f"{future}_bound"
    return [
        f"ALTER TABLE {table} DETACH PARTITION {future}",
        *[s for day in days_between(future_from, until) for s in create_day_statements(table, day)],
        # Table and column names are this module's constants, the bound a float.
        f"INSERT INTO {table} SELECT * FROM {future} WHERE {column} < {_literal(until)}",  # noqa: S608
        f"DELETE FROM {future} WHERE {column} < {_literal(until)}",  # noqa: S608
        f"ALTER TABLE {future} DROP CONSTRAINT IF EXISTS {check}",
        # Proves the bound, so the attach skips its scan of the partition.
        f"ALTER TABLE {future} ADD CONSTRAINT {check} CHECK ({column} >= {_literal(until)})",
        f"ALTER TABLE {table} ATTACH PARTITION {future}"
        f" FOR VALUES FROM ({_literal(until)}) TO (MAXVALUE)",
    ]


LAYOUT = """
    SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
           i.inhdetachpending AS detach_pending
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = p.relnamespace
    WHERE n.nspname = current_schema() AND p.relname = :table
"""

# Partitions a retention pass detached but did not drop (it was stopped in between).
DETACHED = """
    SELECT c.relname AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition
      AND (c.relname LIKE :pattern OR c.relname = :history)
"""


def detached_pattern(table: str) -> str:
    return table + "\\_p%"

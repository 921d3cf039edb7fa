"""A pull endpoint's claim candidates, as SQL both adapters run (SQLAlchemy's ``text`` on
PostgreSQL and SQLite, the SQLite driver as is): the due deliveries of one endpoint, earliest
due first, and on an ordered endpoint only each key's head.

The push claim finds heads by testing each due delivery for a live one of its key before it
(``Deliveries._head``), which walks every due delivery behind the heads: on a pull endpoint a
backlog waits for its consumers, so every claim paid for all of it. Here the heads are found
from the keys instead: the endpoint's keys are walked in ``ix_deliveries_key_head`` (one probe
a key, a recursive query), and each key's head is its first live delivery there (one probe
more). A claim costs two probes per key with live deliveries, however deep each key's backlog.
Keyless deliveries of an ordered endpoint carry no order; they are read under ``key IS NULL``
in the same index.

Parameters: ``:endpoint``, ``:now``, ``:limit``; rows: (delivery id, endpoint id).
"""

from __future__ import annotations

from interlink.storage.ports import DUE_STATUSES

_DUE = ", ".join(f"'{s}'" for s in DUE_STATUSES)
# ix_deliveries_key_head's predicate, word for word: SQLite uses a partial index only for a
# query that states its condition.
_LIVE = "p.status IN ('pending', 'scheduled', 'in_flight', 'dead')"
_OF_ENDPOINT = f"p.endpoint_id = :endpoint AND {_LIVE}"

_UNORDERED = (
    "SELECT d.id, d.endpoint_id FROM deliveries d"  # noqa: S608 - constants, parameters bound
    f" WHERE d.endpoint_id = :endpoint AND d.status IN ({_DUE}) AND d.endpoint_kind = 'pull'"
    " AND d.next_attempt_at <= :now ORDER BY d.next_attempt_at LIMIT :limit"
)

_ORDERED = (
    "WITH RECURSIVE keys(key) AS ("  # noqa: S608 - constants, parameters bound
    f" SELECT (SELECT p.key FROM deliveries p WHERE {_OF_ENDPOINT} AND p.key IS NOT NULL"
    " ORDER BY p.key LIMIT 1)"
    " UNION ALL"
    f" SELECT (SELECT p.key FROM deliveries p WHERE {_OF_ENDPOINT} AND p.key > keys.key"
    " ORDER BY p.key LIMIT 1) FROM keys WHERE keys.key IS NOT NULL"
    "), heads(id) AS ("
    f" SELECT (SELECT p.id FROM deliveries p WHERE {_OF_ENDPOINT}{{skip_dead}}"
    " AND p.key = keys.key ORDER BY p.event_seq LIMIT 1) FROM keys WHERE keys.key IS NOT NULL"
    " UNION ALL"
    f" SELECT p.id FROM deliveries p WHERE {_OF_ENDPOINT} AND p.key IS NULL"
    ")"
    " SELECT d.id, d.endpoint_id FROM deliveries d WHERE {heads}"
    f" AND d.status IN ({_DUE}) AND d.next_attempt_at <= :now"
    " ORDER BY d.next_attempt_at LIMIT :limit"
)
# The heads drive the read, each by its primary key; never the endpoint's due deliveries tested
# against the heads (which a planner misled by stale statistics picked on PostgreSQL: a join
# of every due delivery with every head). ARRAY(...) is an init plan there, read once.
_HEADS = {"postgresql": "d.id = ANY(ARRAY(SELECT id FROM heads))", "sqlite": "d.id IN heads"}
# The endpoint as a claim needs it: None unless an active pull endpoint.
ENDPOINT = (
    "SELECT ordering, on_head_dead FROM endpoints WHERE id = :endpoint AND kind = 'pull'"
    " AND status = 'active' AND deleted_at IS NULL"
)


def candidates(ordering: str, on_head_dead: str, *, postgres: bool, lock: bool = False) -> str:
    """The claim's candidates on an endpoint of this ``ordering`` and ``on_head_dead``;
    ``lock`` (PostgreSQL): held until the transaction ends, those another claim holds skipped."""
    if ordering == "ordered":
        # With on_head_dead = skip a dead delivery heads nothing: the next live one does.
        skip = " AND p.status <> 'dead'" if on_head_dead == "skip" else ""
        sql = _ORDERED.format(skip_dead=skip, heads=_HEADS["postgresql" if postgres else "sqlite"])
    else:
        sql = _UNORDERED
    return sql + (" FOR UPDATE OF d SKIP LOCKED" if lock else "")

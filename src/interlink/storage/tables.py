"""The schema, as SQLAlchemy Core tables. Alembic migrations create it; this names it for queries.

Times are epoch seconds (double precision): one representation on every backend, cheap to
compare in the dispatcher's claim query.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Time = sa.Float(precision=53)

_HEADS = "status IN ('pending', 'scheduled', 'in_flight', 'dead')"
_DUE = "status IN ('pending', 'scheduled', 'in_flight')"

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", Time, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("revoked_at", Time),
    sa.Column("label", sa.String(200)),  # for people to tell keys apart
    sa.Column("expires_at", Time),  # none: never
    sa.Column("last_used_at", Time),  # to the minute (storage/api_keys.py)
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("verifier", sa.String(40), nullable=False),
    sa.Column("verifier_config", sa.JSON, nullable=False),
    # The ciphertext of its secrets (a JSON string; storage/sealed_secrets.py): never plaintext
    # since migration 0014.
    sa.Column("secrets", sa.JSON, nullable=False),
    sa.Column("envelope", sa.JSON, nullable=False),
    sa.Column("max_body_bytes", sa.Integer, nullable=False),
    sa.Column("tolerance_seconds", sa.Integer, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("deleted_at", Time),
    sa.Column("kit", sa.String(100)),  # the partner kit that normalizes its events, if any
    sa.Index("ix_sources_tenant", "tenant_id", "id"),
)

endpoints = sa.Table(
    "endpoints",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("description", sa.String(500), nullable=False),
    # The ciphertext of its signing secrets (storage/sealed_secrets.py), since migration 0014.
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("disabled_reason", sa.String(500)),
    sa.Column("retry_schedule", sa.JSON, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=False),
    sa.Column("ordering", sa.String(16), nullable=False, server_default="unordered"),
    sa.Column("on_head_dead", sa.String(8), nullable=False, server_default="wait"),
    sa.Column("concurrency", sa.Integer, nullable=False, server_default="32"),
    sa.Column("rate_limit", sa.JSON(none_as_null=True)),  # domain.rate_limit.RateLimit, or NULL
    # domain.circuit_breaker.BreakerPolicy, or NULL for its defaults
    sa.Column("breaker", sa.JSON(none_as_null=True)),
    sa.Column("disable_after_seconds", sa.Float),  # none: the default of domain.endpoint_health
    # push: the dispatcher sends to url; pull: consumers claim (url '', domain.models.EndpointKind)
    sa.Column("kind", sa.String(8), nullable=False, server_default="push"),
    # kafka: where the dispatcher produces (domain.kafka.KafkaTarget as JSON); NULL otherwise
    sa.Column("kafka", sa.JSON(none_as_null=True)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("deleted_at", Time),
    sa.Index("ix_endpoints_tenant", "tenant_id", "id"),
)

# The dispatchers' shared state of each endpoint (domain.lanes.LaneState as JSON), apart from
# its configuration because it is written on every claim and settlement.
endpoint_lanes = sa.Table(
    "endpoint_lanes",
    metadata,
    sa.Column("endpoint_id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("breaker", sa.String(16), nullable=False),  # its status, readable by SQL
    sa.Column("updated_at", Time, nullable=False),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("endpoint_id", sa.String(40), sa.ForeignKey("endpoints.id"), nullable=False),
    sa.Column("event_types", sa.JSON, nullable=False),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("deleted_at", Time),
    sa.Column("filter", sa.Text),  # CEL as written, segments unexpanded (domain/filters.py)
    sa.Column("transform", sa.Text),  # JSONata (domain/transforms.py)
    sa.Index("ix_subscriptions_tenant", "tenant_id", "id"),
)

# Named CEL predicates a tenant's filters refer to as segment("name") (migration 0019).
segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("expression", sa.Text, nullable=False),
    sa.Column("description", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.UniqueConstraint("tenant_id", "name", name="uq_segments_tenant_name"),
)

events = sa.Table(
    "events",
    metadata,
    # The log position: dense, monotonic, what the router's cursor points at.
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("idempotency_key", sa.String(300), nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("key", sa.String(300)),
    sa.Column("received_at", Time, nullable=False),
    sa.Column("occurred_at", Time),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("trace_context", sa.String(100)),
    # 'partner': as received; 'normalized': made by the source's partner kit from the event
    # ``derived_from``, validated against version ``schema_version`` of its type;
    # 'reconciliation': made by the reconciliation run ``derived_from`` (``rcn_…``).
    sa.Column("origin", sa.String(16), nullable=False, server_default="partner"),
    sa.Column("derived_from", sa.String(40)),
    sa.Column("schema_version", sa.Integer),
    # SQLite: ingest's dedupe. PostgreSQL partitions events by day (storage/partitions.py),
    # which no unique constraint without received_at survives: idempotency_keys dedupes there.
    sa.UniqueConstraint("source_id", "idempotency_key", name="uq_events_source_idempotency"),
    sa.Index("ix_events_tenant_id", "tenant_id", "id"),
    # The API's list filters (newest first), on PostgreSQL: on SQLite they would cost ingest a
    # fifth of its append rate, and its lists walk ix_events_tenant_id (migration 0011).
    sa.Index("ix_events_tenant_type", "tenant_id", "type", "id"),
    sa.Index("ix_events_tenant_source", "tenant_id", "source_id", "id"),
    sa.Index("ix_events_tenant_received", "tenant_id", "received_at"),
)

# PostgreSQL only: each (source, partner event id) the log holds, and the event stored under it.
# Exact across the partitions of events; a partition's keys are dropped with it
# (storage/maintenance.py). Also what finds the canonical events made from a partner's event.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("idempotency_key", sa.String(300), primary_key=True),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("received_at", Time, nullable=False),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("event_seq", sa.BigInteger, nullable=False),
    sa.Column("endpoint_id", sa.String(40), nullable=False),
    sa.Column("key", sa.String(300)),  # the event's ordering key
    # its endpoint's kind ("push" or "pull"), which never changes: the claims' indexes split on it
    sa.Column("endpoint_kind", sa.String(8), nullable=False, server_default="push"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt_count", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", Time),
    sa.Column("lease_until", Time),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    # The subscription that routed it: its transformation shapes what is sent (0019).
    sa.Column("subscription_id", sa.String(40)),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_deliveries_event_endpoint"),
    # Due deliveries by kind (migration 0021): the dispatcher's claim reads push ones only, a
    # consumer's claim its own pull endpoint's.
    sa.Index(
        "ix_deliveries_due_push",
        "next_attempt_at",
        sqlite_where=sa.text(f"{_DUE} AND endpoint_kind = 'push'"),
        postgresql_where=sa.text(f"{_DUE} AND endpoint_kind = 'push'"),
    ),
    sa.Index(
        "ix_deliveries_due_pull",
        "endpoint_id",
        "next_attempt_at",
        sqlite_where=sa.text(f"{_DUE} AND endpoint_kind = 'pull'"),
        postgresql_where=sa.text(f"{_DUE} AND endpoint_kind = 'pull'"),
    ),
    # Every live delivery by endpoint and key in log order: an ordered key's head is its first.
    sa.Index(
        "ix_deliveries_key_head",
        "endpoint_id",
        "key",
        "event_seq",
        sqlite_where=sa.text(_HEADS),
        postgresql_where=sa.text(_HEADS),
    ),
    sa.Index("ix_deliveries_tenant_id", "tenant_id", "id"),
    sa.Index("ix_deliveries_endpoint", "endpoint_id", "status"),
    # Only dead deliveries: the dead-letter view and bulk redrive, by tenant or by endpoint.
    sa.Index(
        "ix_deliveries_dead_tenant",
        "tenant_id",
        "id",
        sqlite_where=sa.text("status = 'dead'"),
        postgresql_where=sa.text("status = 'dead'"),
    ),
    sa.Index(
        "ix_deliveries_dead_endpoint",
        "endpoint_id",
        "id",
        sqlite_where=sa.text("status = 'dead'"),
        postgresql_where=sa.text("status = 'dead'"),
    ),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("delivery_id", sa.String(40), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("started_at", Time, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.String(500)),
    sa.Column("response_excerpt", sa.Text),
    sa.Index("ix_attempts_delivery", "delivery_id", "number"),
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("filter", sa.JSON, nullable=False),
    sa.Column("endpoint_id", sa.String(40)),
    sa.Column("rate", sa.Float, nullable=False),
    sa.Column("total", sa.Integer),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("skipped", sa.Integer, nullable=False),
    sa.Column("cursor", sa.String(64)),
    sa.Column("cursor_end", sa.String(64)),
    sa.Column("bucket", sa.JSON),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", Time),
    sa.Column("last_error", sa.String(500)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("started_at", Time),
    sa.Column("finished_at", Time),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_jobs_tenant", "tenant_id", "id"),
    sa.Index(
        "ix_jobs_active",
        "lease_until",
        sqlite_where=sa.text("status IN ('queued', 'running')"),
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    ),
)

# A tenant's OAuth2 credentials for one partner's API. Secrets and tokens are ciphertexts
# (storage/secrets_box.py); ``refresh_lease_*`` make one process at a time refresh a token.
connections = sa.Table(
    "connections",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
    sa.Column("partner", sa.String(100), nullable=False),
    sa.Column("flow", sa.String(32), nullable=False),
    sa.Column("token_url", sa.String(2048), nullable=False),
    sa.Column("client_id", sa.String(500), nullable=False),
    sa.Column("client_secret", sa.Text, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("access_token", sa.Text),
    sa.Column("refresh_token", sa.Text),
    sa.Column("token_issued_at", Time),
    sa.Column("expires_at", Time),
    sa.Column("refresh_due_at", Time),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("refresh_ok_count", sa.Integer, nullable=False),
    sa.Column("refresh_failed_count", sa.Integer, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False),
    sa.Column("last_error", sa.String(500)),
    sa.Column("last_refreshed_at", Time),
    sa.Column("next_attempt_at", Time),
    sa.Column("refresh_lease_until", Time),
    sa.Column("refresh_lease_owner", sa.String(64)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Column("deleted_at", Time),
    sa.Index("ix_connections_tenant", "tenant_id", "id"),
    sa.Index("ix_connections_refresh_due", "refresh_due_at"),
)

# What could not be normalized, or would make an illegal transition: kept until reprocessed.
quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("event_id", sa.String(40), nullable=False),  # the partner's event, as received
    sa.Column("event_index", sa.Integer),  # which of its canonical events; None: all of them
    sa.Column("stage", sa.String(20), nullable=False),
    sa.Column("reason", sa.String(1000), nullable=False),
    sa.Column("kit", sa.String(100)),
    sa.Column("kit_version", sa.String(40)),
    sa.Column("entity", sa.String(100)),
    sa.Column("entity_key", sa.String(300)),
    sa.Column("canonical", sa.JSON),  # the canonical event held back, when there is one
    sa.Column("created_at", Time, nullable=False),
    sa.Column("resolved_at", Time),
    sa.Column("resolution", sa.String(20)),  # 'released' (by a later event) | 'reprocessed'
    sa.Index("ix_quarantine_tenant", "tenant_id", "id"),
    sa.Index("ix_quarantine_entity", "source_id", "entity", "entity_key"),
    sa.Index("ix_quarantine_event", "event_id"),
    # Only open entries, by stage: the retry of fetch_failed walks it (migration 0013).
    sa.Index(
        "ix_quarantine_open_stage",
        "stage",
        "id",
        sqlite_where=sa.text("resolved_at IS NULL"),
        postgresql_where=sa.text("resolved_at IS NULL"),
    ),
    sa.Index("ix_quarantine_tenant_stage", "tenant_id", "stage", "id"),
)

# Where each entity a partner kit tracks (a booking, a payment) stands.
entity_states = sa.Table(
    "entity_states",
    metadata,
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("entity", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("state", sa.String(100), nullable=False),
    sa.Column("ordinal", sa.Float(precision=53)),  # the order of the event that set the state
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("updated_at", Time, nullable=False),
)

# A source's reconciliation: the partner API it pulls from, with which connection, how often;
# the lease lets one process at a time run it.
source_reconcilers = sa.Table(
    "source_reconcilers",
    metadata,
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("connection_id", sa.String(40), nullable=False),
    sa.Column("api_url", sa.String(2048), nullable=False),
    sa.Column("interval_seconds", Time, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("next_run_at", Time, nullable=False),
    sa.Column("lease_owner", sa.String(80)),
    sa.Column("lease_until", Time),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("updated_at", Time, nullable=False),
    sa.Index("ix_source_reconcilers_tenant", "tenant_id", "source_id"),
    sa.Index("ix_source_reconcilers_due", "next_run_at"),
)

# The history of reconciliation runs: what each pulled and found, by outcome.
reconciliation_runs = sa.Table(
    "reconciliation_runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("tenant_id", sa.String(40), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # 'schedule' | 'api'
    sa.Column("status", sa.String(16), nullable=False),  # 'running' | 'succeeded' | 'failed'
    sa.Column("since", Time, nullable=False),  # the listing's updated_since
    sa.Column("started_at", Time, nullable=False),
    sa.Column("finished_at", Time),
    sa.Column("pulled", sa.Integer, nullable=False, server_default="0"),
    sa.Column("missing", sa.Integer, nullable=False, server_default="0"),
    sa.Column("corrected", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
    sa.Column("conflicts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("errors", sa.Integer, nullable=False, server_default="0"),
    sa.Column("emitted", sa.Integer, nullable=False, server_default="0"),
    sa.Column("superseded", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.String(1000)),  # why the run failed, or the first item it could not read
    sa.Index("ix_reconciliation_runs_source", "source_id", "started_at"),
    sa.Index("ix_reconciliation_runs_tenant", "tenant_id", "id"),
)

# Console sessions (/console): a browser's login, found by the SHA-256 of its cookie (never the
# cookie itself). tenant_id is null while an admin has not picked a tenant yet.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(40)),
    sa.Column("admin", sa.Boolean, nullable=False),
    # The tenant key it was made with: revoked or expired, it ends the session too.
    sa.Column("api_key_id", sa.String(40)),
    sa.Column("created_at", Time, nullable=False),
    sa.Column("last_seen_at", Time, nullable=False),
    sa.Column("expires_at", Time, nullable=False),  # the absolute limit
)

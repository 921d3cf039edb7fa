"""Prometheus metrics: what the hot path counts, what the database says at scrape time, /metrics.

Label values are bounded by configuration (source, endpoint and tenant ids) or by small enums
here; an event id, a URL or anything a partner sends never becomes a label, because every
distinct value is a time series kept for as long as the process lives.

Three parts:

- ``Metrics``: the counters and histograms, with a facade the hot path calls (``ingest``,
  ``attempt``, ``settled``). Each caches its pre-bound label children, so a call is a dict hit
  and an increment.
- ``StateCollector``: gauges read from the database when scraped (backlog, event lag, dead
  letters, router lag, endpoint status): the database is the truth for state, and several
  processes would each count only their own share of it.
- ``MetricsEndpoint``: the ASGI answer to ``GET /metrics`` in the text exposition format.

With ``PROMETHEUS_MULTIPROC_DIR`` set (several worker processes), prometheus_client keeps the
values in per-process files and the scrape merges them; the directory must exist and be
emptied before the processes start (prometheus_client's rule), and it must be set before
prometheus_client is first imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any, Final

import msgspec
import prometheus_client
import sqlalchemy as sa
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from interlink import problems
from interlink.domain.delivery import AttemptOutcome, DeliveryStatus
from interlink.domain.models import EndpointStatus
from interlink.storage.database import Database
from interlink.storage.ports import DUE_STATUSES, Settled
from interlink.storage.tables import cursors, deliveries, endpoints, events, quarantine, sources
from interlink.storage.tenancy import system_scope

log = structlog.get_logger("interlink.metrics")

# `*_created` series double the series count and no dashboard of ours reads them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call] # untyped upstream

# The text format every Prometheus (2.x and 3.x) scrapes; what generate_latest writes.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

UNKNOWN_SOURCE: Final = "unknown"

INGEST_OUTCOMES: Final = frozenset({"accepted", "duplicate", "rejected"})
# Why an ingest request was refused. A stale or future timestamp is a "signature" rejection:
# the verifiers raise one error for both, and both mean the request cannot be trusted.
REJECTION_REASONS: Final = frozenset(
    {
        "signature",  # 401: signature missing or wrong, timestamp outside the tolerance
        "too_large",  # 413
        "malformed",  # 400: not JSON, or not a JSON object
        "incomplete",  # 400: the client went away before sending the whole body
        "envelope",  # 422: no event type where the source's envelope says it is
        "unknown_source",  # 404: counted under source_id="unknown"
        "method",  # 405: not a POST; counted under source_id="unknown" (no source looked up)
        "unavailable",  # 503: the event store could not take it
        "watermark",  # 503: over the free-space or backlog watermark (domain/watermark.py)
        "internal",  # 500: an unexpected error, logged with its request id
    }
)
# Reasons that happen before a source is known: the path's id is the sender's text, never a label.
_SOURCELESS_REASONS: Final = frozenset({"unknown_source", "method"})

WATERMARK_REASONS: Final = ("disk", "backlog")
# "acked": a success with no HTTP status, a record a Kafka broker acknowledged.
STATUS_CLASSES: Final = ("2xx", "3xx", "4xx", "5xx", "error", "gone", "acked")
SETTLED_RESULTS: Final = frozenset({"succeeded", "retried", "dead"})

_ACK_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_ATTEMPT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60)
# From a second (healthy) to a day (a receiver down for hours, then drained by the retries).
_END_TO_END_BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400,
)  # fmt: skip


def rejection_reason(status: int, kind: str | None) -> str:
    """The rejection reason of an ingest answer, from its status and problem kind.

    The ingest route already says why with these two; deriving the reason here keeps the
    mapping in one place instead of at every ``raise``.
    """
    if status == 401:
        return "signature"
    if status == 413:
        return "too_large"
    if status == 422:
        return "envelope"
    if status == 404:
        return "unknown_source"
    if status == 405:
        return "method"
    if status == 503:
        return "watermark" if kind == "over-watermark" else "unavailable"
    if status == 500:
        return "internal"
    if status == 400 and kind is None:
        return "incomplete"
    return "malformed"


def status_class(outcome: AttemptOutcome | str, status_code: int | None) -> str:
    """The bounded class of an attempt's answer: 2xx/3xx/4xx/5xx, or error (no answer), gone."""
    if outcome == AttemptOutcome.GONE:
        return "gone"
    if status_code is None and outcome == AttemptOutcome.SUCCEEDED:
        return "acked"
    if status_code is None or not 200 <= status_code <= 599:
        # No answer, or one that is not HTTP as we speak it: the attempt failed without one.
        return "error"
    return f"{status_code // 100}xx"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The metric objects of one Interlink, and the calls the hot path makes on them.

    Each instance has its own registry, so two systems in one process (tests) count apart.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.ingest_requests = Counter(
            "interlink_ingest_requests",
            "Webhooks answered on /in/{source_id}, by outcome (accepted, duplicate, rejected).",
            ["source_id", "outcome"],
            registry=r,
        )
        self.ingest_rejections = Counter(
            "interlink_ingest_rejections",
            "Webhooks refused, by reason; source_id is 'unknown' when no source was found.",
            ["source_id", "reason"],
            registry=r,
        )
        self.ingest_ack = Histogram(
            "interlink_ingest_ack_seconds",
            "Time from a webhook's arrival to its durable 202 answer (accepted and duplicates).",
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.delivery_attempts = Counter(
            "interlink_delivery_attempts",
            "Delivery attempts settled, by the class of the receiver's answer.",
            ["endpoint_id", "status_class"],
            registry=r,
        )
        self.delivery_attempt_seconds = Histogram(
            "interlink_delivery_attempt_seconds",
            "Duration of one delivery attempt (request sent to answer, or the error).",
            ["endpoint_id"],
            buckets=_ATTEMPT_BUCKETS,
            registry=r,
        )
        self.delivery_end_to_end = Histogram(
            "interlink_delivery_end_to_end_seconds",
            "Time from a webhook's receipt to the successful delivery's settlement.",
            buckets=_END_TO_END_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "interlink_deliveries",
            "Delivery attempts by what they decided: succeeded, retried (scheduled again), dead.",
            ["endpoint_id", "result"],
            registry=r,
        )
        self.retention_dropped = Counter(
            "interlink_retention_dropped",
            "What retention dropped (storage/maintenance.py): partitions, and rows by table.",
            ["table", "unit"],
            registry=r,
        )
        # Set by the volume monitor; in multi-process mode the last process to decide wins.
        self.source_volume_dropped = Gauge(
            "interlink_source_volume_dropped",
            "1 while a source's volume is well below its learned baseline for the time of day.",
            ["source_id"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        # Reconciliation's drift, per source: what each run found the partner ahead of us on.
        self.reconciliation_runs = Counter(
            "interlink_reconciliation_runs",
            "Reconciliation runs finished, by status (succeeded, failed).",
            ["source_id", "status"],
            registry=r,
        )
        self.reconciliation_drift = Counter(
            "interlink_reconciliation_drift",
            "Entities reconciliation found drifted, by outcome (missing, corrected, conflict, "
            "error); and the canonical events it emitted (emitted) and held ones it superseded.",
            ["source_id", "outcome"],
            registry=r,
        )
        self.reconciliation_last_drift = Gauge(
            "interlink_reconciliation_last_drift",
            "Entities the source's latest reconciliation run found missing or behind.",
            ["source_id"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.reconciliation_last_run = Gauge(
            "interlink_reconciliation_last_run_timestamp_seconds",
            "When the source's latest reconciliation run finished (epoch seconds).",
            ["source_id"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        # The ingest watermark (ingress/watermark.py): 1 while new events are refused.
        self.ingest_watermark_tripped = Gauge(
            "interlink_ingest_watermark_tripped",
            "1 while ingest refuses new events with 503: the event store's disk is short of "
            "ingest_min_free_mb (reason=disk) or ingest_max_backlog deliveries wait (backlog).",
            ["reason"],
            multiprocess_mode="max",
            registry=r,
        )
        # Realtime streams: what is open now in this process, and why streams ended (an
        # "overflow" is a client that fell more than stream_queue_size events behind).
        self.stream_connections = Gauge(
            "interlink_stream_connections",
            "Realtime stream connections open, by transport (sse, ws).",
            ["transport"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.streams_closed = Counter(
            "interlink_streams_closed",
            "Realtime streams ended, by transport and reason (disconnected, overflow, "
            "shutdown, send_failed, ended).",
            ["transport", "reason"],
            registry=r,
        )
        # Kafka endpoints (delivery/kafka_destination.py): each record produced, by cluster; the
        # errors by librdkafka's code (a bounded enum: _MSG_TIMED_OUT, TOPIC_AUTHORIZATION_FAILED…).
        self.kafka_produce_seconds = Histogram(
            "interlink_kafka_produce_seconds",
            "Time from handing a record to the producer to the broker's acknowledgement "
            "(acks=all) or its failure, by cluster.",
            ["cluster"],
            buckets=_ATTEMPT_BUCKETS,
            registry=r,
        )
        self.kafka_produce_errors = Counter(
            "interlink_kafka_produce_errors",
            "Records a Kafka cluster did not acknowledge, by cluster and librdkafka error code.",
            ["cluster", "error"],
            registry=r,
        )
        # Content filters at routing (routing/filtering.py): error, cost_exceeded and invalid
        # count as no match and never stop routing; this is where they show.
        self.filter_evaluations = Counter(
            "interlink_filter_evaluations",
            "Subscription filter evaluations at routing, by outcome (match, no_match, error: "
            "a missing field or type mismatch, cost_exceeded: not run, invalid: the stored "
            "filter no longer compiles).",
            ["outcome"],
            registry=r,
        )
        self._filter_outcomes: dict[str, Any] = {}
        self._requests: dict[tuple[str, str], Any] = {}
        self._rejections: dict[tuple[str, str], Any] = {}
        self._attempts: dict[tuple[str, str], Any] = {}
        self._attempt_seconds: dict[str, Any] = {}
        self._settled: dict[tuple[str, str], Any] = {}
        if multiprocess_dir() is None:
            # CPU, memory and file descriptors of this process; per-process files cannot carry
            # them in multi-process mode.
            prometheus_client.ProcessCollector(registry=r)

    # the hot path --------------------------------------------------------------------------

    def filter_evaluated(self, outcome: str, n: int = 1) -> None:
        child = self._filter_outcomes.get(outcome)
        if child is None:
            child = self._filter_outcomes[outcome] = self.filter_evaluations.labels(outcome)
        child.inc(n)

    def stream_opened(self, transport: str) -> None:
        self.stream_connections.labels(transport).inc()

    def stream_closed(self, transport: str, reason: str) -> None:
        self.stream_connections.labels(transport).dec()
        self.streams_closed.labels(transport, reason).inc()

    def ingest(
        self,
        source_id: str | None,
        outcome: str,
        reason: str | None = None,
        seconds: float | None = None,
    ) -> None:
        """One answered ingest request.

        ``source_id`` is the id of the source found (None when none was); ``reason`` is one of
        ``REJECTION_REASONS`` when ``outcome`` is "rejected" (see ``rejection_reason``);
        ``seconds`` from arrival to the answer, observed for 202 answers only.
        """
        if source_id is None or reason in _SOURCELESS_REASONS:
            source_id = UNKNOWN_SOURCE
        key = (source_id, outcome)
        child = self._requests.get(key)
        if child is None:
            if outcome not in INGEST_OUTCOMES:
                raise ValueError(f"unknown ingest outcome {outcome!r}")
            child = self._requests[key] = self.ingest_requests.labels(source_id, outcome)
        child.inc()
        if outcome == "rejected":
            rkey = (source_id, reason or "malformed")
            rchild = self._rejections.get(rkey)
            if rchild is None:
                if rkey[1] not in REJECTION_REASONS:
                    raise ValueError(f"unknown rejection reason {reason!r}")
                rchild = self._rejections[rkey] = self.ingest_rejections.labels(*rkey)
            rchild.inc()
        elif seconds is not None:
            self.ingest_ack.observe(seconds)

    def watermark(self, tripped: str | None) -> None:
        for reason in WATERMARK_REASONS:
            self.ingest_watermark_tripped.labels(reason).set(1 if reason == tripped else 0)

    def attempt(
        self,
        endpoint_id: str,
        outcome: AttemptOutcome | str,
        status_code: int | None,
        seconds: float,
    ) -> None:
        """One delivery attempt: its answer's class and its duration."""
        key = (endpoint_id, status_class(outcome, status_code))
        child = self._attempts.get(key)
        if child is None:
            child = self._attempts[key] = self.delivery_attempts.labels(*key)
        child.inc()
        hist = self._attempt_seconds.get(endpoint_id)
        if hist is None:
            hist = self._attempt_seconds[endpoint_id] = self.delivery_attempt_seconds.labels(
                endpoint_id
            )
        hist.observe(seconds)

    def settled(
        self, endpoint_id: str, result: str, end_to_end_seconds: float | None = None
    ) -> None:
        """What an attempt decided: succeeded, retried or dead; end to end for successes."""
        key = (endpoint_id, result)
        child = self._settled.get(key)
        if child is None:
            if result not in SETTLED_RESULTS:
                raise ValueError(f"unknown delivery result {result!r}")
            child = self._settled[key] = self.deliveries.labels(*key)
        child.inc()
        if result == "succeeded" and end_to_end_seconds is not None:
            self.delivery_end_to_end.observe(max(0.0, end_to_end_seconds))

    def record_settled(self, s: Settled, now: float | None = None) -> None:
        """Both delivery calls for one settled attempt (the dispatcher's ``on_settled`` hook)."""
        c, r, d = s.claimed, s.result, s.decision
        self.attempt(c.endpoint_id, r.outcome, r.status_code, r.latency_ms / 1000.0)
        if d.status is DeliveryStatus.SUCCEEDED:
            at = time.time() if now is None else now
            self.settled(c.endpoint_id, "succeeded", at - c.received_at)
        elif d.status is DeliveryStatus.SCHEDULED:
            self.settled(c.endpoint_id, "retried")
        elif d.status is DeliveryStatus.DEAD:
            self.settled(c.endpoint_id, "dead")

    def kafka_produced(self, cluster: str, seconds: float, error: str | None) -> None:
        """One record produced to a Kafka endpoint's topic: acknowledged, or failed with error."""
        self.kafka_produce_seconds.labels(cluster).observe(seconds)
        if error is not None:
            self.kafka_produce_errors.labels(cluster, error).inc()

    # the volume monitor --------------------------------------------------------------------

    def set_volume_dropped(self, source_id: str, dropped: bool) -> None:
        self.source_volume_dropped.labels(source_id).set(1 if dropped else 0)

    # reconciliation ------------------------------------------------------------------------

    def reconciled(
        self, source_id: str, status: str, finished_at: float, counts: dict[str, int]
    ) -> None:
        """One finished run; ``counts`` by outcome (missing, corrected, conflict, error, …)."""
        self.reconciliation_runs.labels(source_id, status).inc()
        for outcome, n in counts.items():
            if n:
                self.reconciliation_drift.labels(source_id, outcome).inc(n)
        drifted = counts.get("missing", 0) + counts.get("corrected", 0)
        self.reconciliation_last_drift.labels(source_id).set(drifted)
        self.reconciliation_last_run.labels(source_id).set(finished_at)

    def forget_source(self, source_id: str) -> None:
        """Drops a deleted source's volume series (its counters stay until restart)."""
        with contextlib.suppress(KeyError):
            self.source_volume_dropped.remove(source_id)


# State read from the database at scrape time ------------------------------------------------


class _EndpointState(msgspec.Struct):
    tenant_id: str
    status: str
    dead: int


class StateSnapshot(msgspec.Struct, frozen=True):
    taken_at: float
    backlog: dict[tuple[str, str], int]  # (endpoint_id, status) -> live deliveries
    oldest_created: dict[str, float]  # endpoint_id -> created_at of its oldest live delivery
    endpoints: dict[str, _EndpointState]
    sources: dict[str, tuple[str, str]]  # source_id -> (tenant_id, name)
    log_head: int
    router_position: int
    quarantine: dict[tuple[str, str], int] = msgspec.field(default_factory=dict)  # open entries


def _per_endpoint(*where: sa.ColumnElement[bool]) -> sa.ScalarSelect[Any]:
    return (
        sa.select(sa.func.count())
        .select_from(deliveries)
        .where(deliveries.c.endpoint_id == endpoints.c.id, *where)
        .scalar_subquery()
    )


# Everything per endpoint as correlated subqueries: each is a seek on ix_deliveries_endpoint
# (endpoint_id, status) and reads only that endpoint's deliveries in that status, where a
# GROUP BY over the table would read every delivery ever made, settled ones included.
_ENDPOINTS = sa.select(
    endpoints.c.id,
    endpoints.c.tenant_id,
    endpoints.c.status,
    *(
        _per_endpoint(deliveries.c.status == status).label(status)
        for status in (*DUE_STATUSES, DeliveryStatus.DEAD.value)
    ),
    sa.select(sa.func.min(deliveries.c.created_at))
    .where(
        deliveries.c.endpoint_id == endpoints.c.id,
        deliveries.c.status.in_(DUE_STATUSES),
    )
    .scalar_subquery()
    .label("oldest"),
).where(endpoints.c.deleted_at.is_(None))
_SOURCES = sa.select(sources.c.id, sources.c.tenant_id, sources.c.name).where(
    sources.c.deleted_at.is_(None)
)
_LOG_HEAD = sa.select(sa.func.max(events.c.seq))  # the primary key: one probe
_ROUTER = sa.select(cursors.c.position).where(cursors.c.name == "router")
_QUARANTINE = (
    sa.select(quarantine.c.source_id, quarantine.c.stage, sa.func.count().label("n"))
    .where(quarantine.c.resolved_at.is_(None))
    .group_by(quarantine.c.source_id, quarantine.c.stage)
)


async def read_state(db: Database, now: float | None = None) -> StateSnapshot:
    """Every database-derived gauge, read on one connection: a handful of index seeks.

    Endpoints deleted (soft) are left out: nothing is sent to them any more, and their ids
    would otherwise stay as series for ever.
    """
    with system_scope("metrics: state gauges"):  # every tenant's, by endpoint and source
        async with db.read() as conn:
            endpoint_rows = (await conn.execute(_ENDPOINTS)).all()
            source_rows = (await conn.execute(_SOURCES)).all()
            head = (await conn.execute(_LOG_HEAD)).scalar()
            position = (await conn.execute(_ROUTER)).scalar()
            quarantined = (await conn.execute(_QUARANTINE)).all()
    backlog: dict[tuple[str, str], int] = {}
    oldest: dict[str, float] = {}
    for r in endpoint_rows:
        for status in DUE_STATUSES:
            backlog[(r.id, status)] = int(getattr(r, status) or 0)
        if r.oldest is not None:
            oldest[r.id] = float(r.oldest)
    return StateSnapshot(
        taken_at=time.time() if now is None else now,
        backlog=backlog,
        oldest_created=oldest,
        endpoints={
            r.id: _EndpointState(r.tenant_id, r.status, int(r.dead or 0)) for r in endpoint_rows
        },
        sources={r.id: (r.tenant_id, r.name) for r in source_rows},
        log_head=int(head or 0),
        router_position=int(position or 0),
        quarantine={(r.source_id, r.stage): int(r.n) for r in quarantined},
    )


class StateCollector(Collector):
    """Gauges from the database, refreshed (asynchronously) at most every ``ttl`` seconds.

    prometheus_client collects synchronously; the database is asynchronous. So the /metrics
    handler awaits ``refresh()`` first and ``collect()`` then reads the snapshot it left. The
    cache keeps a burst of scrapes (several Prometheus servers, a dashboard refresh) from
    turning into a burst of queries.
    """

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self._db = db
        self._ttl = ttl
        self._snapshot: StateSnapshot | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    @property
    def snapshot(self) -> StateSnapshot | None:
        return self._snapshot

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() < self._expires:
                return
            try:
                self._snapshot = await read_state(self._db)
            except Exception as exc:
                # Absent series, not stale ones: an alert on absent() notices, a stale value lies.
                log.warning("metrics.state_unavailable", error=type(exc).__name__)
                self._snapshot = None
            self._expires = time.monotonic() + self._ttl

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(self._families(None))

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return list(self._families(self._snapshot))

    def _families(self, s: StateSnapshot | None) -> Iterator[GaugeMetricFamily]:
        backlog = GaugeMetricFamily(
            "interlink_delivery_backlog",
            "Deliveries not yet settled, by endpoint and status (pending, scheduled, in_flight).",
            labels=["endpoint_id", "status"],
        )
        oldest = GaugeMetricFamily(
            "interlink_delivery_oldest_pending_age_seconds",
            "Age of the endpoint's oldest unsettled delivery (since it was routed): event lag.",
            labels=["endpoint_id"],
        )
        dead = GaugeMetricFamily(
            "interlink_dead_letter_size",
            "Dead deliveries kept for the endpoint (redrivable with retry).",
            labels=["endpoint_id"],
        )
        status = GaugeMetricFamily(
            "interlink_endpoint_status",
            "1 for the endpoint's current status (active, paused, disabled), 0 for the others.",
            labels=["endpoint_id", "status"],
        )
        endpoint_info = GaugeMetricFamily(
            "interlink_endpoint_info",
            "Always 1: joins an endpoint_id to its tenant_id in queries.",
            labels=["endpoint_id", "tenant_id"],
        )
        source_info = GaugeMetricFamily(
            "interlink_source_info",
            "Always 1: joins a source_id to its tenant_id and name in queries.",
            labels=["source_id", "tenant_id", "name"],
        )
        router_lag = GaugeMetricFamily(
            "interlink_router_lag_events",
            "Events in the log the router has not routed yet (log head seq - router cursor).",
        )
        quarantined = GaugeMetricFamily(
            "interlink_quarantine_open",
            "Partner events (or their canonical events) kept in the quarantine, not resolved yet, "
            "by source and stage (mapping, schema, held…).",
            labels=["source_id", "stage"],
        )
        if s is not None:
            for (source_id, stage), n in sorted(s.quarantine.items()):
                quarantined.add_metric([source_id, stage], n)
            for endpoint_id in sorted(s.endpoints):
                for st in DUE_STATUSES:
                    backlog.add_metric([endpoint_id, st], s.backlog.get((endpoint_id, st), 0))
                created = s.oldest_created.get(endpoint_id)
                age = 0.0 if created is None else max(0.0, s.taken_at - created)
                oldest.add_metric([endpoint_id], age)
            for endpoint_id, e in sorted(s.endpoints.items()):
                dead.add_metric([endpoint_id], e.dead)
                endpoint_info.add_metric([endpoint_id, e.tenant_id], 1)
                for st in EndpointStatus:
                    status.add_metric([endpoint_id, st.value], 1 if e.status == st.value else 0)
            for source_id, (tenant_id, name) in sorted(s.sources.items()):
                source_info.add_metric([source_id, tenant_id, name], 1)
            router_lag.add_metric([], max(0, s.log_head - s.router_position))
        yield from (
            backlog,
            oldest,
            dead,
            status,
            endpoint_info,
            source_info,
            router_lag,
            quarantined,
        )


# GET /metrics ---------------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class MetricsEndpoint:
    """``GET /metrics``: the text exposition format.

    Unauthenticated unless a token is configured (then ``Authorization: Bearer <token>``); it
    names sources, endpoints and tenants by id, so keep it off the public listener either way.
    """

    def __init__(
        self, metrics: Metrics, state: StateCollector | None = None, token: str | None = None
    ) -> None:
        self._metrics = metrics
        self._state = state
        self._token = token.encode() if token else None
        if multiprocess_dir() is None and state is not None:
            metrics.registry.register(state)

    def registry(self) -> CollectorRegistry:
        if multiprocess_dir() is None:
            return self._metrics.registry
        # prometheus_client's rule for multi-process mode: a fresh registry per scrape, reading
        # every process's files; the state gauges come from the database, not from the files.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        if self._state is not None:
            registry.register(self._state)
        return registry

    def _authorized(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        for name, value in scope.get("headers", ()):
            if name.lower() == b"authorization":
                scheme, _, presented = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    presented.strip(), self._token
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") != "GET":
            await problems.send(
                send, problems.problem(405, "/metrics answers GET only"), [(b"allow", b"GET")]
            )
            return
        if not self._authorized(scope):
            detail = "send the metrics token: Authorization: Bearer <INTERLINK_METRICS_TOKEN>"
            await problems.send(
                send, problems.problem(401, detail), [(b"www-authenticate", b"Bearer")]
            )
            return
        try:
            if self._state is not None:
                await self._state.refresh()
            body = prometheus_client.generate_latest(self.registry())
        except Exception:
            # As everywhere else: logged under an id, answered as a problem, never a bare 500.
            request_id = problems.new_request_id()
            log.exception("metrics.failed", request_id=request_id)
            await problems.send(
                send,
                problems.internal_error(request_id),
                [(problems.REQUEST_ID_HEADER.encode(), request_id.encode())],
            )
            return
        await _answer(send, 200, body, [], CONTENT_TYPE)


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]],
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

"""Settings: defaults, then a TOML file, then ``INTERLINK_*`` environment variables.

The file is ``interlink.toml`` in the working directory, or the path in ``INTERLINK_CONFIG``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from interlink.domain.kafka import CLUSTER_PATTERN, KafkaGrant

STATE_DIR = Path(".interlink")


class ConfigError(ValueError):
    pass


class KafkaCluster(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A Kafka cluster the operator configured (docs/kafka.md): how to reach it, and which
    tenants may write to it. Tenants name it; they never see or supply its address."""

    bootstrap_servers: str
    security_protocol: str = "plaintext"  # plaintext | ssl | sasl_plaintext | sasl_ssl
    ssl_ca_location: str | None = None  # PEM file of the CA that signed the brokers' certificates
    ssl_certificate_location: str | None = None  # client certificate (mutual TLS)
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    # How long the producer keeps trying one record (through broker restarts) before the attempt
    # fails and the delivery's retry schedule takes over; and how long it batches records.
    message_timeout_ms: int = 30_000
    linger_ms: int = 5
    grants: tuple[KafkaGrant, ...] = ()

    def __post_init__(self) -> None:
        if self.security_protocol not in _SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(_SECURITY_PROTOCOLS)}")
        if self.security_protocol.startswith("sasl") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "a sasl_* security_protocol needs sasl_mechanism, _username, _password"
            )
        if not self.message_timeout_ms > 0 or self.linger_ms < 0:
            raise ValueError("message_timeout_ms must be more than 0, linger_ms 0 or more")


_SECURITY_PROTOCOLS = ("plaintext", "ssl", "sasl_plaintext", "sasl_ssl")


class KafkaSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    clusters: dict[str, KafkaCluster] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.clusters:
            if not re.match(CLUSTER_PATTERN, name):
                raise ValueError(f"kafka cluster '{name}': a name is a-z, 0-9, '_' and '-'")

    def grants(self) -> dict[str, tuple[KafkaGrant, ...]]:
        return {name: c.grants for name, c in self.clusters.items()}


class Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    database_url: str = f"sqlite:///{STATE_DIR}/interlink.db"
    # Who runs the migrations; unset, the database_url. On PostgreSQL the schema's owner migrates
    # and the application connects as a role row-level security binds (docs: README, PostgreSQL).
    migration_database_url: str | None = None
    database_pool_size: int | None = None  # PostgreSQL connections at most; unset: 5, +10 at peaks
    host: str = "127.0.0.1"
    port: int = 8400
    # The admin key creates tenants and their keys; unset, `interlink up` makes one and writes it
    # to .interlink/admin.key (never to the terminal or a log).
    admin_key: str | None = None
    # Outbound requests refuse non-global addresses except inside these networks (CIDR).
    outbound_allow_networks: tuple[str, ...] = ()
    ingest_max_body_bytes: int = 1024 * 1024
    ingest_tolerance_seconds: int = 300
    # The bound on what ingest (and publish) acknowledges: under ingest_min_free_mb free on the
    # event store's disk (the SQLite file's directory, or ingest_disk_path: on PostgreSQL, a
    # path on the database's volume if this host can see it), or with ingest_max_backlog
    # deliveries unsettled, new events get 503 with Retry-After. 0 turns a watermark off.
    ingest_min_free_mb: int = 256
    ingest_disk_path: str | None = None
    ingest_max_backlog: int = 0
    ingest_watermark_interval_seconds: float = 1.0
    delivery_concurrency: int = 256
    delivery_timeout_seconds: float = 15.0
    delivery_lease_seconds: float = 120.0
    poll_interval_seconds: float = 1.0
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    # GET /metrics answers only with `Authorization: Bearer <metrics_token>` when set. It names
    # tenants, sources and endpoints by id: keep it off the public listener either way.
    metrics_token: str | None = None
    # OpenTelemetry traces; also on when OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER is
    # set (the exporter is configured by the standard OTEL_* variables).
    tracing: bool = False
    # Volume-drop detection per source (observability/volume_monitor.py, domain/volume.py).
    volume_monitor: bool = True
    volume_window_seconds: float = 900.0
    volume_drop_ratio: float = 0.25  # dropped below this share of the expected volume
    volume_recover_ratio: float = 0.6  # recovered at or above this share
    volume_min_expected: float = 50.0  # windows expecting fewer events are not judged
    volume_timezone: str = "UTC"  # where the day's hours and the weekend are
    # Bulk jobs (redrive, replay): items per second when a job names no rate, and the most any
    # job may ask for; how many jobs one process works at once, and how long its lease on one
    # lasts without a step (then another process, or the next start, takes it over).
    job_rate_default: float = 50.0
    job_rate_max: float = 1000.0
    job_concurrency: int = 4
    job_lease_seconds: float = 60.0
    # Fernet keys that encrypt stored secrets (sources', endpoints', OAuth connections') at rest:
    # the first encrypts, all decrypt (rotation: put the new key first, run `interlink secrets
    # rotate-key`, drop the old). Unset on SQLite: one kept in .interlink/secrets.key; required
    # on PostgreSQL, whose processes must all share the same keys.
    secrets_key: tuple[str, ...] = ()
    # A connection's token is refreshed once this share of its lifetime has passed.
    oauth_refresh_fraction: float = 0.8
    # Events (with their deliveries and attempts) older than this many days are dropped by the
    # scheduler's maintenance (storage/maintenance.py); unset: kept forever (README says why).
    retention_days: float | None = None
    maintenance_interval_seconds: float = 3600.0
    # Where a partner kit's API is, by kit name, when not where the kit says (a sandbox, a
    # regional host, a simulator); env: INTERLINK_PARTNER_API_URLS="pms_gamma=https://…,…".
    partner_api_urls: dict[str, str] = msgspec.field(default_factory=dict)
    # What one HTTP client may hold (http_server.py): a request's headers must all arrive within
    # http_header_timeout_seconds; its body may pause at most http_body_timeout_seconds and
    # must average http_body_min_rate bytes a second after that grace (408 and closed
    # otherwise); an idle kept-alive connection is closed after http_keep_alive_seconds; more
    # than http_max_header_bytes of request line and headers, or http_max_headers fields, get
    # 431; connections over http_max_connections get 503. On SIGTERM, requests in progress get
    # http_shutdown_timeout_seconds to finish, then every connection is closed.
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    http_body_min_rate: float = 1024.0
    http_keep_alive_seconds: float = 5.0
    http_max_header_bytes: int = 64 * 1024
    http_max_headers: int = 100
    http_max_connections: int = 1024
    http_shutdown_timeout_seconds: float = 10.0
    # Realtime streams (GET /api/v1/stream, /api/v1/ws): a connection's queue holds at most
    # stream_queue_size events (a client further behind is told where to resume and
    # disconnected); an idle stream gets a heartbeat every stream_heartbeat_seconds (SSE comment,
    # WebSocket ping and message). The hub reads the log at most once per
    # stream_batch_seconds: appends in between reach every connection as one batch (one write
    # per connection, not one per append), for that much latency at most.
    stream_queue_size: int = 1000
    stream_heartbeat_seconds: float = 15.0
    stream_batch_seconds: float = 0.05
    # Console sessions (/console): ended after this long without a request, and after this long
    # in all, whatever the activity (console/sessions.py).
    console_idle_seconds: float = 1800.0
    console_max_seconds: float = 12 * 3600.0
    # Operator-owned Kafka clusters that Kafka endpoints write to (docs/kafka.md). From the file's
    # [kafka.clusters.NAME] tables, INTERLINK_KAFKA (the same as JSON), and per field
    # INTERLINK_KAFKA__CLUSTERS__NAME__FIELD (grants there: "tenant[=prefix],…").
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)

    def __post_init__(self) -> None:
        for name in _POSITIVE_FIELDS:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be more than 0")
        if self.ingest_min_free_mb < 0 or self.ingest_max_backlog < 0:
            raise ValueError("ingest_min_free_mb and ingest_max_backlog must be 0 (off) or more")
        if self.http_body_min_rate < 0:
            raise ValueError("http_body_min_rate must be 0 (no minimum) or more")
        if self.retention_days is not None and not self.retention_days > 0:
            raise ValueError("retention_days must be more than 0 (unset keeps events forever)")
        if not 0 < self.oauth_refresh_fraction <= 1:
            raise ValueError("oauth_refresh_fraction must be in (0, 1]")
        for key in self.secrets_key:
            try:
                valid = len(base64.urlsafe_b64decode(key.encode())) == 32
            except (binascii.Error, ValueError):
                valid = False
            if not valid:
                raise ValueError(
                    "secrets_key: each key is 32 url-safe base64-encoded bytes "
                    "(make one with `interlink secrets new-key`)"
                )

    @property
    def migration_url(self) -> str:
        return self.migration_database_url or self.database_url

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"


_POSITIVE_FIELDS = (
    "ingest_watermark_interval_seconds",
    "http_header_timeout_seconds",
    "http_body_timeout_seconds",
    "http_keep_alive_seconds",
    "http_max_header_bytes",
    "http_max_headers",
    "http_max_connections",
    "http_shutdown_timeout_seconds",
    "stream_queue_size",
    "stream_heartbeat_seconds",
    "stream_batch_seconds",
    "console_idle_seconds",
    "console_max_seconds",
)
_LIST_FIELDS = {"outbound_allow_networks", "secrets_key"}
_MAP_FIELDS = {"partner_api_urls"}


def _from_env(name: str, raw: str) -> Any:
    if name in _LIST_FIELDS:
        return [p.strip() for p in raw.split(",") if p.strip()]
    if name in _MAP_FIELDS:
        pairs = [p.partition("=") for p in raw.split(",") if p.strip()]
        if any(not k.strip() or not sep for k, sep, _ in pairs):
            raise ConfigError(f"INTERLINK_{name.upper()}: give name=value pairs, comma-separated")
        return {k.strip(): v.strip() for k, _, v in pairs}
    return raw


_KAFKA_PREFIX = "INTERLINK_KAFKA__CLUSTERS__"


def _kafka_from_env(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """INTERLINK_KAFKA as JSON, then INTERLINK_KAFKA__CLUSTERS__NAME__FIELD over it: a SASL
    password can come from a secret store's variable while the rest lives in the file."""
    if isinstance(values.get("kafka"), str):
        try:
            values["kafka"] = msgspec.json.decode(values["kafka"])
        except msgspec.DecodeError as exc:
            raise ConfigError(f"INTERLINK_KAFKA: not JSON ({exc})") from None
    for var, raw in env.items():
        if not var.startswith(_KAFKA_PREFIX):
            continue
        cluster, sep, field = var[len(_KAFKA_PREFIX) :].partition("__")
        if not sep or not cluster or not field:
            raise ConfigError(f"{var}: name it {_KAFKA_PREFIX}<CLUSTER>__<FIELD>")
        kafka = values.setdefault("kafka", {})
        entry = kafka.setdefault("clusters", {}).setdefault(cluster.lower(), {})
        value: Any = raw
        if field.lower() == "grants":
            pairs = [p.strip().partition("=") for p in raw.split(",") if p.strip()]
            value = [
                {"tenant": t.strip(), "topic_prefix": prefix.strip()} for t, _, prefix in pairs
            ]
        entry[field.lower()] = value


def load(
    path: str | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    file = Path(path or env.get("INTERLINK_CONFIG") or "interlink.toml")
    if file.exists():
        try:
            values.update(tomllib.loads(file.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from None
    for name in Settings.__struct_fields__:
        raw = env.get(f"INTERLINK_{name.upper()}")
        if raw is None:
            continue
        values[name] = _from_env(name, raw)
    _kafka_from_env(values, env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return msgspec.convert(values, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None

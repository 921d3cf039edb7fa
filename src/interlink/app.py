"""Wires adapters into roles and runs them: ingest, router, dispatcher and API in one process.

On SQLite the process holds an exclusive lock on the database's lock file: the embedded default
is one process, which is what lets it take back at start-up every lease its predecessor held.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from datetime import UTC
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import structlog

from interlink import problems
from interlink.api.app import create_api
from interlink.api.context import ApiContext
from interlink.catalog.catalog import EventCatalog
from interlink.clock import SYSTEM, Clock
from interlink.config import STATE_DIR, Settings
from interlink.delivery.dispatcher import Dispatcher
from interlink.delivery.http_sender import HttpSender
from interlink.delivery.job_runner import JobRunner
from interlink.delivery.kafka_destination import KafkaDestination
from interlink.delivery.kafka_producer import ConfluentProducers
from interlink.delivery.outbound_guard import OutboundPolicy
from interlink.delivery.pull import Consumers, PullWaiters
from interlink.delivery.signing import Signer
from interlink.domain.models import EndpointKind, Event
from interlink.domain.streams import token_key
from interlink.domain.token_refresh import RefreshPolicy
from interlink.domain.volume import VolumeConfig
from interlink.domain.watermark import WatermarkPolicy
from interlink.http_server import ConnectionLimits, Server
from interlink.ingress.app import IngestApp, SourceCache
from interlink.ingress.group_commit import GroupCommit
from interlink.ingress.watermark import Watermark
from interlink.observability import tracing
from interlink.observability.metrics import Metrics, MetricsEndpoint, StateCollector
from interlink.observability.volume_monitor import VolumeMonitor
from interlink.partners.fetcher import Fetcher
from interlink.partners.kit import KitRegistry
from interlink.partners.oauth import TokenEndpoint
from interlink.partners.outbound import PartnerSession
from interlink.partners.reconciliation import Reconciliation
from interlink.partners.stage import Normalization
from interlink.partners.tokens import TokenManager
from interlink.routing.router import Router
from interlink.storage import migrate, rls
from interlink.storage.backlog import unsettled_deliveries
from interlink.storage.connections import Connections
from interlink.storage.database import Database, sqlite_path
from interlink.storage.deliveries import Deliveries
from interlink.storage.event_counts import EventCounts
from interlink.storage.event_log import EventLog
from interlink.storage.export import exported
from interlink.storage.jobs import Jobs
from interlink.storage.maintenance import Maintenance, owner_database
from interlink.storage.management import Management
from interlink.storage.normalization import NormalizationStore
from interlink.storage.ports import (
    DELIVERIES_CHANNEL,
    LOG_CHANNEL,
    Appended,
    DeliveryQueue,
    LogWriter,
    Settled,
)
from interlink.storage.private_files import create_private_file
from interlink.storage.quarantine import Quarantine
from interlink.storage.reconciliation import Reconciliations, Run
from interlink.storage.sealed_secrets import open_secrets
from interlink.storage.secrets_box import SecretBox, database_keys
from interlink.storage.sqlite.delivery_queue import SqliteDeliveryQueue
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.sqlite.log_writer import SqliteLogWriter
from interlink.storage.sqlite.process_lock import AlreadyRunning as AlreadyRunning
from interlink.storage.sqlite.process_lock import lock_sqlite
from interlink.storage.stream_log import StreamLog
from interlink.storage.tenancy import system_scope
from interlink.storage.wakeups import Wakeups
from interlink.streams.hub import StreamHub
from interlink.streams.service import Streams

log = structlog.get_logger("interlink")

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]


class Role(enum.StrEnum):
    """What a process does; ``interlink up`` is all of them, ``interlink run --role`` some."""

    INGRESS = "ingress"  # POST /in/{source}
    ROUTER = "router"  # the log → deliveries
    DISPATCHER = "dispatcher"  # deliveries → receivers
    SCHEDULER = "scheduler"  # periodic and bulk jobs: volume monitor, redrive, replay, tokens,
    # reconciliation
    API = "api"  # the management API and its docs


ALL_ROLES = frozenset(Role)


class RolesNeedPostgres(RuntimeError):
    pass


class CannotListen(RuntimeError):
    pass


def admin_key(settings: Settings) -> str:
    """The configured admin key, or one kept in .interlink/admin.key (made on first start)."""
    if settings.admin_key:
        return settings.admin_key
    path = STATE_DIR / "admin.key"
    if path.exists():
        return path.read_text().strip()
    key = "ik_admin_" + secrets.token_urlsafe(32)
    fd = create_private_file(path)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def _store_disk(settings: Settings, sqlite: Path | None) -> Path | None:
    """Where the event store's disk is, for the free-space watermark; None: not visible here."""
    if settings.ingest_disk_path:
        return Path(settings.ingest_disk_path)
    return sqlite.parent if sqlite is not None else None


class Interlink:
    """Every role of Interlink over one database."""

    def __init__(
        self,
        settings: Settings,
        on_settled: Callable[[Settled], None] | None = None,
        clock: Clock = SYSTEM,
        roles: frozenset[Role] = ALL_ROLES,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.roles = roles
        self.db = Database(settings.database_url, pool_size=settings.database_pool_size)
        # Refuses PostgreSQL without a configured key (SecretsKeyRequired): there is no
        # default one several processes could share.
        self.secrets_keys = database_keys(settings.secrets_key, sqlite=self.db.is_sqlite)
        self.box = SecretBox(self.secrets_keys)
        self.management = Management(self.db, self.box)
        self.events = EventLog(self.db)
        self.deliveries = Deliveries(self.db)
        self._sqlite = sqlite_path(self.db.url)
        self._driver: SqliteDriver | None = None
        log_writer: LogWriter = self.events
        queue: DeliveryQueue = self.deliveries
        if self._sqlite is not None:
            self._driver = SqliteDriver(self._sqlite)
            log_writer = SqliteLogWriter(self._driver)
            queue = SqliteDeliveryQueue(self._driver)
        self.log_writer, self.queue = log_writer, queue
        self.metrics = Metrics()
        self.metrics_endpoint = MetricsEndpoint(
            self.metrics, StateCollector(self.db), settings.metrics_token
        )
        self.maintenance = Maintenance(
            self.db,
            owner_database(self.db, settings.migration_url),
            retention_days=settings.retention_days,
            interval_seconds=settings.maintenance_interval_seconds,
            on_dropped=lambda table, unit, n: self.metrics.retention_dropped.labels(
                table, unit
            ).inc(n),
        )
        self.volume = VolumeMonitor(
            self.db,
            self.metrics,
            VolumeConfig(
                window_seconds=settings.volume_window_seconds,
                drop_ratio=settings.volume_drop_ratio,
                recover_ratio=settings.volume_recover_ratio,
                min_expected=settings.volume_min_expected,
            ),
            tz=UTC if settings.volume_timezone == "UTC" else ZoneInfo(settings.volume_timezone),
        )
        self._on_settled = on_settled
        self.outbound = OutboundPolicy(allow_networks=tuple(settings.outbound_allow_networks))
        self.sender = HttpSender(self.outbound)
        # Kafka endpoints produce through the operator's clusters (none configured: none made).
        self.kafka_producers = ConfluentProducers(settings.kafka.clusters)
        kafka = KafkaDestination(settings.kafka, self.kafka_producers, self.metrics.kafka_produced)
        self.dispatcher = Dispatcher(
            self.queue,
            self.sender,
            Signer(lambda stored: open_secrets(self.box, stored)),
            destinations={EndpointKind.KAFKA: kafka},
            concurrency=settings.delivery_concurrency,
            lease_seconds=settings.delivery_lease_seconds,
            poll_interval=settings.poll_interval_seconds,
            on_settled=self._settled,
            clock=clock,
        )
        self.kits = KitRegistry.installed()
        self.catalog = EventCatalog.builtin()
        self.quarantine = Quarantine(self.db)
        # OAuth connections to partner APIs: tokens refreshed in the background before expiry.
        self.partner_session = PartnerSession(self.outbound)
        self.tokens = TokenManager(
            Connections(self.db, self.box),
            TokenEndpoint(self.partner_session),
            RefreshPolicy(refresh_fraction=settings.oauth_refresh_fraction),
            poll_interval=settings.poll_interval_seconds,
        )
        normalization_store = NormalizationStore(self.db, self._driver)
        self.normalization = Normalization(
            normalization_store,
            self.log_writer,
            self.kits,
            self.catalog,
            on_appended=lambda: self._appended(),  # canonical events to route and stream
            # Thin notifications: what they point at, fetched with the tenant's connection.
            fetcher=Fetcher(self.partner_session, self.tokens, base_urls=settings.partner_api_urls),
        )
        # Pull endpoints' long polls, woken by routing here and by one poller for the rest.
        self.pull_waiters = PullWaiters(self.queue.claimable, settings.poll_interval_seconds)
        self.consumers = Consumers(self.queue, self.deliveries, self.management, self.pull_waiters)
        self.router = Router(
            self.log_writer,
            self.management,
            self.queue,
            poll_interval=settings.poll_interval_seconds,
            on_routed=self.dispatcher.wake,
            on_deliveries=self.pull_waiters.notify,
            normalize=self.normalization,
            count_filter=self.metrics.filter_evaluated,
        )
        # Reconciliation: each source's partner state pulled on its interval and diffed.
        self.reconciliation = Reconciliation(
            Reconciliations(self.db),
            normalization_store,
            self.management,
            self.kits,
            self.catalog,
            self.partner_session,
            self.tokens,
            poll_interval=settings.poll_interval_seconds,
            on_appended=lambda: self._appended(),
            on_finished=self._reconciled,
        )
        # Realtime streams: one reader of the log for every connection of this process, woken
        # by this process's appends (and, on PostgreSQL, by other processes' NOTIFY).
        self.stream_hub = StreamHub(
            StreamLog(self.db),
            poll_interval=settings.poll_interval_seconds,
            queue_size=settings.stream_queue_size,
            batch_seconds=settings.stream_batch_seconds,
        )
        self.commit = GroupCommit(self.log_writer, on_commit=self._appended)
        self.jobs = Jobs(self.db, self.deliveries)
        self.job_runner = JobRunner(
            self.jobs,
            concurrency=settings.job_concurrency,
            lease_seconds=settings.job_lease_seconds,
            poll_interval=settings.poll_interval_seconds,
            on_progress=self.dispatcher.wake,
        )
        self.watermark = Watermark(
            WatermarkPolicy(
                min_free_bytes=settings.ingest_min_free_mb * 1024 * 1024,
                max_backlog=settings.ingest_max_backlog,
            ),
            _store_disk(settings, self._sqlite),
            functools.partial(unsettled_deliveries, self.db),
            interval=settings.ingest_watermark_interval_seconds,
            metrics=self.metrics,
        )
        self.ingest = IngestApp(
            SourceCache(self.management), self.commit, self.metrics, self.watermark
        )
        self.event_counts = EventCounts(self.db)
        self.api = create_api(
            ApiContext(
                settings=settings,
                admin_key=admin_key(settings),
                management=self.management,
                events=self.events,
                deliveries=self.deliveries,
                outbound=self.outbound,
                jobs=self.jobs,
                job_created=self.job_runner.wake,
                tokens=self.tokens,
                kits=self.kits,
                catalog=self.catalog,
                quarantine=self.quarantine,
                normalization=self.normalization,
                publish=self._publish,
                reconciliation=self.reconciliation,
                streams=Streams(
                    self.stream_hub,
                    StreamLog(self.db),
                    token_key(admin_key(settings)),
                    settings.stream_heartbeat_seconds,
                    self.metrics,
                ),
                consumers=self.consumers,
                export=functools.partial(exported, self.db),
                event_counts=self.event_counts,
            )
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._lock: IO[str] | None = None
        self._tracing = False

    async def _publish(self, events: Sequence[Event]) -> list[Appended]:
        self.watermark.guard()  # the publish API acknowledges too: the same bound
        return await self.commit.submit_all(events)

    def _appended(self) -> None:
        self.router.wake()
        self.stream_hub.wake()

    def _deliveries_created(self) -> None:
        self.dispatcher.wake()
        self.pull_waiters.poke()

    def _settled(self, s: Settled) -> None:
        # Runs after the attempt's settlement is durable: what is counted is what is recorded.
        self.metrics.record_settled(s)
        if self._on_settled is not None:
            self._on_settled(s)

    def _reconciled(self, run: Run) -> None:
        d = run.drift
        counts = {
            "missing": d.missing,
            "corrected": d.corrected,
            "conflict": d.conflicts,
            "error": d.errors,
            "emitted": d.emitted,
            "superseded": d.superseded,
        }
        self.metrics.reconciled(run.source_id, run.status, run.finished_at or 0.0, counts)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        # The ingest route skips the framework: it is the hot path.
        if scope["type"] == "websocket":  # the event streams' WebSocket
            if Role.API not in self.roles:
                await send({"type": "websocket.close", "code": 4404})
                return
            await self.api(scope, receive, send)  # type: ignore[arg-type]
            return
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/in/"):
            if Role.INGRESS not in self.roles:
                await _not_served(send, "ingest", self.roles)
                return
            await self.ingest(scope, receive, send)
        elif path == "/metrics":
            await self.metrics_endpoint(scope, receive, send)
        elif Role.API not in self.roles and path not in ("/healthz", "/readyz"):
            await _not_served(send, "the management API", self.roles)
        else:
            await self.api(scope, receive, send)  # type: ignore[arg-type]

    async def start(self) -> None:
        # First, so a bad OTEL_* setting fails before anything runs. A tracer installed already
        # (by a test, or a program embedding Interlink) is left as it is.
        if not tracing.enabled() and tracing.wanted(self.settings.tracing):
            self._tracing = tracing.configure(self.settings.tracing)
        if self._sqlite is not None:
            if self.roles != ALL_ROLES:
                raise RolesNeedPostgres(
                    "separate roles need PostgreSQL: on SQLite, one process runs them all"
                    " (interlink up)"
                )
            self._lock = lock_sqlite(self._sqlite)
        await asyncio.to_thread(
            migrate.upgrade, self.settings.migration_url, secrets_keys=self.secrets_keys
        )
        if not self.db.is_sqlite:
            async with self.db.read() as conn:
                await rls.verify(conn)  # refuses a role or schema that would mix tenants
        if self._driver is not None:
            await self._driver.start()
        if self._sqlite is not None:
            released = await self.queue.release_all_leases(self.clock.now())
            if released:
                log.info("dispatcher.resumed_in_flight", count=released)
            resumed = await self.jobs.release_all_leases(self.clock.now())
            if resumed:
                log.info("jobs.resumed", count=resumed)
        await self.sender.start()
        # The pipeline works across tenants: its tasks (and what they start) inherit this scope.
        with system_scope("pipeline"):
            self.commit.start()
            self._tasks = []
            if Role.ROUTER in self.roles:
                self._tasks.append(asyncio.create_task(self.router.run(), name="router"))
                retries = self.normalization.run_fetch_retries(
                    5 * self.settings.poll_interval_seconds
                )
                self._tasks.append(asyncio.create_task(retries, name="fetch-retries"))
            if Role.DISPATCHER in self.roles:
                self._tasks.append(asyncio.create_task(self.dispatcher.run(), name="dispatcher"))
            if Role.SCHEDULER in self.roles:
                self._tasks.append(asyncio.create_task(self.job_runner.run(), name="job-runner"))
                self._tasks.append(asyncio.create_task(self.tokens.run(), name="token-refresher"))
                self._tasks.append(asyncio.create_task(self.maintenance.run(), name="maintenance"))
                self._tasks.append(
                    asyncio.create_task(self.reconciliation.run(), name="reconciliation")
                )
            if Role.API in self.roles:
                self._tasks.append(asyncio.create_task(self.pull_waiters.run(), name="pull-poller"))
            if Role.SCHEDULER in self.roles and self.settings.volume_monitor:
                self._tasks.append(asyncio.create_task(self.volume.run(), name="volume-monitor"))
            if Role.API in self.roles:
                self._tasks.append(asyncio.create_task(self.stream_hub.run(), name="stream-hub"))
                # The console's first overview would otherwise read the week's log itself.
                warm = self.event_counts.refresh(self.clock.now())
                self._tasks.append(asyncio.create_task(warm, name="console-counts"))
            if self.roles & {Role.INGRESS, Role.API} and self.watermark.active:
                await self.watermark.measure()  # a process starts with a verdict, not without
                self._tasks.append(asyncio.create_task(self.watermark.run(), name="watermark"))
            if self._sqlite is None and self.roles & {Role.ROUTER, Role.DISPATCHER, Role.API}:
                # Other processes' appends and routing wake this one's roles (a hint; they poll).
                wakeups = Wakeups(
                    self.db.url,
                    {LOG_CHANNEL: self._appended, DELIVERIES_CHANNEL: self._deliveries_created},
                )
                self._tasks.append(asyncio.create_task(wakeups.run(), name="wakeups"))

    def stopping(self) -> None:
        """Shutdown has begun: open streams end now (each client told where to resume) and long
        polls answer now, so the server's graceful shutdown waits for neither."""
        self.stream_hub.close()
        self.pull_waiters.close()

    async def stop(self) -> None:
        self.stream_hub.close()
        # Each stage is bounded: a task that does not end when cancelled (a database call cut
        # off mid-way, say) must cost seconds at shutdown and say which it was, never hang.
        self.pull_waiters.close()
        await _bounded("group commit", self.commit.stop())
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_SECONDS)
            for task in stuck:
                log.warning("interlink.stop_overran", stage=task.get_name())
        await _bounded("outbound client", self.sender.close())
        await _bounded("kafka producers", self.kafka_producers.close())
        await _bounded("token refreshes", self.tokens.close())
        await _bounded("partner client", self.partner_session.close())
        if self._tracing:
            tracing.shutdown()  # exports the spans still buffered
        if self._driver is not None:
            await _bounded("sqlite driver", self._driver.close())
        await _bounded("maintenance pool", self.maintenance.close())
        await _bounded("database pool", self.db.close())
        if self._lock is not None:
            self._lock.close()


STOP_SECONDS = 10.0


async def _not_served(send: Any, what: str, roles: frozenset[Role]) -> None:
    detail = f"this process does not serve {what} (its roles: {', '.join(sorted(roles))})"
    await problems.send(send, problems.problem(404, detail))


async def _bounded(stage: str, step: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(step, STOP_SECONDS)
    except TimeoutError:
        log.warning("interlink.stop_overran", stage=stage)


async def serve(
    settings: Settings,
    *,
    on_started: Callable[[Interlink], Awaitable[None]] | None = None,
    on_settled: Callable[[Settled], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    stop: asyncio.Event | None = None,
    roles: frozenset[Role] = ALL_ROLES,
) -> None:
    """Runs the roles (every one by default) and the HTTP server until SIGINT/SIGTERM (or
    ``stop`` is set). Every process listens: for health and metrics at least."""
    system = Interlink(settings, on_settled=on_settled, roles=roles)
    await system.start()
    limits = ConnectionLimits.of(settings)

    def stopping() -> None:
        system.stopping()
        if on_stopping is not None:
            on_stopping()

    server = Server(system, settings.host, settings.port, limits, stopping)

    async def after_bind() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        if on_started is not None:
            try:
                await on_started(system)
            except Exception:
                log.exception("interlink.on_started_failed")
        if stop is not None:
            await stop.wait()
            stopping()
            server.should_exit = True

    helper = asyncio.create_task(after_bind(), name="serve-hooks")
    try:
        try:
            await server.serve()
        except SystemExit:
            # uvicorn logs the OSError and exits when it cannot bind; say what to change instead.
            if server.started:
                raise
        if not server.started:
            raise CannotListen(
                f"cannot listen on {settings.host}:{settings.port} (in use, or not this "
                "machine's): choose another with --port / INTERLINK_PORT or --host / INTERLINK_HOST"
            )
    finally:
        helper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await helper
        await system.stop()

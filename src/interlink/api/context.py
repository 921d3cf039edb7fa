"""What the API handlers work with, handed to them by dependency injection."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from interlink.catalog.catalog import EventCatalog
from interlink.config import Settings
from interlink.delivery.outbound_guard import OutboundPolicy
from interlink.delivery.pull import Consumers
from interlink.domain.models import Event
from interlink.partners.kit import KitRegistry
from interlink.partners.reconciliation import Reconciliation
from interlink.partners.stage import Normalization
from interlink.partners.tokens import TokenManager
from interlink.storage.deliveries import Deliveries
from interlink.storage.event_counts import EventCounts
from interlink.storage.event_log import EventLog
from interlink.storage.export import Exported
from interlink.storage.jobs import Jobs
from interlink.storage.management import Management
from interlink.storage.ports import Appended
from interlink.storage.quarantine import Quarantine
from interlink.streams.service import Streams

# (tenant_id, since, until, after event id) -> pages of exported events.
Export = Callable[[str, float, float, str | None], AsyncIterator[list[Exported]]]


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    admin_key: str
    management: Management
    events: EventLog
    deliveries: Deliveries
    outbound: OutboundPolicy
    jobs: Jobs
    job_created: Callable[[], None]  # wakes the job runner
    kits: KitRegistry
    catalog: EventCatalog
    quarantine: Quarantine
    normalization: Normalization
    # Stores published events durably, in one transaction, and wakes the router: the group
    # commit ingest uses (ingress/group_commit.py).
    publish: Callable[[Sequence[Event]], Awaitable[list[Appended]]]
    # OAuth connections to partner APIs (their repository is ``tokens.connections``).
    tokens: TokenManager | None = None
    reconciliation: Reconciliation | None = None
    # Realtime streams (SSE, WebSocket) and their stream tokens.
    streams: Streams | None = None

    # Pull endpoints' consumers: claims (long polls), acks and nacks.
    consumers: Consumers | None = None
    # A tenant's events in a window with their deliveries and attempts, page by page
    # (storage/export.py, bound to the database).
    export: Export | None = None
    # The console's counts of events per source (storage/event_counts.py), warmed at start.
    event_counts: EventCounts | None = None

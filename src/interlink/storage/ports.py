"""The storage ports of the hot path, and the records that cross them.

The management API reads and writes through SQLAlchemy Core on every backend; the hot path
(append to the log, route, claim, settle) has an adapter per backend, held to the same
conformance tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import msgspec

from interlink.domain.delivery import AttemptResult, Decision
from interlink.domain.kafka import KafkaTarget
from interlink.domain.lanes import LanePolicy
from interlink.domain.models import EndpointKind, Event

# Statuses the dispatcher picks up once ``next_attempt_at`` has passed; a claimed delivery's
# ``next_attempt_at`` is its lease expiry, so a lapsed lease is due again by itself.
DUE_STATUSES = ("pending", "scheduled", "in_flight")
ERROR_CHARS = 500


class Appended(msgspec.Struct, frozen=True):
    event_id: str
    duplicate: bool


class LogEntry(msgspec.Struct, frozen=True):
    """What the router needs of an event: not its body."""

    seq: int
    id: str
    tenant_id: str
    type: str
    key: str | None = None


class EventContent(msgspec.Struct, frozen=True):
    """What content filters read of an event beyond its LogEntry (routing/filtering.py)."""

    source_id: str
    data: bytes  # JSON
    headers: dict[str, str]
    occurred_at: float | None


class NewDelivery(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    event_id: str
    event_seq: int
    endpoint_id: str
    key: str | None = None  # the event's ordering key
    subscription_id: str | None = None  # the one that routed it (its transformation applies)


class Claimed(msgspec.Struct, frozen=True):
    """A delivery leased to this process, with what it takes to send it."""

    delivery_id: str
    tenant_id: str
    event_id: str
    endpoint_id: str
    attempt_count: int
    lease_until: float
    event_type: str
    event_data: bytes
    received_at: float
    url: str
    secret: str
    timeout_seconds: float
    retry_schedule: tuple[float, ...]
    trace_context: str | None = None
    lane: LanePolicy = LanePolicy()  # the endpoint's policy when it was claimed
    key: str | None = None  # the event's ordering key (a pull consumer is shown it)
    occurred_at: float | None = None
    # Which destination sends it (delivery/destinations.py), and a Kafka endpoint's target.
    kind: EndpointKind = EndpointKind.PUSH
    kafka: KafkaTarget | None = None
    transform: str | None = None  # the routing subscription's JSONata (domain/transforms.py)
    source_id: str | None = None  # for a transformation's $event
    headers: dict[str, str] | None = None  # for a transformation's $event


class Settled(msgspec.Struct, frozen=True):
    claimed: Claimed
    started_at: float
    result: AttemptResult
    decision: Decision


class LaneNotice(msgspec.Struct, frozen=True):
    """A change in an endpoint's lane that a settlement caused, for the operator's log."""

    tenant_id: str
    endpoint_id: str
    change: str  # breaker_opened, breaker_closed, endpoint_disabled
    detail: str


class CursorMoved(Exception):
    """Another router moved the cursor first: the batch was routed there (nothing written here)."""


# PostgreSQL channels that wake other processes' roles; LISTEN/NOTIFY is only ever a hint,
# every role polls slowly as well.
LOG_CHANNEL = "interlink_log"  # events appended: routers
DELIVERIES_CHANNEL = "interlink_deliveries"  # deliveries created: dispatchers


class LogWriter(Protocol):
    async def append(self, batch: Sequence[Event]) -> list[Appended]:
        """Stores a batch in one durable transaction; duplicates return the first event's id."""
        ...

    async def read_after(self, position: int, limit: int) -> list[LogEntry]: ...

    async def contents(self, entries: Sequence[LogEntry]) -> dict[str, EventContent]:
        """These events' data, headers, source and time, by event id (for content filters)."""
        ...

    async def position(self, name: str) -> int: ...


class DeliveryQueue(Protocol):
    async def route(
        self,
        batch: Sequence[NewDelivery],
        cursor: str,
        position: int,
        previous: int | None = None,
    ) -> None:
        """Creates deliveries and moves the router's cursor, atomically. With ``previous``,
        only from there: if another router moved it first, nothing is written and
        ``CursorMoved`` is raised, so several routers never route a batch twice."""
        ...

    async def claim_due(
        self, now: float, limit: int, lease_seconds: float, endpoint_id: str | None = None
    ) -> list[Claimed]:
        """Leases due deliveries their endpoints' lanes admit now (domain.lanes.admit); the
        ones a lane cannot take are deferred to when it can, their attempts untouched. Push
        endpoints' deliveries (the dispatcher's); with ``endpoint_id``, that pull endpoint's
        (a consumer's claim): the same rules, ordered keys' heads included."""
        ...

    async def claimable(self, endpoint_ids: Sequence[str], now: float) -> set[str]:
        """Of these pull endpoints, those with a delivery a claim would consider now (due, and
        its key's head on an ordered endpoint): one read, a candidate query per endpoint."""
        ...

    async def settle(self, batch: Sequence[Settled], now: float | None = None) -> list[LaneNotice]:
        """Records attempts and the deliveries' new states, only where the lease still holds,
        and the outcomes in the endpoints' lanes (breaker, health: disabling, operator events);
        returns the lane changes that took effect (a breaker opened or closed, an endpoint
        disabled by this batch)."""
        ...

    async def settle_held(self, settled: Settled, now: float) -> bool:
        """``settle`` of one delivery whose lease must still hold: if it does not (lapsed and
        claimed again, or settled already), nothing is recorded, not even the attempt, and
        False is returned. A pull consumer's ack or nack."""
        ...

    async def extend_lease(self, delivery_id: str, lease_until: float, extended: float) -> bool:
        """Moves an in-flight delivery's lease from ``lease_until`` to ``extended`` (a slow
        consumer's handler); False, and nothing changed, when that lease is no longer its."""
        ...

    async def release_all_leases(self, now: float) -> int: ...

    async def next_due_at(self) -> float | None: ...

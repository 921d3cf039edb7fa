"""Publishing: a tenant's own service puts events into the log through the API.

Pure rules, no I/O: what a published event is (its dedupe namespace, its default idempotency
key), when one is refused (its data breaks its catalog type's schema), and how a batch is
judged (whole: one refusal refuses every event of it). Storing is the log's append, through
the same port and group commit as ingest, so a published event is deduped, routed, ordered,
replayed and traced like a partner's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from interlink.domain.ids import new_id
from interlink.domain.models import Event

ORIGIN = "api"
MAX_BATCH = 1000
# The prefix of a tenant's publishing "source": the namespace its idempotency keys live in.
SOURCE_PREFIX = "api_"


class Publication(msgspec.Struct, frozen=True):
    """One event as a service publishes it (decoded and bounded by the API)."""

    type: str
    data: dict[str, Any]
    key: str | None = None
    idempotency_key: str | None = None
    occurred_at: float | None = None


class Violation(msgspec.Struct, frozen=True):
    """Where a value breaks a schema: a JSON Pointer into the event's data, and why."""

    path: str
    message: str


class Refusal(msgspec.Struct, frozen=True):
    index: int  # the event's position in its batch (0 for a single event)
    path: str  # JSON Pointer from the event: /data/guest/email
    message: str

    def describe(self, batch: bool) -> str:
        where = f"events[{self.index}]{self.path}" if batch else self.path or "(root)"
        return f"{where}: {self.message}"


class PublishRefused(Exception):
    """Nothing of the batch may be stored: each refusal names its event and path."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        super().__init__("; ".join(r.describe(batch=True) for r in refusals))
        self.refusals = list(refusals)


class Schemas(Protocol):
    """The event catalog as publishing sees it."""

    def check(self, event_type: str, data: object) -> tuple[int, list[Violation]] | None:
        """None for a type the catalog does not have; else the version checked against (its
        newest) and what in ``data`` breaks it."""
        ...


def source_id(tenant_id: str) -> str:
    """The source id a tenant's published events carry: one per tenant, so one tenant's
    idempotency keys never meet another's (the log dedupes on source and key), and never a
    partner source's id (those are ``src_…``)."""
    return SOURCE_PREFIX + tenant_id.removeprefix("tnt_")


def prepare(
    tenant_id: str,
    batch: Sequence[Publication],
    now: float,
    schemas: Schemas,
    *,
    max_refusals: int = 10,
) -> list[Event]:
    """The events to append for ``batch``, in its order; ``PublishRefused`` naming every event
    and path that breaks its catalog schema (up to ``max_refusals``) when any does.

    An event without an idempotency key gets its own id as one: it is never a duplicate. Two
    events of one batch with the same key are one event, as two deliveries of a partner's
    webhook are: the first is stored, the second answered as its duplicate.
    """
    if len(batch) > MAX_BATCH:
        raise ValueError(f"a batch holds at most {MAX_BATCH} events")
    source = source_id(tenant_id)
    events: list[Event] = []
    refusals: list[Refusal] = []
    for index, p in enumerate(batch):
        version = None
        checked = schemas.check(p.type, p.data)
        if checked is not None:
            version, violations = checked
            refusals.extend(
                Refusal(index, "/data" + v.path, f"{v.message} (catalog type {p.type} v{version})")
                for v in violations
            )
        if refusals:
            if len(refusals) >= max_refusals:
                break
            continue
        event_id = new_id("event")
        data = msgspec.json.encode(p.data)
        events.append(
            Event(
                id=event_id,
                tenant_id=tenant_id,
                source_id=source,
                idempotency_key=p.idempotency_key or event_id,
                type=p.type,
                key=p.key,
                received_at=now,
                occurred_at=p.occurred_at,
                data=data,
                raw=data,  # what was published of it; type, key and times are columns
                headers={},
                origin=ORIGIN,
                schema_version=version,
            )
        )
    if refusals:
        raise PublishRefused(refusals[:max_refusals])
    return events

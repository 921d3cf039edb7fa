"""The normalization stage: between the log and routing, partner events become canonical ones.

The router hands it each batch it read. An event of a source with a kit is normalized into
canonical events, which are appended to the log (and routed when the router reaches them); the
partner's event itself is never routed. What fails goes to the quarantine with its reason. All
of a batch's appends, entity states, quarantine entries and the stage's own cursor are written
in one transaction: after a crash the stage sees from its cursor what it has done already, and
the canonical events' idempotency keys make a second append of one harmless.

A kit of thin notifications (``[api]`` in its kit.toml) needs the resource fetched from the
partner's API first. That happens before the transaction, never inside it: no lock or cursor is
held while the partner answers, and a batch's fetches together get ``fetch_deadline`` seconds.
What cannot be fetched now is quarantined with stage ``fetch_failed`` — the router goes on with
the other sources — and retried automatically (``retry_fetches``) on the ``fetch_retry``
schedule, never while the partner's breaker turns calls away; once the partner answers, the
event is normalized as if it had just come.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import structlog

from interlink.catalog.catalog import EventCatalog
from interlink.domain.models import Event
from interlink.domain.retry import RetryPolicy
from interlink.partners.fetcher import Fetcher, FetchFailed
from interlink.partners.gate import Candidate, Gate, quarantine_entry
from interlink.partners.hydration import NotificationError
from interlink.partners.kit import KitRegistry, PartnerKit
from interlink.partners.normalizer import Inbound
from interlink.partners.pipeline import Normalized, Rejected, Stage, normalize
from interlink.storage.normalization import (
    EntityRef,
    NormalizationStore,
    NormalizationWrite,
)
from interlink.storage.ports import CursorMoved, LogEntry, LogWriter
from interlink.storage.quarantine import QuarantineEntry

log = structlog.get_logger("interlink.normalization")

CURSOR = "normalizer"

# The waits before the automatic retries of a fetch; after the last, the entry stays open for
# an operator (reprocess). About a day in all.
FETCH_RETRY = RetryPolicy(schedule=(5, 15, 60, 300, 900, 1800, *(3600,) * 20), jitter=0.0)
_FETCH_CONCURRENCY = 16
# What the stage hands the normalizer of one event: its payload, or why there is none.
_Prepared = dict[str, Any]


class Reprocessed(msgspec.Struct, frozen=True):
    entry: QuarantineEntry  # the entry, resolved
    appended: list[str]  # ids of the canonical events now in the log
    quarantined: list[QuarantineEntry]  # where it stopped again, if it did


class Normalization:
    def __init__(
        self,
        store: NormalizationStore,
        events: LogWriter,
        kits: KitRegistry,
        catalog: EventCatalog,
        *,
        on_appended: Callable[[], None] | None = None,
        fetcher: Fetcher | None = None,
        fetch_deadline: float = 10.0,
        fetch_retry: RetryPolicy = FETCH_RETRY,
    ) -> None:
        self._store = store
        self._events = events
        self.kits = kits
        self.catalog = catalog
        self._on_appended = on_appended
        self.fetcher = fetcher
        self._fetch_deadline = fetch_deadline
        self.fetch_retry = fetch_retry
        self._position: int | None = None

    async def __call__(self, batch: Sequence[LogEntry]) -> list[LogEntry]:
        """The router's hook: normalizes what the batch holds and returns what is to be routed."""
        if not batch:
            return []
        # One query per batch, not a cache: whether a source has a kit is read with the batch,
        # so no event of a kit's source is ever routed as received.
        found = await self._store.partner_events(batch[0].seq - 1, batch[-1].seq)
        if not found:
            return list(batch)
        if self._position is None:
            self._position = await self._events.position(CURSOR)
        partner = [e for e, _ in found]
        kit_of = {e.source_id: kit for e, kit in found}
        todo = [e for e in partner if e.seq > self._position]
        if todo:
            prepared = await self._prepare(todo, kit_of)
            try:
                async with self._store.transaction() as tx:
                    # The cursor first: the stage of a second router blocks on it, then finds
                    # the batch done and writes nothing (on PostgreSQL; SQLite has one router).
                    await tx.move_cursor(CURSOR, batch[-1].seq, previous=self._position)
                    appended = await self._normalize(tx, todo, kit_of, prepared)
                    if appended:
                        await tx.notify_log()
            except CursorMoved:
                self._position = await self._events.position(CURSOR)
                appended = []
            else:
                self._position = batch[-1].seq
            if appended and self._on_appended is not None:
                self._on_appended()
        skip = {e.seq for e in partner}
        return [e for e in batch if e.seq not in skip]

    async def _normalize(
        self,
        tx: NormalizationWrite,
        raws: Sequence[Event],
        kit_of: dict[str, str],
        prepared: _Prepared,
        *,
        only_index: int | None = None,
    ) -> list[str]:
        """Normalizes, gates and writes; returns the ids of the canonical events appended."""
        offered: list[tuple[PartnerKit, Candidate]] = []
        rejected: list[QuarantineEntry] = []
        for raw in raws:
            kit_name = kit_of.get(raw.source_id)
            kit = self.kits.get(kit_name) if kit_name else None
            try:
                if kit_name is None:
                    raise Rejected(Stage.KIT, "the source names no partner kit any more")
                if kit is None:
                    raise Rejected(Stage.KIT, f"no partner kit '{kit_name}' is installed")
                made = self._run(kit, raw, prepared)
            except Rejected as exc:
                rejected.append(quarantine_entry(raw, exc.stage, exc.reason, kit, kit_name))
                log.info(
                    "normalization.quarantined",
                    tenant_id=raw.tenant_id,
                    source_id=raw.source_id,
                    event_id=raw.id,
                    stage=exc.stage.value,
                )
                continue
            for index, event in enumerate(made):
                if only_index is None or index == only_index:
                    offered.append((kit, _candidate(raw, index, event)))
        offered = await self._not_in_log(tx, offered)
        refs = [ref for kit, c in offered if (ref := _ref(kit, c)) is not None]
        gate = Gate(await tx.states(refs), await tx.held(refs))
        for kit, candidate in offered:
            gate.offer(kit, candidate)
        await gate.plan.write(tx, rejected)
        return [e.id for e in gate.plan.appends]

    def _run(self, kit: PartnerKit, raw: Event, prepared: _Prepared) -> list[Normalized]:
        payload = prepared[raw.id] if raw.id in prepared else _decoded(raw)
        if isinstance(payload, Rejected):
            raise payload
        return normalize(kit, self.catalog, Inbound(payload, raw.headers, raw.received_at))

    async def _prepare(self, raws: Sequence[Event], kit_of: dict[str, str]) -> _Prepared:
        """The payloads of the events whose kit fetches (outside any transaction), by event id;
        a payload that cannot be had is the Rejected to quarantine instead."""
        out: _Prepared = {}
        wanted = []
        for raw in raws:
            kit_name = kit_of.get(raw.source_id)
            kit = self.kits.get(kit_name) if kit_name else None
            if kit is not None and kit.api is not None:
                wanted.append((kit, raw))
        if not wanted:
            return out
        if self.fetcher is None:
            reason = "fetching from partner APIs is not configured in this process"
            return {raw.id: Rejected(Stage.FETCH, reason) for _, raw in wanted}
        fetcher = self.fetcher
        slots = asyncio.Semaphore(_FETCH_CONCURRENCY)

        async def one(kit: PartnerKit, raw: Event) -> Any:
            async with slots:
                payload = _decoded(raw)
                if isinstance(payload, Rejected):
                    return payload
                try:
                    return await fetcher.hydrate(kit, raw, payload)
                except NotificationError as exc:
                    return Rejected(Stage.INBOUND, str(exc))
                except FetchFailed as exc:
                    return Rejected(Stage.FETCH, str(exc))

        tasks = {raw.id: asyncio.create_task(one(kit, raw)) for kit, raw in wanted}
        _, late = await asyncio.wait(tasks.values(), timeout=self._fetch_deadline)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
        for event_id, task in tasks.items():
            if task in late:
                out[event_id] = Rejected(
                    Stage.FETCH, f"no answer within the stage's {self._fetch_deadline:g} s"
                )
            else:
                out[event_id] = task.result()
        return out

    async def _not_in_log(
        self, tx: NormalizationWrite, offered: list[tuple[PartnerKit, Candidate]]
    ) -> list[tuple[PartnerKit, Candidate]]:
        """Leaves out canonical events already appended (reprocessing part of an event)."""
        by_source: dict[str, list[str]] = {}
        for _, c in offered:
            by_source.setdefault(c.source_id, []).append(c.idempotency_key)
        there: set[tuple[str, str]] = set()
        for source_id, keys in by_source.items():
            there |= {(source_id, k) for k in await tx.existing(source_id, keys)}
        return [(k, c) for k, c in offered if (c.source_id, c.idempotency_key) not in there]

    async def reprocess(self, tenant_id: str, entry_id: str) -> Reprocessed | None:
        """Runs a quarantined event through the source's kit as it is now (after a fix)."""
        # Read, fetch (if the kit does) outside any transaction, then write under the lock.
        async with self._store.reading() as read:
            entry = await _open_entry(read, tenant_id, entry_id)
            raw = None if entry is None else await read.event(tenant_id, entry.event_id)
            if entry is None or raw is None:
                return None
            kit_of = await read.kits_of([raw.source_id])
        prepared = await self._prepare([raw], kit_of)
        async with self._store.transaction() as tx:
            entry = await _open_entry(tx, tenant_id, entry_id)
            if entry is None:
                return None
            await tx.resolve([entry.id], "reprocessed")
            before = {e.id for e in await tx.entries_of(raw.id)}
            appended = await self._normalize(
                tx, [raw], kit_of, prepared, only_index=entry.event_index
            )
            again = [e for e in await tx.entries_of(raw.id) if e.id not in before]
            if appended:
                await tx.notify_log()
        if appended and self._on_appended is not None:
            self._on_appended()
        resolved = msgspec.structs.replace(entry, resolved_at=time.time(), resolution="reprocessed")
        return Reprocessed(resolved, appended, again)

    async def retry_fetches(self, most: int = 100, page: int = 500) -> int:
        """Reprocesses up to ``most`` of the open ``fetch_failed`` entries that are due; how many
        it tried. Every open entry is looked at (a page at a time), so entries waiting long
        backoffs never keep due ones behind them from their turn."""
        tried, after = 0, None
        now = time.time()
        while tried < most:
            found = await self._store.open_entries(Stage.FETCH.value, page, after=after)
            if not found:
                break
            after = found[-1][0].id
            for entry, attempts in found:
                if tried >= most:
                    break
                if await self._retry_due(entry, attempts, now):
                    tried += 1
        return tried

    async def _retry_due(self, entry: QuarantineEntry, attempts: int, now: float) -> bool:
        delay = self.fetch_retry.next_delay(attempts - 1)
        if delay is None or now < entry.created_at + delay:
            return False  # not yet, or no more automatic tries (an operator's to reprocess)
        kit = self.kits.get(entry.kit or "")
        if kit is not None and self.fetcher and self.fetcher.blocked_until(kit):
            return False  # the partner's breaker is open: no new entry per refusal
        try:
            await self.reprocess(entry.tenant_id, entry.id)
        except AlreadyResolved:
            return False  # an operator (or another process) was first
        return True

    async def run_fetch_retries(self, interval: float) -> None:
        while True:
            try:
                await self.retry_fetches()
            except Exception:
                log.exception("normalization.fetch_retry_failed")
            await asyncio.sleep(interval)


async def _open_entry(
    tx: NormalizationWrite, tenant_id: str, entry_id: str
) -> QuarantineEntry | None:
    entry = await tx.entry(tenant_id, entry_id)
    if entry is not None and entry.resolved_at is not None:
        raise AlreadyResolved(f"quarantine entry '{entry_id}' is resolved already")
    return entry


def _decoded(raw: Event) -> Any:
    try:
        return msgspec.json.decode(raw.raw)
    except msgspec.DecodeError as exc:  # ingest accepts JSON only; kept for the record
        return Rejected(Stage.INBOUND, f"the body is not JSON: {exc}")


class AlreadyResolved(Exception):
    pass


def _candidate(raw: Event, index: int, event: Normalized) -> Candidate:
    return Candidate(
        tenant_id=raw.tenant_id,
        source_id=raw.source_id,
        raw_id=raw.id,
        index=index,
        event=Normalized(
            event.type,
            event.version,
            event.key,
            # A canonical event happened when the partner says; failing that, when it came.
            next(t for t in (event.occurred_at, raw.occurred_at, raw.received_at) if t is not None),
            event.data,
        ),
        received_at=raw.received_at,
        trace_context=raw.trace_context,
    )


def _ref(kit: PartnerKit, candidate: Candidate) -> EntityRef | None:
    found = kit.entity_for(candidate.event.type)
    if found is None or candidate.event.key is None:
        return None
    return EntityRef(candidate.source_id, found[0], candidate.event.key)

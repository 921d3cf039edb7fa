"""Reconciliation: pull a partner's recent state through its API, diff it against what Interlink
saw, and emit what is missing or behind as canonical events (``origin`` 'reconciliation').

For a source whose kit declares a reconciler (``[reconciler]`` in ``kit.toml``) and that has
reconciler settings (the partner API's URL, the OAuth connection, the interval), a run:

1. lists what changed at the partner since the last successful run (less an overlap), a page at
   a time, through the partner API client with the connection's token;
2. reads each item as the webhook it stands for and normalizes it with the kit's own mapping —
   one mapping for webhooks and reconciliation;
3. per page, in one transaction of the normalization store: diffs each entity against
   ``entity_states`` (``domain/reconciliation.py``), supersedes the held events the partner's
   state makes obsolete, and offers the corrections to the entity gate, as the normalization
   stage does — so the log stays a legal history per entity and nothing illegal is delivered;
4. records the run (``reconciliation_runs``) and the drift metrics.

Runs are scheduled per source (``next_run_at``), triggered by the API or the CLI, and leased,
so one process at a time runs a source's reconciliation.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec
import structlog

from interlink.catalog.catalog import EventCatalog
from interlink.domain.entity_state import Current
from interlink.domain.reconciliation import Drift, Outcome, reconcile
from interlink.partners.client import ClientPolicy, PartnerCallFailed, PartnerClient
from interlink.partners.gate import Candidate, Gate, held_candidate
from interlink.partners.kit import EntityGate, KitRegistry, PartnerKit, Reconciler
from interlink.partners.normalizer import Canonical, Inbound
from interlink.partners.outbound import PartnerSession
from interlink.partners.pipeline import Normalized, Rejected, Stage, normalize
from interlink.partners.tokens import TokenManager
from interlink.storage.management import Management
from interlink.storage.normalization import EntityRef, NormalizationStore
from interlink.storage.reconciliation import ReconcilerSettings, Reconciliations, Run

log = structlog.get_logger("interlink.reconciliation")

ORIGIN = "reconciliation"
# Each run lists from the previous successful run's start less this, so a change made while
# that run was listing (or a partner clock a little behind ours) is not missed.
OVERLAP_SECONDS = 300.0
MAX_PAGES = 10_000  # a partner whose cursor never ends cannot hold a run forever


class NotReconcilable(Exception):
    """The source has no kit with a reconciler, or no reconciler settings."""


class AlreadyRunning(Exception):
    """Another run of this source's reconciliation holds its lease."""


class _Listed(msgspec.Struct, frozen=True):
    event: Normalized  # the item, as its canonical event
    state: str
    order: float | None


class Reconciliation:
    def __init__(
        self,
        store: Reconciliations,
        normalization: NormalizationStore,
        management: Management,
        kits: KitRegistry,
        catalog: EventCatalog,
        session: PartnerSession,
        tokens: TokenManager,
        *,
        policy: ClientPolicy | None = None,
        poll_interval: float = 5.0,
        lease_seconds: float = 600.0,
        on_appended: Callable[[], None] | None = None,
        on_finished: Callable[[Run], None] | None = None,
    ) -> None:
        self.store = store
        self._normalization = normalization
        self._management = management
        self._kits = kits
        self._catalog = catalog
        self._session = session
        self._tokens = tokens
        self._policy = policy
        self._poll_interval = poll_interval
        self._lease_seconds = lease_seconds
        self._on_appended = on_appended
        self._on_finished = on_finished
        self._clients: dict[str, PartnerClient] = {}
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"

    # the scheduler -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Runs every due reconciliation, one at a time, forever (the scheduler role)."""
        while True:
            try:
                due = await self.store.due(time.time())
            except Exception:
                log.exception("reconciliation.due_failed")
                due = []
            for settings in due:
                try:
                    await self.run_source(settings.tenant_id, settings.source_id, "schedule")
                except (AlreadyRunning, NotReconcilable):
                    continue  # another process has it; or the kit lost its reconciler
                except Exception:
                    log.exception("reconciliation.run_crashed", source_id=settings.source_id)
            await asyncio.sleep(self._poll_interval)

    # one run -----------------------------------------------------------------------------------

    async def run_source(self, tenant_id: str, source_id: str, trigger: str) -> Run:
        settings = await self.store.get(tenant_id, source_id)
        source = await self._management.get_source(source_id, tenant_id)
        if settings is None or source is None:
            raise NotReconcilable(f"source '{source_id}' has no reconciler settings")
        kit = self._kits.get(source.kit) if source.kit else None
        if kit is None or kit.reconciler is None:
            raise NotReconcilable(f"source '{source_id}': its partner kit declares no reconciler")
        now = time.time()
        if not await self.store.take_lease(source_id, self.owner, now, now + self._lease_seconds):
            raise AlreadyRunning(f"a reconciliation of source '{source_id}' is running")
        try:
            last = await self.store.last_succeeded(source_id)
            since = 0.0 if last is None else max(0.0, last.started_at - OVERLAP_SECONDS)
            run = await self.store.start_run(tenant_id, source_id, trigger, since)
            run = await self._work(run, settings, kit, kit.reconciler)
        finally:
            await self.store.release_lease(
                source_id, self.owner, time.time() + settings.interval_seconds
            )
        if self._on_finished is not None:
            self._on_finished(run)
        log.info(
            "reconciliation.finished",
            tenant_id=tenant_id,
            source_id=source_id,
            run_id=run.id,
            status=run.status,
            **msgspec.structs.asdict(run.drift),
        )
        return run

    async def _work(
        self, run: Run, settings: ReconcilerSettings, kit: PartnerKit, reconciler: Reconciler
    ) -> Run:
        drift = Drift()
        first_error: str | None = None
        client = self._client(kit.name, settings.api_url)
        cursor: str | None = None
        try:
            for _ in range(MAX_PAGES):
                params = {reconciler.since_param: repr(run.since)}
                if cursor is not None:
                    params[reconciler.cursor_param] = cursor
                answer = await client.get(
                    reconciler.listing,
                    connection_id=settings.connection_id,
                    params=params,
                    fallback=False,
                )
                if answer.status != 200:
                    raise PartnerCallFailed(kit.name, f"the listing answered {answer.status}")
                items, cursor = reconciler.page(answer.json())
                drift.pulled += len(items)
                listed, errors = self._read(kit, reconciler, items)
                drift.errors += len(errors)
                first_error = first_error or (errors[0] if errors else None)
                error = await self._correct(run, kit, reconciler, listed, drift)
                first_error = first_error or error
                if cursor is None:
                    break
        except (PartnerCallFailed, ValueError) as exc:
            return await self.store.finish_run(run, drift, failed=True, error=str(exc))
        return await self.store.finish_run(run, drift, failed=False, error=first_error)

    def _client(self, partner: str, api_url: str) -> PartnerClient:
        client = self._clients.get(api_url)
        if client is None:
            client = PartnerClient(
                partner, api_url, self._session, tokens=self._tokens, policy=self._policy
            )
            self._clients[api_url] = client
        return client

    def _read(
        self, kit: PartnerKit, reconciler: Reconciler, items: list[Any]
    ) -> tuple[dict[str, _Listed], list[str]]:
        """The listed items as canonical events, by entity key; and what could not be read."""
        gate = kit.entities[reconciler.entity]
        listed: dict[str, _Listed] = {}
        errors: list[str] = []
        for item in items:
            try:
                made = normalize(kit, self._catalog, Inbound(reconciler.webhook_for(item)))
            except Rejected as exc:
                errors.append(f"{exc.stage.value}: {exc.reason}")
                continue
            for event in made:
                found = kit.entity_for(event.type)
                if event.key is None or found is None or found[0] != reconciler.entity:
                    continue
                canonical = _canonical(event)
                state, order = gate.target(canonical), gate.order(canonical)
                if state is None:
                    errors.append(f"{event.type} of '{event.key}' says no state")
                    continue
                before = listed.get(event.key)
                if before is None or (order or 0.0) >= (before.order or 0.0):
                    listed[event.key] = _Listed(event, state, order)
        return listed, errors

    async def _correct(
        self,
        run: Run,
        kit: PartnerKit,
        reconciler: Reconciler,
        listed: dict[str, _Listed],
        drift: Drift,
    ) -> str | None:
        """One page's corrections, in one transaction; returns the first conflict, if any."""
        if not listed:
            return None
        gate = kit.entities[reconciler.entity]
        refs = {key: EntityRef(run.source_id, reconciler.entity, key) for key in listed}
        first: str | None = None
        async with self._normalization.transaction() as tx:
            states = await tx.states(refs.values())
            held = await tx.held(refs.values())
            corrections: list[Candidate] = []
            obsolete: set[str] = set()
            for key, item in listed.items():
                seen = states.get(refs[key])
                current = None if seen is None else Current(seen.state, seen.ordinal)
                correction = reconcile(gate.machine, current, item.state, item.order)
                if correction.outcome is Outcome.CONFLICT:
                    drift.count(correction.outcome)
                    first = first or correction.reason
                    continue
                try:  # all of an entity's steps, or none of them
                    steps = [
                        self._step(
                            gate,
                            reconciler,
                            item,
                            state,
                            i,
                            len(correction.steps),
                            new=seen is None,
                        )
                        for i, state in enumerate(correction.steps)
                    ]
                except Rejected as exc:
                    drift.errors += 1
                    first = first or exc.reason
                    continue
                drift.count(correction.outcome)
                # Held events no newer than the partner's state are history the partner has
                # moved past: superseded, never to be released as if they were fine.
                obsolete |= {h.id for h in held if h.entity_key == key and _no_newer(gate, h, item)}
                for event in steps:
                    corrections.append(
                        Candidate(
                            tenant_id=run.tenant_id,
                            source_id=run.source_id,
                            raw_id=run.id,
                            index=drift.emitted + len(corrections),
                            event=event,
                            received_at=time.time(),
                            origin=ORIGIN,
                        )
                    )
            g = Gate(states, [h for h in held if h.id not in obsolete])
            for candidate in corrections:
                g.offer(kit, candidate)
            plan = g.plan
            await plan.write(tx)
            await tx.resolve(sorted(obsolete), "superseded")
            if plan.appends:
                await tx.notify_log()
        drift.emitted += len(plan.appends)
        drift.superseded += len(obsolete)
        if plan.appends and self._on_appended is not None:
            self._on_appended()
        return first

    def _step(
        self,
        gate: EntityGate,
        reconciler: Reconciler,
        item: _Listed,
        state: str,
        index: int,
        steps: int,
        *,
        new: bool,
    ) -> Normalized:
        """The canonical event of one step: the item's own event for the last one (unless the
        entity is new: then the kit's ``create`` type), otherwise a bridge to ``state``."""
        final = item.event
        if index == steps - 1 and not (new and index == 0 and reconciler.create):
            return final
        preferred = reconciler.create if new and index == 0 and reconciler.create else final.type
        event_type = _type_to(gate, state, preferred)
        if event_type is None:
            raise Rejected(Stage.TRANSITION, f"no {reconciler.entity} event moves it to {state}")
        how = gate.states[event_type]
        data = dict(final.data)
        if how.state_from is not None:
            data[how.state_from] = state
        version = self._catalog.latest(event_type).version
        errors = self._catalog.errors(event_type, version, data)
        if errors:
            raise Rejected(Stage.SCHEMA, f"{event_type} for '{final.key}': " + "; ".join(errors))
        return Normalized(event_type, version, final.key, final.occurred_at, data)


def _type_to(gate: EntityGate, state: str, preferred: str) -> str | None:
    """A canonical type that moves the entity to ``state``: ``preferred`` if it can, else one
    fixed to that state, else the first that takes its state from the data."""
    how = gate.states.get(preferred)
    if how is not None and (how.state_from is not None or how.state == state):
        return preferred
    fixed = [t for t, h in gate.states.items() if h.state == state]
    from_data = [t for t, h in gate.states.items() if h.state_from is not None]
    return next(iter(fixed + from_data), None)


def _canonical(event: Normalized) -> Canonical:
    return Canonical(event.type, event.key, event.occurred_at, event.data)


def _no_newer(gate: EntityGate, entry: Any, item: _Listed) -> bool:
    held = held_candidate(entry).event
    order = gate.order(_canonical(held))
    return order is None or item.order is None or order <= item.order

"""The entity gate: which canonical events go into the log now, which are held or quarantined.

Pure: it works on the entity states and held entries the stage read in its transaction, and
says what to write. Events are offered in log order; an accepted one may release held ones
that it makes legal (a ``confirmed`` that came before its ``created``), in their order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import msgspec

from interlink.domain.entity_state import Current, Rule, Verdict, decide, explain
from interlink.domain.ids import new_id
from interlink.domain.models import Event
from interlink.partners.kit import EntityGate, PartnerKit
from interlink.partners.normalizer import Canonical
from interlink.partners.pipeline import Normalized, Stage
from interlink.storage.normalization import EntityRef, EntityState, NormalizationWrite
from interlink.storage.quarantine import QuarantineEntry


class Candidate(msgspec.Struct, frozen=True):
    """A canonical event made from the partner's event ``raw_id``, not yet in the log."""

    tenant_id: str
    source_id: str
    raw_id: str
    index: int
    event: Normalized
    received_at: float
    trace_context: str | None = None
    # 'normalized' (from the partner's event ``raw_id``) or 'reconciliation' (made by the
    # reconciliation run ``raw_id`` from the partner's API)
    origin: str = "normalized"

    @property
    def idempotency_key(self) -> str:
        # The partner's event and the position among its canonical events: normalizing the same
        # event again makes the same keys, so the log keeps one copy.
        return f"{self.raw_id}#{self.index}"

    def as_event(self) -> Event:
        e = self.event
        return Event(
            id=new_id("event"),
            tenant_id=self.tenant_id,
            source_id=self.source_id,
            idempotency_key=self.idempotency_key,
            type=e.type,
            key=e.key,
            received_at=self.received_at,
            occurred_at=e.occurred_at,
            data=msgspec.json.encode(e.data),
            raw=b"",  # the partner's body is kept once, on the event it was derived from
            headers={},
            trace_context=self.trace_context,
            origin=self.origin,
            derived_from=self.raw_id,
            schema_version=e.version,
        )


def held_candidate(entry: QuarantineEntry) -> Candidate:
    assert entry.canonical is not None and entry.event_index is not None
    return msgspec.convert(entry.canonical, Candidate)


class Plan(msgspec.Struct):
    """What one transaction of the stage writes."""

    appends: list[Event] = msgspec.field(default_factory=list)
    states: dict[EntityRef, EntityState] = msgspec.field(default_factory=dict)
    quarantined: list[QuarantineEntry] = msgspec.field(default_factory=list)
    released: list[str] = msgspec.field(default_factory=list)

    async def write(self, tx: NormalizationWrite, rejected: Sequence[QuarantineEntry] = ()) -> None:
        """Into the stage's (or a reconciliation's) transaction: the one way a plan is kept."""
        await tx.append(self.appends)
        await tx.put_states(list(self.states.values()))
        await tx.quarantine([*rejected, *self.quarantined])
        await tx.resolve(self.released, "released")


def quarantine_entry(
    candidate_or_raw: Candidate | Event,
    stage: Stage,
    reason: str,
    kit: PartnerKit | None,
    kit_name: str | None = None,
    entity: str | None = None,
) -> QuarantineEntry:
    c = candidate_or_raw
    is_candidate = isinstance(c, Candidate)
    return QuarantineEntry(
        id=new_id("quarantine"),
        tenant_id=c.tenant_id,
        source_id=c.source_id,
        event_id=c.raw_id if isinstance(c, Candidate) else c.id,
        event_index=c.index if isinstance(c, Candidate) else None,
        stage=stage.value,
        reason=reason[:1000].replace("\x00", "\ufffd"),  # PostgreSQL text holds no NUL
        kit=kit.name if kit else kit_name,
        kit_version=kit.version if kit else None,
        entity=entity,
        entity_key=c.event.key if isinstance(c, Candidate) else None,
        canonical=msgspec.to_builtins(c) if is_candidate else None,
        created_at=time.time(),
    )


def _canonical(candidate: Candidate) -> Canonical:
    e = candidate.event
    return Canonical(e.type, e.key, e.occurred_at, e.data)


class Gate:
    def __init__(self, states: dict[EntityRef, EntityState], held: Iterable[QuarantineEntry]):
        self.plan = Plan()
        self._states = states
        self._held: dict[EntityRef, list[QuarantineEntry]] = {}
        for h in held:
            if h.entity is not None and h.entity_key is not None:
                ref = EntityRef(h.source_id, h.entity, h.entity_key)
                self._held.setdefault(ref, []).append(h)

    def offer(self, kit: PartnerKit, candidate: Candidate) -> None:
        found = kit.entity_for(candidate.event.type)
        if found is None:
            self.plan.appends.append(candidate.as_event())
            return
        name, gate = found
        if candidate.event.key is None:
            reason = f"{name}: the event has no key to tell which {name} it is"
            self._reject(kit, candidate, name, Stage.TRANSITION, reason)
            return
        if gate.target(_canonical(candidate)) is None:  # no later event can make this legal
            reason = f"{name}: the event does not say which state it moves the {name} to"
            self._reject(kit, candidate, name, Stage.TRANSITION, reason)
            return
        ref = EntityRef(candidate.source_id, name, candidate.event.key)
        verdict, reason = self._verdict(gate, ref, candidate)
        if verdict is Verdict.ACCEPT:
            self._accept(gate, ref, candidate)
            self._release(gate, ref)
        elif verdict is Verdict.OUT_OF_ORDER:
            self._reject(kit, candidate, name, Stage.OUT_OF_ORDER, reason)
        elif gate.machine.rule is Rule.HOLD:
            entry = quarantine_entry(candidate, Stage.HELD, reason, kit, entity=name)
            self._held.setdefault(ref, []).append(entry)
            self.plan.quarantined.append(entry)
        else:
            self._reject(kit, candidate, name, Stage.TRANSITION, reason)

    def _verdict(
        self, gate: EntityGate, ref: EntityRef, candidate: Candidate
    ) -> tuple[Verdict, str]:
        target = gate.target(_canonical(candidate))
        machine = gate.machine
        if target is None:
            return Verdict.ILLEGAL, f"{machine.name}: the event does not say which state"
        state = self._states.get(ref)
        current = Current(state.state, state.ordinal) if state is not None else None
        verdict = decide(machine, current, target, gate.order(_canonical(candidate)))
        return verdict, explain(machine, current, target, verdict)

    def _accept(self, gate: EntityGate, ref: EntityRef, candidate: Candidate) -> None:
        event = candidate.as_event()
        self.plan.appends.append(event)
        before = self._states.get(ref)
        order = gate.order(_canonical(candidate))
        if order is None and before is not None:
            order = before.ordinal
        target = gate.target(_canonical(candidate))
        assert target is not None
        state = EntityState(ref, candidate.tenant_id, target, order, event.id)
        self._states[ref] = state
        self.plan.states[ref] = state

    def _release(self, gate: EntityGate, ref: EntityRef) -> None:
        """Held events of this entity that are legal now go into the log, oldest first."""
        waiting = self._held.get(ref, [])
        progress = True
        while progress and waiting:
            progress = False
            for entry in sorted(waiting, key=lambda h: _order(gate, h)):
                candidate = held_candidate(entry)
                verdict, _ = self._verdict(gate, ref, candidate)
                if verdict is Verdict.ACCEPT:
                    waiting.remove(entry)
                    self._accept(gate, ref, candidate)
                    self._resolve(entry)
                    progress = True
                    break

    def _resolve(self, entry: QuarantineEntry) -> None:
        for i, new in enumerate(self.plan.quarantined):
            if new.id == entry.id:  # held and released within this transaction
                released = msgspec.structs.replace(
                    new, resolved_at=time.time(), resolution="released"
                )
                self.plan.quarantined[i] = released
                return
        self.plan.released.append(entry.id)

    def _reject(
        self, kit: PartnerKit, candidate: Candidate, entity: str, stage: Stage, reason: str
    ) -> None:
        self.plan.quarantined.append(quarantine_entry(candidate, stage, reason, kit, entity=entity))


def _order(gate: EntityGate, entry: QuarantineEntry) -> tuple[float, str]:
    order = gate.order(_canonical(held_candidate(entry)))
    return (order if order is not None else float("-inf"), entry.id)

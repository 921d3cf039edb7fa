"""Reconciliation's diff: what Interlink saw of an entity against what the partner says now (pure).

For each entity the partner lists, the diff decides whether Interlink is behind and, if so,
which states the entity must go through to arrive where the partner is — every step a legal
transition of the kit's state machine, so a correction is never delivered as an illegal one.

- Not seen at all: the shortest legal path from an initial state (a booking the partner lists
  as ``cancelled`` whose webhooks were all lost is introduced, then cancelled). The states before
  the last are *bridges*: the shortest way in, not a claim of the entity's real history.
- Seen in another state: the shortest legal path from that state.
- Seen in the same state, but an older revision (a missed modification): one step, the same
  state again — staying is always legal — carrying the partner's current data.
- Interlink's revision newer than the listing's: the listing is stale, nothing is done.
- No legal path (a ``cancelled`` booking the partner lists as ``confirmed``): a conflict, for an
  operator; nothing is emitted.

Every step carries the partner's order (revision), so later webhooks older than it arrive out of
order, and held ones it makes obsolete are superseded rather than released.
"""

from __future__ import annotations

import enum
from collections import deque

import msgspec

from interlink.domain.entity_state import Current, Machine


class Outcome(enum.StrEnum):
    UNCHANGED = "unchanged"  # Interlink is where the partner is (or ahead of its listing)
    MISSING = "missing"  # never seen: introduced through a legal path
    CORRECTED = "corrected"  # seen, but behind: moved on through a legal path
    CONFLICT = "conflict"  # behind, and no legal path leads to the partner's state


class Correction(msgspec.Struct, frozen=True):
    outcome: Outcome
    steps: tuple[str, ...] = ()  # the states to move the entity through, in order
    reason: str | None = None  # why a conflict is one


def reconcile(
    machine: Machine, seen: Current | None, partner_state: str, partner_order: float | None
) -> Correction:
    if partner_state not in machine.states:
        reason = f"{machine.name}: '{partner_state}' is not a state of this entity"
        return Correction(Outcome.CONFLICT, reason=reason)
    if seen is None:
        path = _shortest_path(machine, None, partner_state)
        if path is None:  # every declared state is reachable or not declared: kept for safety
            reason = f"{machine.name}: no legal way to start and reach '{partner_state}'"
            return Correction(Outcome.CONFLICT, reason=reason)
        return Correction(Outcome.MISSING, path)
    behind = partner_order is not None and (seen.order is None or partner_order > seen.order)
    ahead = partner_order is not None and seen.order is not None and partner_order < seen.order
    if ahead:
        return Correction(Outcome.UNCHANGED)
    if seen.state == partner_state:
        return (
            Correction(Outcome.CORRECTED, (partner_state,))
            if behind
            else Correction(Outcome.UNCHANGED)
        )
    path = _shortest_path(machine, seen.state, partner_state)
    if path is None:
        reason = f"{machine.name}: no legal path from '{seen.state}' to '{partner_state}'"
        return Correction(Outcome.CONFLICT, reason=reason)
    return Correction(Outcome.CORRECTED, path)


def _shortest_path(machine: Machine, start: str | None, goal: str) -> tuple[str, ...] | None:
    """The states after ``start`` up to ``goal`` (None: a new entity, from an initial state).

    Breadth first, neighbours in name order: the same machine always gives the same path.
    """
    queue: deque[tuple[str, ...]] = deque()
    visited: set[str] = set()
    for state in sorted(machine.initial) if start is None else [start]:
        queue.append((state,))
        visited.add(state)
    while queue:
        path = queue.popleft()
        if path[-1] == goal:
            return path if start is None else path[1:]
        for nxt in sorted(machine.transitions.get(path[-1], ())):
            if nxt not in visited:
                visited.add(nxt)
                queue.append((*path, nxt))
    return None


class Drift(msgspec.Struct):
    """What one reconciliation run found, by outcome; ``errors``: items it could not read."""

    pulled: int = 0
    missing: int = 0
    corrected: int = 0
    unchanged: int = 0
    conflicts: int = 0
    errors: int = 0
    emitted: int = 0  # canonical events appended (bridges included)
    superseded: int = 0  # held events made obsolete by a correction

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.MISSING:
            self.missing += 1
        elif outcome is Outcome.CORRECTED:
            self.corrected += 1
        elif outcome is Outcome.UNCHANGED:
            self.unchanged += 1
        else:
            self.conflicts += 1

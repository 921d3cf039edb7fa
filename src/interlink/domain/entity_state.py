"""Entity state machines declared by partner kits: is this event a legal next step? (pure)

A kit declares, per entity (a booking, a payment), the states an entity may start in and the
legal transitions. An event names the state it moves its entity to; staying in the same state
is always legal (an update that changes other fields). Events carry an order (the partner's
revision, or when it happened): one older than what was applied already arrives out of order.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import msgspec


class Rule(enum.StrEnum):
    """What happens to an event that would make an illegal transition."""

    QUARANTINE = "quarantine"  # kept for an operator, never delivered by itself
    HOLD = "hold"  # kept, and delivered as soon as a later event makes it legal


class Verdict(enum.StrEnum):
    ACCEPT = "accept"
    ILLEGAL = "illegal"
    OUT_OF_ORDER = "out_of_order"


class Machine(msgspec.Struct, frozen=True):
    name: str
    initial: frozenset[str]
    transitions: Mapping[str, frozenset[str]]
    rule: Rule = Rule.QUARANTINE

    def __post_init__(self) -> None:
        states = self.states
        for state, targets in self.transitions.items():
            unknown = targets - states
            if unknown:
                raise ValueError(
                    f"entity '{self.name}': state '{state}' leads to undeclared "
                    f"{', '.join(sorted(unknown))}"
                )
        if not self.initial:
            raise ValueError(f"entity '{self.name}' needs at least one initial state")

    @property
    def states(self) -> frozenset[str]:
        """The declared states: the initial ones and those with transitions (maybe none)."""
        return self.initial | frozenset(self.transitions)


class Current(msgspec.Struct, frozen=True):
    """Where an entity is: its state, and the order of the event that put it there."""

    state: str
    order: float | None = None


def decide(machine: Machine, current: Current | None, target: str, order: float | None) -> Verdict:
    if target not in machine.states:
        return Verdict.ILLEGAL
    if current is None:
        return Verdict.ACCEPT if target in machine.initial else Verdict.ILLEGAL
    if order is not None and current.order is not None and order < current.order:
        return Verdict.OUT_OF_ORDER
    if target == current.state or target in machine.transitions.get(current.state, ()):
        return Verdict.ACCEPT
    return Verdict.ILLEGAL


def explain(machine: Machine, current: Current | None, target: str, verdict: Verdict) -> str:
    """The reason an operator reads in the quarantine."""
    if verdict is Verdict.ACCEPT:
        return f"{machine.name} → {target}"
    if target not in machine.states:
        return f"{machine.name}: '{target}' is not a state of this entity"
    if verdict is Verdict.OUT_OF_ORDER:
        return (
            f"{machine.name}: out of order, older than the event that made it "
            f"'{current.state if current else '?'}'"
        )
    if current is None:
        starts = ", ".join(sorted(machine.initial))
        return f"{machine.name}: a new entity cannot start as '{target}' (it starts as {starts})"
    return f"{machine.name}: illegal transition '{current.state}' → '{target}'"

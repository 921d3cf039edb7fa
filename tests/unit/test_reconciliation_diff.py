"""Reconciliation's diff: for any machine, any state Interlink saw and any state the partner
reports, the corrections are legal step by step and end where the partner is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.entity_state import Current, Machine, Verdict, decide
from interlink.domain.reconciliation import Drift, Outcome, reconcile

BOOKING = Machine(
    name="booking",
    initial=frozenset({"tentative", "confirmed"}),
    transitions={
        "tentative": frozenset({"confirmed", "cancelled"}),
        "confirmed": frozenset({"cancelled"}),
        "cancelled": frozenset(),
    },
)

STATES = ["a", "b", "c", "d", "e"]


@st.composite
def machines(draw: st.DrawFn) -> Machine:
    names = draw(st.lists(st.sampled_from(STATES), min_size=1, max_size=5, unique=True))
    initial = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    transitions = {s: frozenset(draw(st.lists(st.sampled_from(names), unique=True))) for s in names}
    return Machine(name="thing", initial=frozenset(initial), transitions=transitions)


def reachable(machine: Machine, start: str | None, goal: str) -> bool:
    frontier = set(machine.initial) if start is None else {start}
    seen = set(frontier)
    while frontier:
        if goal in frontier:
            return True
        frontier = {n for s in frontier for n in machine.transitions.get(s, ())} - seen
        seen |= frontier
    return False


orders = st.none() | st.integers(0, 5).map(float)


@given(machines(), st.data(), orders, orders)
def test_corrections_are_legal_and_end_at_the_partner_state(
    machine: Machine, data: st.DataObject, seen_order: float | None, order: float | None
) -> None:
    states = sorted(machine.states)
    seen_state = data.draw(st.none() | st.sampled_from(states))
    partner = data.draw(st.sampled_from([*states, "unknown"]))
    seen = None if seen_state is None else Current(seen_state, seen_order)
    c = reconcile(machine, seen, partner, order)
    if c.outcome in (Outcome.MISSING, Outcome.CORRECTED):
        assert (c.outcome is Outcome.MISSING) == (seen is None)
        current = seen
        for step in c.steps:
            assert decide(machine, current, step, order) is Verdict.ACCEPT
            current = Current(step, order if order is not None else current and current.order)
        assert current is not None and current.state == partner
        # Nothing longer than needed: each state of the path at most once.
        assert len(set(c.steps)) == len(c.steps)
    elif c.outcome is Outcome.CONFLICT:
        assert not c.steps and c.reason
        start = None if seen is None else seen.state
        assert partner not in machine.states or not reachable(machine, start, partner)
    else:
        assert seen is not None and not c.steps
        ahead = order is not None and seen.order is not None and order < seen.order
        assert ahead or seen.state == partner


@given(machines(), st.data(), orders)
def test_applying_the_correction_leaves_nothing_to_correct(
    machine: Machine, data: st.DataObject, order: float | None
) -> None:
    """Idempotent: a second run over the state the first one left finds the entity unchanged."""
    states = sorted(machine.states)
    seen_state = data.draw(st.none() | st.sampled_from(states))
    partner = data.draw(st.sampled_from(states))
    seen = None if seen_state is None else Current(seen_state, data.draw(orders))
    first = reconcile(machine, seen, partner, order)
    if first.outcome in (Outcome.MISSING, Outcome.CORRECTED):
        after = Current(first.steps[-1], order if order is not None else seen and seen.order)
        assert reconcile(machine, after, partner, order).outcome is Outcome.UNCHANGED


def test_a_booking_never_seen_and_cancelled_is_introduced_then_cancelled() -> None:
    c = reconcile(BOOKING, None, "cancelled", 4.0)
    assert c.outcome is Outcome.MISSING and c.steps == ("confirmed", "cancelled")
    assert reconcile(BOOKING, None, "tentative", 1.0).steps == ("tentative",)


def test_a_missed_modification_is_one_step_in_the_same_state() -> None:
    c = reconcile(BOOKING, Current("confirmed", 2.0), "confirmed", 3.0)
    assert c.outcome is Outcome.CORRECTED and c.steps == ("confirmed",)
    assert reconcile(BOOKING, Current("confirmed", 3.0), "confirmed", 3.0).outcome is (
        Outcome.UNCHANGED
    )


def test_a_stale_listing_changes_nothing_and_a_terminal_state_is_a_conflict() -> None:
    assert reconcile(BOOKING, Current("cancelled", 5.0), "confirmed", 4.0).outcome is (
        Outcome.UNCHANGED
    )
    c = reconcile(BOOKING, Current("cancelled", 5.0), "confirmed", 6.0)
    assert c.outcome is Outcome.CONFLICT and "'cancelled' to 'confirmed'" in (c.reason or "")
    assert reconcile(BOOKING, None, "lost", 1.0).outcome is Outcome.CONFLICT


def test_drift_counts_by_outcome() -> None:
    d = Drift()
    for o in (Outcome.MISSING, Outcome.CORRECTED, Outcome.CORRECTED, Outcome.CONFLICT):
        d.count(o)
    d.count(Outcome.UNCHANGED)
    assert (d.missing, d.corrected, d.unchanged, d.conflicts) == (1, 2, 1, 1)

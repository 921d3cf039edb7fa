"""Entity state machines: an illegal transition is never accepted, an older event is out of
order, and the gate neither drops an event nor lets one through that breaks the machine."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.entity_state import Current, Machine, Rule, Verdict, decide, explain
from interlink.partners.gate import Candidate, Gate
from interlink.partners.kit import KitRegistry
from interlink.partners.pipeline import Normalized
from interlink.storage.normalization import EntityRef

BOOKING = Machine(
    name="booking",
    initial=frozenset({"tentative", "confirmed"}),
    transitions={
        "tentative": frozenset({"confirmed", "cancelled"}),
        "confirmed": frozenset({"cancelled"}),
        "cancelled": frozenset(),
    },
)
STATES = [*sorted(BOOKING.states), "unknown"]
orders = st.none() | st.floats(min_value=0, max_value=100, allow_nan=False)


@given(
    current=st.none() | st.builds(Current, st.sampled_from(sorted(BOOKING.states)), orders),
    target=st.sampled_from(STATES),
    order=orders,
)
def test_accepted_means_legal(current: Current | None, target: str, order: float | None) -> None:
    verdict = decide(BOOKING, current, target, order)
    if verdict is Verdict.ACCEPT:
        if current is None:
            assert target in BOOKING.initial
        else:
            assert target == current.state or target in BOOKING.transitions[current.state]
            assert order is None or current.order is None or order >= current.order
    older = current is not None and current.order is not None and order is not None
    if older and target in BOOKING.states and order < current.order:  # type: ignore[operator,union-attr]
        assert verdict is Verdict.OUT_OF_ORDER
    assert explain(BOOKING, current, target, verdict)


def test_examples() -> None:
    assert decide(BOOKING, None, "confirmed", 1) is Verdict.ACCEPT
    assert decide(BOOKING, None, "cancelled", 1) is Verdict.ILLEGAL
    assert decide(BOOKING, Current("cancelled", 3), "confirmed", 4) is Verdict.ILLEGAL
    assert decide(BOOKING, Current("confirmed", 3), "confirmed", 4) is Verdict.ACCEPT
    assert decide(BOOKING, Current("confirmed", 3), "cancelled", 2) is Verdict.OUT_OF_ORDER
    assert "illegal transition 'cancelled' → 'confirmed'" in explain(
        BOOKING, Current("cancelled"), "confirmed", Verdict.ILLEGAL
    )


def test_a_machine_must_be_closed() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        Machine("x", frozenset({"a"}), {"a": frozenset({"b"})}, Rule.HOLD)
    with pytest.raises(ValueError, match="initial"):
        Machine("x", frozenset(), {"a": frozenset()})


# The gate over a real kit's machine: Alpha holds bookings and orders them by revision.
ALPHA = KitRegistry.installed().get("pms_alpha")
assert ALPHA is not None
LEGAL_PATH = [
    ("booking.created", "tentative"),
    ("booking.updated", "confirmed"),
    ("booking.updated", "confirmed"),
    ("booking.cancelled", "cancelled"),
]


def _candidate(index: int, event_type: str, status: str) -> Candidate:
    data = {"status": status, "revision": index}
    event = Normalized(event_type, 1, "AR-1", float(index), data)
    return Candidate("tnt", "src", f"evt_{index}", 0, event, 0.0)


@given(order=st.permutations(range(len(LEGAL_PATH))))
def test_the_gate_drops_nothing_and_lets_only_legal_paths_through(order: list[int]) -> None:
    gate = Gate({}, [])
    for i in order:
        assert ALPHA is not None
        gate.offer(ALPHA, _candidate(i, *LEGAL_PATH[i]))
    plan = gate.plan
    appended = [e.derived_from for e in plan.appends]
    open_entries = [q for q in plan.quarantined if q.resolved_at is None]
    released = [q for q in plan.quarantined if q.resolved_at is not None]
    # Every event is delivered, or kept in the quarantine; none is both, none is lost.
    assert sorted([*appended, *(q.event_id for q in open_entries)]) == sorted(
        f"evt_{i}" for i in order
    )
    # What was delivered walks the machine legally, in order of revision.
    revisions = [int(a.removeprefix("evt_")) for a in appended if a]
    assert revisions == sorted(revisions)
    state = None
    for rev in revisions:
        target = LEGAL_PATH[rev][1]
        assert decide(BOOKING, state, target, rev) is Verdict.ACCEPT
        state = Current(target, rev)
    assert plan.states[EntityRef("src", "booking", "AR-1")].state == (state.state if state else "")
    assert all(q.resolution == "released" for q in released)


def test_in_order_events_all_pass() -> None:
    gate = Gate({}, [])
    for i, (event_type, status) in enumerate(LEGAL_PATH):
        assert ALPHA is not None
        gate.offer(ALPHA, _candidate(i, event_type, status))
    assert len(gate.plan.appends) == len(LEGAL_PATH) and gate.plan.quarantined == []


def test_a_confirmation_before_its_booking_is_held_then_released() -> None:
    gate = Gate({}, [])
    assert ALPHA is not None
    gate.offer(ALPHA, _candidate(3, "booking.cancelled", "cancelled"))
    assert gate.plan.appends == [] and gate.plan.quarantined[0].stage == "held"
    gate.offer(ALPHA, _candidate(1, "booking.created", "confirmed"))
    assert [e.type for e in gate.plan.appends] == ["booking.created", "booking.cancelled"]
    assert gate.plan.quarantined[0].resolution == "released"


def test_a_held_event_the_kit_no_longer_knows_stays_held() -> None:
    from interlink.partners.gate import quarantine_entry
    from interlink.partners.pipeline import Stage

    odd = Candidate("tnt", "src", "evt_9", 0, Normalized("booking.paused", 1, "AR-1", 9.0, {}), 0)
    entry = quarantine_entry(odd, Stage.HELD, "held", ALPHA, entity="booking")
    gate = Gate({}, [entry])
    assert ALPHA is not None
    gate.offer(ALPHA, _candidate(1, "booking.created", "confirmed"))
    assert [e.type for e in gate.plan.appends] == ["booking.created"]
    assert gate.plan.released == []


def test_kit_names_must_fit_their_columns() -> None:
    from interlink.partners.kit import PartnerKit

    assert ALPHA is not None
    with pytest.raises(ValueError, match="kit name"):
        PartnerKit(name="k" * 101, version="1", normalizer=ALPHA.normalizer)


def test_an_event_without_a_state_is_quarantined_not_held() -> None:
    gate = Gate({}, [])
    assert ALPHA is not None
    no_state = Candidate("t", "s", "evt_1", 0, Normalized("booking.updated", 1, "AR-1", 1.0, {}), 0)
    gate.offer(ALPHA, no_state)
    (entry,) = gate.plan.quarantined
    assert entry.stage == "transition" and "does not say which state" in entry.reason


booking_events = st.tuples(
    st.sampled_from(["booking.created", "booking.updated", "booking.cancelled"]),
    st.sampled_from(["tentative", "confirmed", "cancelled", "bogus"]),
    st.integers(min_value=0, max_value=6),
)


@given(events=st.lists(booking_events, max_size=12))
def test_any_stream_delivers_only_a_legal_ordered_path_and_keeps_the_rest(
    events: list[tuple[str, str, int]],
) -> None:
    gate = Gate({}, [])
    assert ALPHA is not None
    offered = []
    for i, (event_type, status, revision) in enumerate(events):
        data = {"status": status, "revision": revision}
        c = Candidate("t", "s", f"evt_{i}", 0, Normalized(event_type, 1, "AR-1", 0.0, data), 0)
        offered.append(c.raw_id)
        gate.offer(ALPHA, c)
    plan = gate.plan
    kept = [q.event_id for q in plan.quarantined if q.resolved_at is None]
    delivered = [e.derived_from for e in plan.appends]
    assert sorted([*delivered, *kept]) == sorted(offered)  # nothing lost, nothing twice
    state: Current | None = None
    by_id = dict(zip(offered, events, strict=True))
    for raw_id in delivered:
        event_type, status, revision = by_id[raw_id or ""]
        target = "cancelled" if event_type == "booking.cancelled" else status
        assert decide(BOOKING, state, target, revision) is Verdict.ACCEPT
        state = Current(target, revision)

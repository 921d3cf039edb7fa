import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.delivery import DeliveryStatus
from interlink.domain.ordering import OnHeadDead, PendingDelivery, select_sendable

PENDING = DeliveryStatus.PENDING
SCHEDULED = DeliveryStatus.SCHEDULED
IN_FLIGHT = DeliveryStatus.IN_FLIGHT
SUCCEEDED = DeliveryStatus.SUCCEEDED
DEAD = DeliveryStatus.DEAD
NOW = 1_700_000_000.0


def d(
    delivery_id: str,
    key: str | None,
    seq: int,
    status: DeliveryStatus = PENDING,
    due_at: float = NOW,
) -> PendingDelivery:
    return PendingDelivery(delivery_id, key, seq, status, due_at)


def sendable(
    pending: list[PendingDelivery],
    in_flight: set[str] | None = None,
    on_head_dead: OnHeadDead = OnHeadDead.WAIT,
) -> tuple[str, ...]:
    return select_sendable(pending, in_flight or set(), NOW, on_head_dead).sendable


def test_only_the_head_of_each_key() -> None:
    pending = [d("a3", "a", 3), d("a1", "a", 1), d("b7", "b", 7), d("a2", "a", 2)]
    assert sendable(pending) == ("a1", "b7")


def test_a_key_in_flight_sends_nothing_more() -> None:
    pending = [d("a2", "a", 2), d("b1", "b", 1)]
    assert sendable(pending, in_flight={"a"}) == ("b1",)


def test_a_delivery_in_flight_holds_its_key_while_its_lease_holds() -> None:
    pending = [d("a1", "a", 1, IN_FLIGHT, due_at=NOW + 60), d("a2", "a", 2)]
    assert sendable(pending) == ()  # even if the caller forgot the key in in_flight_keys
    lapsed = [d("a1", "a", 1, IN_FLIGHT, due_at=NOW - 1), d("a2", "a", 2)]
    assert sendable(lapsed) == ("a1",)  # the lease lapsed: the head is sent again


def test_a_head_not_yet_due_holds_its_key() -> None:
    pending = [d("a1", "a", 1, SCHEDULED, due_at=NOW + 300), d("a2", "a", 2)]
    assert sendable(pending) == ()


def test_succeeded_deliveries_are_not_heads() -> None:
    pending = [d("a1", "a", 1, SUCCEEDED), d("a2", "a", 2, SCHEDULED, due_at=NOW - 5)]
    assert sendable(pending) == ("a2",)


def test_a_dead_head_blocks_its_key_when_waiting() -> None:
    pending = [d("a1", "a", 1, DEAD), d("a2", "a", 2), d("b1", "b", 1)]
    selection = select_sendable(pending, set(), NOW)
    assert selection.sendable == ("b1",)
    assert selection.blocked == {"a": "a1"}


def test_a_dead_head_is_passed_over_when_skipping() -> None:
    pending = [d("a1", "a", 1, DEAD), d("a2", "a", 2), d("b1", "b", 1)]
    selection = select_sendable(pending, set(), NOW, OnHeadDead.SKIP)
    assert selection.sendable == ("b1", "a2")  # equally due: log order
    assert selection.blocked == {}


def test_an_operator_retry_unblocks_the_key() -> None:
    pending = [d("a1", "a", 1, PENDING), d("a2", "a", 2)]  # a1 was dead, now redriven
    assert sendable(pending) == ("a1",)


def test_keyless_deliveries_are_unordered() -> None:
    pending = [
        d("x1", None, 1),
        d("x2", None, 2),
        d("x3", None, 3, SCHEDULED, due_at=NOW + 1),
        d("x4", None, 4, DEAD),
        d("x5", None, 5, IN_FLIGHT, due_at=NOW + 60),
    ]
    assert sendable(pending, in_flight={"a"}) == ("x1", "x2")


def test_earliest_due_first() -> None:
    pending = [
        d("b1", "b", 1, SCHEDULED, due_at=NOW - 10),
        d("x1", None, 5, due_at=NOW - 20),
        d("a1", "a", 2, due_at=NOW),
    ]
    assert sendable(pending) == ("x1", "b1", "a1")


@pytest.mark.parametrize("policy", list(OnHeadDead))
def test_nothing_pending_nothing_to_send(policy: OnHeadDead) -> None:
    selection = select_sendable([], {"a"}, NOW, policy)
    assert selection.sendable == () and selection.blocked == {}


def test_the_default_is_to_wait() -> None:
    assert select_sendable([d("a1", "a", 1, DEAD)], set(), NOW).blocked == {"a": "a1"}


# --- a simulated ordered endpoint -----------------------------------------------------------

MAX_ATTEMPTS = 3


class Sim:
    """A dispatcher and a receiver on a discrete clock, sending only what the rule allows."""

    def __init__(
        self, keys: list[str | None], failures: list[int], rng: random.Random, policy: OnHeadDead
    ) -> None:
        self.rng = rng
        self.policy = policy
        self.keys = keys
        self.failures = failures  # failed attempts before the receiver takes it
        n = len(keys)
        arrival, self.arrivals = 0, []
        for _ in range(n):
            arrival += rng.choice([0, 0, 1, 2])  # in log order, some in the same tick
            self.arrivals.append(arrival)
        self.status: dict[int, DeliveryStatus] = {}  # arrived deliveries only
        self.due: dict[int, float] = {}
        self.attempts = [0] * n
        self.finishes: dict[int, int] = {}  # in flight → the tick it answers
        self.attempted: dict[str, list[int]] = {}  # key → seqs in the order they were sent

    def pending(self, now: int) -> list[PendingDelivery]:
        out = []
        for i, status in self.status.items():
            due = self.finishes[i] + 1000 if status is IN_FLIGHT else self.due[i]
            out.append(PendingDelivery(f"d{i}", self.keys[i], i, status, due))
        self.rng.shuffle(out)  # any order the database may return them in
        return out

    def answer(self, now: int) -> None:
        for i, at in list(self.finishes.items()):
            if at > now:
                continue
            del self.finishes[i]
            self.attempts[i] += 1
            key = self.keys[i]
            if self.attempts[i] > self.failures[i]:
                if key is not None:
                    earlier = [j for j in self.status if self.keys[j] == key and j < i]
                    done = {SUCCEEDED} if self.policy is OnHeadDead.WAIT else {SUCCEEDED, DEAD}
                    # Received in order: everything before it in its key is already done.
                    assert all(self.status[j] in done for j in earlier)
                self.status[i] = SUCCEEDED
            elif self.attempts[i] >= MAX_ATTEMPTS:
                self.status[i] = DEAD
            else:
                self.status[i] = SCHEDULED
                self.due[i] = now + self.rng.choice([0, 1, 3])

    def step(self, now: int) -> bool:
        """One tick; False when nothing can happen any more."""
        self.answer(now)
        for i, at in enumerate(self.arrivals):
            if at <= now and i not in self.status:
                self.status[i] = PENDING
                self.due[i] = now
        in_flight_keys = {k for i in self.finishes if (k := self.keys[i]) is not None}
        told = {k for k in in_flight_keys if self.rng.random() < 0.8}  # it may not know them all
        selection = select_sendable(self.pending(now), told, now, self.policy)
        chosen = [int(s[1:]) for s in selection.sendable]
        sent_keys = [self.keys[i] for i in chosen if self.keys[i] is not None]
        assert len(sent_keys) == len(set(sent_keys)), "two of one key at once"
        for i in chosen[: self.rng.randint(0, len(chosen))]:  # limited concurrency
            key = self.keys[i]
            if key is not None:
                assert key not in in_flight_keys, "two in flight for one key"
                seqs = self.attempted.setdefault(key, [])
                assert not seqs or seqs[-1] <= i, "sent out of event_seq order"
                seqs.append(i)
            self.status[i] = IN_FLIGHT
            self.finishes[i] = now + self.rng.choice([0, 1, 2])
        return bool(
            self.finishes
            or len(self.status) < len(self.keys)
            or selection.sendable
            or any(self.due[i] > now for i, s in self.status.items() if s is SCHEDULED)
        )

    def run(self) -> None:
        for now in range(20_000):
            if not self.step(now):
                return
        raise AssertionError("the simulation never settled")


ordering_keys = st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=40)


@given(ordering_keys, st.data(), st.integers(0, 2**32), st.sampled_from(list(OnHeadDead)))
def test_each_key_is_sent_in_order_one_at_a_time(
    keys: list[str | None], data: st.DataObject, seed: int, policy: OnHeadDead
) -> None:
    failures = data.draw(st.lists(st.integers(0, 4), min_size=len(keys), max_size=len(keys)))
    sim = Sim(keys, failures, random.Random(seed), policy)
    sim.run()  # asserts order and one-in-flight at every tick

    for key in set(keys):
        mine = sorted(i for i, k in enumerate(keys) if k == key)
        statuses = [sim.status[i] for i in mine]
        if key is None or policy is OnHeadDead.SKIP:
            # Every key drains: each delivery succeeded or was dead-lettered.
            assert set(statuses) <= {SUCCEEDED, DEAD}
            continue
        # Waiting: succeeded up to a dead head, and nothing after it was ever attempted.
        if DEAD in statuses:
            head = statuses.index(DEAD)
            assert set(statuses[:head]) <= {SUCCEEDED}
            assert all(sim.attempts[i] == 0 for i in mine[head + 1 :])
            assert failures[mine[head]] >= MAX_ATTEMPTS
        else:
            # A key with no dead head drains, however stuck the other keys are.
            assert set(statuses) == {SUCCEEDED}


@given(st.integers(0, 2**32))
def test_a_stuck_key_never_blocks_another(seed: int) -> None:
    keys: list[str | None] = ["stuck", "free", None, "stuck", "free", "free", "stuck", None]
    failures = [MAX_ATTEMPTS, 1, 2, 0, 0, 2, 0, 0]  # "stuck" dies at its head
    sim = Sim(keys, failures, random.Random(seed), OnHeadDead.WAIT)
    sim.run()
    assert [sim.status[i] for i in (1, 2, 4, 5, 7)] == [SUCCEEDED] * 5
    assert [sim.status[i] for i in (0, 3, 6)] == [DEAD, PENDING, PENDING]
    blocked = select_sendable(sim.pending(10**6), set(), 10**6).blocked
    assert blocked == {"stuck": "d0"}

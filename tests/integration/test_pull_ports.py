"""Pull endpoints in the storage conformance suite: the claim scoped to one pull endpoint, the
poller's probe and the held-lease settlement, on every adapter (the ``stores`` fixture of
test_storage_ports: the SQLite driver, SQLAlchemy on SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

import msgspec
from tests.integration import test_storage_ports
from tests.integration.test_storage_ports import Stores, endpoint, routed

from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.delivery import DeliveryStatus
from interlink.domain.models import EndpointKind
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.domain.pull import Answer, settle_answer
from interlink.domain.retry import RetryPolicy
from interlink.storage.ports import Claimed, Settled

PULL = EndpointKind.PULL
stores = test_storage_ports.stores  # the fixture: every adapter


def answered(c: Claimed, answer: Answer, now: float) -> Settled:
    result, decision = settle_answer(
        c.attempt_count, answer, 0.0, RetryPolicy(schedule=c.retry_schedule, jitter=0)
    )
    return Settled(c, now, result, decision)


async def test_pull_deliveries_wait_for_their_claim_and_push_ones_for_the_dispatcher(
    stores: Stores,
) -> None:
    t, _ = await stores.management.create_tenant("t")
    push = await endpoint(stores, t.id)
    pull = await endpoint(stores, t.id, kind=PULL)
    (to_push,) = await routed(stores, t.id, push, ["k"], name="a")
    (to_pull,) = await routed(stores, t.id, pull, ["k"], name="b")
    now = time.time() + 1
    assert await stores.queue.claimable([pull, push], now) == {pull}
    assert await stores.queue.next_due_at() is not None
    (sent,) = await stores.queue.claim_due(now, 10, 30)  # the dispatcher: push only
    assert sent.delivery_id == to_push
    assert await stores.queue.next_due_at() is not None  # only the push lease
    assert await stores.queue.claim_due(now, 10, 30, push) == []  # a push endpoint: not claimed
    (claimed,) = await stores.queue.claim_due(now, 10, 30, pull)
    assert claimed.delivery_id == to_pull and claimed.key == "k"
    assert claimed.event_data == b'{"n": 1}' and claimed.attempt_count == 0
    assert await stores.queue.claimable([pull], now) == set()  # leased


async def test_an_ordered_pull_endpoint_offers_only_each_keys_head(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, kind=PULL, ordering=Ordering.ORDERED)
    ids = await routed(stores, t.id, ep, ["a", "b", "a", "a"])
    now = time.time() + 1
    first = await stores.queue.claim_due(now, 100, 30, ep)
    assert sorted(c.delivery_id for c in first) == sorted(ids[:2])
    assert await stores.queue.claimable([ep], now) == set()  # heads leased: nothing to wake for
    head_a = next(c for c in first if c.delivery_id == ids[0])
    assert await stores.queue.settle_held(answered(head_a, Answer(True), now), now)
    assert await stores.queue.claimable([ep], now) == {ep}
    (second,) = await stores.queue.claim_due(now, 100, 30, ep)
    assert second.delivery_id == ids[2]


async def test_an_answer_under_a_lost_lease_settles_nothing(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, kind=PULL)
    (delivery,) = await routed(stores, t.id, ep, [None])
    now = time.time() + 1
    (old,) = await stores.queue.claim_due(now, 10, lease_seconds=1, endpoint_id=ep)
    (new,) = await stores.queue.claim_due(now + 2, 10, 30, ep)  # lapsed, claimed again
    assert new.lease_until != old.lease_until
    assert not await stores.queue.settle_held(answered(old, Answer(True), now + 2), now + 2)
    assert await stores.deliveries.attempts(t.id, delivery) == []  # not even the attempt
    assert await stores.queue.settle_held(answered(new, Answer(True), now + 2), now + 2)
    d = await stores.deliveries.get(t.id, delivery)
    assert d is not None and d.status == DeliveryStatus.SUCCEEDED and d.attempt_count == 1
    # settled: the same lease again settles nothing either
    assert not await stores.queue.settle_held(answered(new, Answer(True), now + 3), now + 3)
    assert len(await stores.deliveries.attempts(t.id, delivery)) == 1


async def test_nacks_follow_the_retry_schedule_to_a_dead_letter_that_redrives(
    stores: Stores,
) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, kind=PULL, retry=RetryPolicy(schedule=(0, 60)))
    (delivery,) = await routed(stores, t.id, ep, [None])
    now = time.time() + 1
    (c,) = await stores.queue.claim_due(now, 10, 30, ep)
    assert await stores.queue.settle_held(answered(c, Answer(False, "boom"), now), now)
    d = await stores.deliveries.get(t.id, delivery)
    assert d is not None and d.status == DeliveryStatus.SCHEDULED
    assert d.next_attempt_at is not None and d.next_attempt_at > now + 30
    assert await stores.queue.claim_due(now, 10, 30, ep) == []  # not before its retry
    (c,) = await stores.queue.claim_due(now + 61, 10, 30, ep)
    assert c.attempt_count == 1
    assert await stores.queue.settle_held(answered(c, Answer(False, "again"), now + 61), now + 61)
    d = await stores.deliveries.get(t.id, delivery)
    assert d is not None and d.status == DeliveryStatus.DEAD and d.last_error == "again"
    assert [a.error for a in await stores.deliveries.attempts(t.id, delivery)] == ["boom", "again"]
    assert await stores.deliveries.retry(t.id, delivery) is not None  # redrive, in place
    (c,) = await stores.queue.claim_due(time.time() + 1, 10, 30, ep)
    assert c.delivery_id == delivery and c.attempt_count == 2


async def test_concurrent_consumers_never_hold_the_same_delivery(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(
        stores, t.id, kind=PULL, concurrency=100, breaker=BreakerPolicy(min_attempts=100)
    )
    ids = await routed(stores, t.id, ep, [None] * 40)
    now = time.time() + 1
    batches = await asyncio.gather(*(stores.queue.claim_due(now, 7, 30, ep) for _ in range(8)))
    claimed = [c.delivery_id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed))
    rest = [c.delivery_id for c in await stores.queue.claim_due(now, 100, 30, ep)]
    assert sorted(claimed + rest) == sorted(ids)


async def test_an_ordered_pull_claim_finds_heads_by_key_whatever_the_backlog(
    stores: Stores,
) -> None:
    # Keys with deep backlogs, keyless deliveries between them, a dead head that holds its key
    # (wait) or not (skip), and a scheduled head: only due heads and due keyless ones come.
    t, _ = await stores.management.create_tenant("t")
    policy = RetryPolicy(schedule=(0,), jitter=0)
    for on_head_dead in (OnHeadDead.WAIT, OnHeadDead.SKIP):
        ep = await endpoint(
            stores,
            t.id,
            kind=PULL,
            ordering=Ordering.ORDERED,
            on_head_dead=on_head_dead,
            retry=policy,
            concurrency=100,
            breaker=BreakerPolicy(min_attempts=100),
        )
        keys: list[str | None] = ["a", "b", None, "c"] * 30
        ids = await routed(stores, t.id, ep, keys, name=f"{on_head_dead}-")
        now = time.time() + 1
        first = await stores.queue.claim_due(now, 100, 30, ep)
        keyless = {d for d, k in zip(ids, keys, strict=True) if k is None}
        heads = {ids[0], ids[1], ids[3]}
        assert {c.delivery_id for c in first} == heads | keyless
        # a's head dies (one attempt), b's stays in flight, c's and the keyless are acked
        by_id = {c.delivery_id: c for c in first}
        dead = answered(by_id[ids[0]], Answer(False, "no"), now)
        assert await stores.queue.settle_held(dead, now)
        assert await stores.queue.settle_held(answered(by_id[ids[3]], Answer(True), now), now)
        for d in keyless:
            assert await stores.queue.settle_held(answered(by_id[d], Answer(True), now), now)
        second = {c.delivery_id for c in await stores.queue.claim_due(now, 100, 30, ep)}
        next_c = ids[7]  # c's second delivery
        if on_head_dead is OnHeadDead.WAIT:
            assert second == {next_c}  # a waits behind its dead head; b's head is in flight
        else:
            assert second == {next_c, ids[4]}  # a's next is its head now
        assert await stores.queue.claimable([ep], now) == set()


async def test_a_pull_backlog_is_not_in_the_push_claims_way(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    pull = await endpoint(stores, t.id, kind=PULL, ordering=Ordering.ORDERED)
    push = await endpoint(stores, t.id)
    await routed(stores, t.id, pull, [f"k{i % 7}" for i in range(200)], name="pull-")
    (to_push,) = await routed(stores, t.id, push, [None], name="push-")
    now = time.time() + 1
    (sent,) = await stores.queue.claim_due(now, 1, 30)  # the oldest due is a pull delivery
    assert sent.delivery_id == to_push
    # A replay to a pull endpoint makes a pull delivery too: a consumer's, not the dispatcher's.
    event = await stores.events.get(t.id, sent.event_id)
    assert event is not None
    assert await stores.deliveries.replay(t.id, event.id, 1, [pull]) == 1
    assert await stores.queue.claim_due(now + 1, 10, 30) == []
    assert await stores.queue.claimable([pull], now + 1) == {pull}


async def test_an_extended_lease_is_the_only_one_that_settles(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, kind=PULL)
    (delivery,) = await routed(stores, t.id, ep, [None])
    now = time.time() + 1
    (c,) = await stores.queue.claim_due(now, 10, lease_seconds=5, endpoint_id=ep)
    later = c.lease_until + 60
    assert await stores.queue.extend_lease(delivery, c.lease_until, later)
    assert not await stores.queue.extend_lease(delivery, c.lease_until, later + 1)  # old lease
    assert await stores.queue.claim_due(now + 10, 10, 30, ep) == []  # past the first lease
    assert not await stores.queue.settle_held(answered(c, Answer(True), now), now)
    extended = msgspec.structs.replace(c, lease_until=later)
    assert await stores.queue.settle_held(answered(extended, Answer(True), now), now)
    assert not await stores.queue.extend_lease(delivery, later, later + 1)  # settled

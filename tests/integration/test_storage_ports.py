"""One conformance suite for the hot-path storage ports, run against every adapter: the SQLite
driver adapter, and the generic SQLAlchemy one on SQLite and on PostgreSQL (a fresh, migrated
database per test; skipped without INTERLINK_TEST_POSTGRES_URL, a failure in CI)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from tests.conftest import app_url

from interlink.domain import publish
from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.delivery import AttemptOutcome, AttemptResult, DeliveryStatus, decide
from interlink.domain.ids import new_id
from interlink.domain.models import Envelope, Event, SigningSecret
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.domain.retry import RetryPolicy
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.deliveries import Deliveries, RetryRefused
from interlink.storage.event_log import EventLog
from interlink.storage.management import Management
from interlink.storage.ports import Appended, DeliveryQueue, LogWriter, NewDelivery, Settled
from interlink.storage.sealed_secrets import open_secrets
from interlink.storage.secrets_box import SecretBox, is_sealed
from interlink.storage.sqlite.delivery_queue import SqliteDeliveryQueue
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.sqlite.log_writer import SqliteLogWriter
from interlink.storage.tables import sources
from interlink.storage.tenancy import system_scope


@dataclass
class Stores:
    log: LogWriter
    queue: DeliveryQueue
    events: EventLog
    deliveries: Deliveries
    management: Management


@pytest.fixture(params=["sqlite-driver", "sqlalchemy", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    # As in production on PostgreSQL: the owner migrates, the application role (which row-level
    # security binds) works, here in the system scope, as the pipeline does.
    migration_url = url = f"sqlite:///{tmp_path}/ports.db"
    if request.param == "postgres":
        migration_url = request.getfixturevalue("postgres_database")
        url = app_url(migration_url)
    await asyncio.to_thread(migrate.upgrade, migration_url)
    db = Database(url)
    events, deliveries = EventLog(db), Deliveries(db)
    driver = None
    if request.param == "sqlite-driver":
        driver = SqliteDriver(tmp_path / "ports.db")
        await driver.start()
        stores = Stores(
            SqliteLogWriter(driver),
            SqliteDeliveryQueue(driver),
            events,
            deliveries,
            Management(db, SecretBox([SecretBox.new_key()])),
        )
    else:
        stores = Stores(
            events, deliveries, events, deliveries, Management(db, SecretBox([SecretBox.new_key()]))
        )
    with system_scope("storage conformance suite"):
        yield stores
    if driver is not None:
        await driver.close()
    await db.close()


def event(tenant: str, key: str, source: str = "src_1") -> Event:
    return Event(
        id=new_id("event"),
        tenant_id=tenant,
        source_id=source,
        idempotency_key=key,
        type="booking.created",
        key="b1",
        received_at=time.time(),
        occurred_at=None,
        data=b'{"n": 1}',
        raw=b'{"data": {"n": 1}}',
        headers={"webhook-id": key},
    )


async def endpoint(s: Stores, tenant: str, **kw: object) -> str:
    e = await s.management.create_endpoint(
        tenant,
        url="http://127.0.0.1:9/x",
        description="",
        secret="whsec_" + "A" * 40,
        retry=kw.pop("retry", RetryPolicy(schedule=(0, 60))),  # type: ignore[arg-type]
        timeout_seconds=5,
        **kw,  # type: ignore[arg-type]
    )
    return e.id


async def test_append_is_idempotent_and_readable_in_order(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    first = await stores.log.append([event(t.id, "a"), event(t.id, "b"), event(t.id, "a")])
    assert [a.duplicate for a in first] == [False, False, True]
    assert first[2].event_id == first[0].event_id
    again = await stores.log.append([event(t.id, "b"), event(t.id, "b", source="src_2")])
    assert again[0].duplicate and again[0].event_id == first[1].event_id
    assert not again[1].duplicate
    entries = await stores.log.read_after(0, 10)
    assert [e.id for e in entries] == [first[0].event_id, first[1].event_id, again[1].event_id]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert await stores.log.read_after(entries[0].seq, 1) == entries[1:2]
    stored = await stores.events.get(t.id, first[0].event_id)
    assert stored is not None and stored.headers == {"webhook-id": "a"}
    assert stored.data == b'{"n": 1}' and stored.raw == b'{"data": {"n": 1}}'


async def test_contents_by_log_position(stores: Stores) -> None:
    """What content filters read, sparse or dense in a range (a rowid range on SQLite)."""
    t, _ = await stores.management.create_tenant("t")
    await stores.log.append([event(t.id, str(i)) for i in range(10)])
    entries = await stores.log.read_after(0, 100)
    assert await stores.log.contents([]) == {}
    for picked in (entries, entries[::5]):  # dense: one range; sparse: each by itself
        got = await stores.log.contents(picked)
        assert sorted(got) == sorted(e.id for e in picked)
        one = got[picked[0].id]
        assert one.data == b'{"n": 1}' and one.headers == {"webhook-id": "0"}


async def test_a_routed_delivery_carries_its_subscriptions_transform(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id)
    sub = await stores.management.create_subscription(t.id, ep, ["*"], None, '{"a": n}')
    (appended,) = await stores.log.append([event(t.id, "a")])
    (entry,) = await stores.log.read_after(0, 10)
    new = NewDelivery(new_id("delivery"), t.id, appended.event_id, entry.seq, ep, None, sub.id)
    await stores.queue.route([new], "router", entry.seq)
    (claimed,) = await stores.queue.claim_due(time.time() + 0.01, 10, lease_seconds=30)
    assert claimed.transform == '{"a": n}' and claimed.headers == {"webhook-id": "a"}


async def test_route_claim_settle_cycle(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id)
    (appended,) = await stores.log.append([event(t.id, "a")])
    (entry,) = await stores.log.read_after(0, 10)
    new = NewDelivery(new_id("delivery"), t.id, appended.event_id, entry.seq, ep)
    await stores.queue.route([new, new], "router", entry.seq)  # routing twice creates one
    assert await stores.log.position("router") == entry.seq

    now = time.time()
    (claimed,) = await stores.queue.claim_due(now + 0.01, 10, lease_seconds=30)
    assert claimed.delivery_id == new.id and claimed.event_data == b'{"n": 1}'
    assert claimed.retry_schedule == (0.0, 60.0) and claimed.lease_until == now + 0.01 + 30
    assert await stores.queue.claim_due(now + 1, 10, 30) == []  # leased: not claimable
    assert await stores.queue.next_due_at() == pytest.approx(claimed.lease_until)

    result = AttemptResult(AttemptOutcome.FAILED, 500, 3.0, response_excerpt="boom")
    decision = decide(0, result, RetryPolicy(schedule=claimed.retry_schedule, jitter=0))
    await stores.queue.settle([Settled(claimed, now, result, decision)])
    d = await stores.deliveries.get(t.id, new.id)
    assert d is not None and d.status == DeliveryStatus.SCHEDULED and d.attempt_count == 1
    assert d.next_attempt_at == pytest.approx(time.time() + 60, abs=5)
    (attempt,) = await stores.deliveries.attempts(t.id, new.id)
    assert (attempt.number, attempt.status_code, attempt.response_excerpt) == (1, 500, "boom")


async def test_a_lapsed_lease_is_due_again_and_the_old_holder_cannot_settle(
    stores: Stores,
) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id)
    (appended,) = await stores.log.append([event(t.id, "a")])
    new = NewDelivery(new_id("delivery"), t.id, appended.event_id, 1, ep)
    await stores.queue.route([new], "router", 1)
    now = time.time()
    (old,) = await stores.queue.claim_due(now, 10, lease_seconds=1)
    (taken,) = await stores.queue.claim_due(now + 2, 10, lease_seconds=30)  # lease lapsed
    assert taken.delivery_id == old.delivery_id and taken.lease_until != old.lease_until
    ok = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)
    policy = RetryPolicy()
    await stores.queue.settle([Settled(old, now, ok, decide(0, ok, policy))])
    d = await stores.deliveries.get(t.id, new.id)
    assert d is not None and d.status == DeliveryStatus.IN_FLIGHT  # the old holder's write lost
    await stores.queue.settle([Settled(taken, now, ok, decide(0, ok, policy))])
    d = await stores.deliveries.get(t.id, new.id)
    assert d is not None and d.status == DeliveryStatus.SUCCEEDED


async def test_paused_endpoints_keep_their_deliveries_out_of_claims(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    paused = await endpoint(stores, t.id)
    await stores.management.update_endpoint(t.id, paused, {"status": "paused"})
    (appended,) = await stores.log.append([event(t.id, "a")])
    await stores.queue.route(
        [NewDelivery(new_id("delivery"), t.id, appended.event_id, 1, paused)], "router", 1
    )
    assert await stores.queue.claim_due(time.time() + 1, 10, 30) == []
    assert await stores.queue.next_due_at() is None
    await stores.management.update_endpoint(t.id, paused, {"status": "active"})
    assert len(await stores.queue.claim_due(time.time() + 1, 10, 30)) == 1


async def test_gone_disables_the_endpoint_and_release_makes_leases_due(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    gone_ep, ok_ep = await endpoint(stores, t.id), await endpoint(stores, t.id)
    (appended,) = await stores.log.append([event(t.id, "a")])
    await stores.queue.route(
        [NewDelivery(new_id("delivery"), t.id, appended.event_id, 1, e) for e in (gone_ep, ok_ep)],
        "router",
        1,
    )
    claimed = await stores.queue.claim_due(time.time() + 1, 10, lease_seconds=300)
    to_gone = next(c for c in claimed if c.endpoint_id == gone_ep)
    held = next(c for c in claimed if c.endpoint_id == ok_ep)
    gone = AttemptResult(AttemptOutcome.GONE, 410, 1.0)
    await stores.queue.settle([Settled(to_gone, time.time(), gone, decide(0, gone, RetryPolicy()))])
    e = await stores.management.get_endpoint(t.id, gone_ep)
    assert e is not None and e.status == "disabled" and "410" in (e.disabled_reason or "")
    d = await stores.deliveries.get(t.id, to_gone.delivery_id)
    assert d is not None and d.status == DeliveryStatus.DEAD  # kept, redrivable

    assert await stores.queue.claim_due(time.time() + 1, 10, 300) == []  # still leased
    assert await stores.queue.release_all_leases(time.time()) == 1
    (again,) = await stores.queue.claim_due(time.time() + 0.01, 10, 300)
    assert again.delivery_id == held.delivery_id


async def test_events_round_trip_exactly(stores: Stores) -> None:
    # Times as full doubles, bodies as arbitrary bytes (NUL included), headers as given.
    t, _ = await stores.management.create_tenant("t")
    sent = msgspec.structs.replace(
        event(t.id, "exact"),
        received_at=1_700_000_000.123456789,
        occurred_at=0.1 + 0.2,
        key=None,
        data=bytes(range(256)),
        raw=b"\x00" + bytes(range(255, -1, -1)),
        headers={"webhook-id": "exact", "x-note": "d\u00e9j\u00e0 vu \u2713", "x-empty": ""},
    )
    (appended,) = await stores.log.append([sent])
    stored = await stores.events.get(t.id, appended.event_id)
    assert stored is not None
    assert stored == msgspec.structs.replace(sent, seq=stored.seq)


async def test_published_events_keep_their_origin_and_catalog_version(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    sent = msgspec.structs.replace(
        event(t.id, "pub-1", source=publish.source_id(t.id)), origin="api", schema_version=1
    )
    first, again = await stores.log.append(
        [sent, msgspec.structs.replace(sent, id=new_id("event"))]
    )
    assert not first.duplicate and again == Appended(first.event_id, duplicate=True)
    stored = await stores.events.get(t.id, first.event_id)
    assert stored == msgspec.structs.replace(sent, seq=stored.seq if stored else 0)


async def test_an_append_stores_all_of_its_batch_or_none(stores: Stores) -> None:
    # A published batch is one append: an event the store refuses (here a NOT NULL column)
    # takes the whole batch with it.
    t, _ = await stores.management.create_tenant("t")
    good = event(t.id, "good")
    refused = msgspec.structs.replace(event(t.id, "refused"), type=None)
    with pytest.raises(Exception):  # noqa: B017 - each driver names it its own way
        await stores.log.append([good, refused])
    assert await stores.log.read_after(0, 10) == []
    (appended,) = await stores.log.append([good])
    assert not appended.duplicate and appended.event_id == good.id


async def test_configuration_round_trips(stores: Stores) -> None:
    t, key = await stores.management.create_tenant("t")
    assert await stores.management.tenant_for_key(key) == t.id
    source = await stores.management.create_source(
        t.id,
        name="pms",
        verifier="hmac",
        verifier_config={"header": "x-sig", "nested": {"n": [1, 2.5, None, True]}},
        secrets=["s1", "s2"],
        envelope=Envelope(),
        max_body_bytes=1024,
        tolerance_seconds=300,
    )
    assert await stores.management.get_source(source.id) == source
    ep = await stores.management.create_endpoint(
        t.id,
        url="http://127.0.0.1:9/x",
        description="caf\u00e9",
        secret="whsec_" + "A" * 40,
        retry=RetryPolicy(schedule=(0, 0.5, 60)),
        timeout_seconds=2.5,
    )
    assert await stores.management.get_endpoint(t.id, ep.id) == ep
    sub = await stores.management.create_subscription(t.id, ep.id, ["booking.*", "*"])
    assert await stores.management.subscriptions_for([t.id]) == [sub]


# Secrets long enough that a ciphertext's base64 never holds one by chance (a two-letter one did).
S1, S2, S3 = "first-source-secret-1", "second-source-secret-2", "third-source-secret-3"


async def test_source_secrets_rotate_and_read_both_stored_shapes(stores: Stores) -> None:
    m = stores.management
    t, _ = await m.create_tenant("t")
    source = await m.create_source(
        t.id,
        name="pms",
        verifier="github",
        verifier_config={},
        secrets=[S1],
        envelope=Envelope(),
        max_body_bytes=1024,
        tolerance_seconds=300,
    )
    assert source.secrets == (SigningSecret(S1),)
    version = m.sources_version
    now = time.time()
    rotated = await m.add_source_secret(t.id, source.id, S2, now=now, expire_others_at=now + 60)
    assert rotated is not None and m.sources_version > version
    assert rotated.secrets == (SigningSecret(S1, now + 60), SigningSecret(S2))
    assert await m.get_source(source.id) == rotated
    # Stored sealed: a ciphertext that opens to the secrets with their expiries.
    async with m.db.read() as conn:
        stored = (
            await conn.execute(sa.select(sources.c.secrets).where(sources.c.id == source.id))
        ).scalar_one()
    assert (
        isinstance(stored, str) and is_sealed(stored) and S2 not in stored
    )  # long enough not to occur by chance
    assert open_secrets(m.box, stored) == rotated.secrets
    # Rows from before encryption at rest (plaintext, a secret without expiry a bare string,
    # the column mixing both) are still read, until migration 0014 or rotate-key seals them.
    async with m.db.write() as conn:
        plain = [{"value": S1, "expires_at": now + 60}, S2]
        await conn.execute(sources.update().where(sources.c.id == source.id).values(secrets=plain))
    assert await m.get_source(source.id) == rotated
    # Another tenant cannot rotate it, nor can anyone rotate a deleted source.
    other, _ = await m.create_tenant("other")
    assert await m.add_source_secret(other.id, source.id, S3, now=now) is None
    assert await m.delete_source(t.id, source.id)
    assert await m.add_source_secret(t.id, source.id, S3, now=now) is None


async def test_concurrent_claimers_never_take_the_same_delivery(stores: Stores) -> None:
    # On PostgreSQL the claimers run on separate connections at once: FOR UPDATE SKIP LOCKED is
    # what keeps them apart. The endpoint's lane (and its breaker's window) takes all 40 at once.
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, concurrency=100, breaker=BreakerPolicy(min_attempts=100))
    await stores.log.append([event(t.id, f"k{i}") for i in range(40)])
    entries = await stores.log.read_after(0, 100)
    await stores.queue.route(
        [NewDelivery(new_id("delivery"), t.id, e.id, e.seq, ep) for e in entries],
        "router",
        entries[-1].seq,
    )
    now = time.time() + 1
    batches = await asyncio.gather(*(stores.queue.claim_due(now, 7, 30) for _ in range(8)))
    claimed = [c.delivery_id for batch in batches for c in batch]
    assert len(claimed) == len(set(claimed))
    rest = [c.delivery_id for c in await stores.queue.claim_due(now, 100, 30)]
    assert len(set(claimed) | set(rest)) == len(claimed) + len(rest) == 40


async def test_settle_keeps_what_a_receiver_answered_even_binary(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id)
    (appended,) = await stores.log.append([event(t.id, "a")])
    new = NewDelivery(new_id("delivery"), t.id, appended.event_id, 1, ep)
    await stores.queue.route([new], "router", 1)
    (claimed,) = await stores.queue.claim_due(time.time() + 1, 10, 30)
    result = AttemptResult(
        AttemptOutcome.FAILED,
        502,
        1.5,
        error="bad\x00gateway",
        response_excerpt="\x00\x01bin\u00e9",
    )
    decision = decide(0, result, RetryPolicy(schedule=claimed.retry_schedule, jitter=0))
    await stores.queue.settle([Settled(claimed, time.time(), result, decision)])
    d = await stores.deliveries.get(t.id, new.id)
    assert d is not None and d.status == DeliveryStatus.SCHEDULED
    # PostgreSQL text cannot hold NUL: there U+FFFD stands in for it.
    assert d.last_error in ("bad\x00gateway", "bad\ufffdgateway")
    (attempt,) = await stores.deliveries.attempts(t.id, new.id)
    assert attempt.response_excerpt in ("\x00\x01bin\u00e9", "\ufffd\x01bin\u00e9")


async def test_retry_redrives_in_place_but_never_a_delivery_in_flight(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id)
    (appended,) = await stores.log.append([event(t.id, "a")])
    new = NewDelivery(new_id("delivery"), t.id, appended.event_id, 1, ep)
    await stores.queue.route([new], "router", 1)
    assert await stores.deliveries.retry("tnt_other", new.id) is None
    (claimed,) = await stores.queue.claim_due(time.time() + 1, 10, 30)
    with pytest.raises(RetryRefused):
        await stores.deliveries.retry(t.id, new.id)
    dead = AttemptResult(AttemptOutcome.GONE, 410, 1.0)
    await stores.queue.settle([Settled(claimed, time.time(), dead, decide(0, dead, RetryPolicy()))])
    retried = await stores.deliveries.retry(t.id, new.id)
    assert retried is not None and retried.status == DeliveryStatus.PENDING
    assert retried.id == new.id and retried.attempt_count == 1


# endpoint lanes ------------------------------------------------------------------------------


async def routed(
    stores: Stores, tenant: str, ep: str, keys: list[str | None], name: str = "m"
) -> list[str]:
    """One event per key (in this order), routed to ``ep``; returns the delivery ids."""
    appended = await stores.log.append(
        [msgspec.structs.replace(event(tenant, f"{name}{i}"), key=k) for i, k in enumerate(keys)]
    )
    entries = {e.id: e for e in await stores.log.read_after(0, 1000)}
    new = [
        NewDelivery(new_id("delivery"), tenant, a.event_id, entries[a.event_id].seq, ep, k)
        for a, k in zip(appended, keys, strict=True)
    ]
    await stores.queue.route(new, "router", max(e.seq for e in entries.values()))
    return [d.id for d in new]


def fail_all(claimed: list[Any], now: float, policy: RetryPolicy) -> list[Settled]:
    bad = AttemptResult(AttemptOutcome.FAILED, 500, 1.0)
    return [Settled(c, now, bad, decide(c.attempt_count, bad, policy)) for c in claimed]


async def test_an_ordered_endpoint_sends_one_head_per_key_in_log_order(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, ordering=Ordering.ORDERED)
    ids = await routed(stores, t.id, ep, ["a", "b", "a", None, "b", "a"])
    now = time.time() + 1
    first = await stores.queue.claim_due(now, 100, 30)
    # The heads of a and b, and the keyless one: nothing behind a head.
    assert sorted(c.delivery_id for c in first) == sorted([ids[0], ids[1], ids[3]])
    assert await stores.queue.claim_due(now, 100, 30) == []  # heads in flight block their keys
    ok = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)
    policy = RetryPolicy(schedule=(0,))
    head_a = next(c for c in first if c.delivery_id == ids[0])
    await stores.queue.settle([Settled(head_a, now, ok, decide(0, ok, policy))], now)
    (second,) = await stores.queue.claim_due(now + 0.01, 100, 30)
    assert second.delivery_id == ids[2]  # a's next, in log order; b still waits on its head


async def test_a_dead_head_holds_its_key_unless_the_endpoint_skips_it(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    policy = RetryPolicy(schedule=(0,))  # one attempt: a failure is dead at once
    waits = await endpoint(stores, t.id, ordering=Ordering.ORDERED, retry=policy)
    skips = await endpoint(
        stores, t.id, ordering=Ordering.ORDERED, on_head_dead=OnHeadDead.SKIP, retry=policy
    )
    w_ids = await routed(stores, t.id, waits, ["k", "k"])
    s_ids = await routed(stores, t.id, skips, ["k", "k"])
    now = time.time() + 1
    heads = await stores.queue.claim_due(now, 100, 30)
    assert sorted(c.delivery_id for c in heads) == sorted([w_ids[0], s_ids[0]])
    await stores.queue.settle(fail_all(heads, now, policy), now)
    after = await stores.queue.claim_due(now + 0.01, 100, 30)
    assert [c.delivery_id for c in after] == [s_ids[1]]  # the waiting endpoint's key is held


async def test_an_open_breaker_defers_without_spending_attempts(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    policy = RetryPolicy(schedule=(0, 0, 0, 0))
    ep = await endpoint(stores, t.id, retry=policy)
    ids = await routed(stores, t.id, ep, [None] * 30)
    now = time.time() + 1
    claimed = await stores.queue.claim_due(now, 100, 30)
    assert len(claimed) == 20  # a fresh breaker's window
    await stores.queue.settle(fail_all(claimed, now, policy), now)
    lane = await stores.management.endpoint_lane(t.id, ep)
    assert lane.breaker.state.value == "open" and lane.failing_since == now
    retry_at = lane.breaker.retry_at
    assert retry_at is not None
    # Every one is due again by now (retries at 0 s, the rest paced): none is sent, all held.
    assert await stores.queue.claim_due(now + 5, 100, 30) == []
    for delivery_id in ids:
        d = await stores.deliveries.get(t.id, delivery_id)
        assert d is not None and d.attempt_count <= 1 and d.status != DeliveryStatus.IN_FLIGHT
        assert d.next_attempt_at is not None and d.next_attempt_at >= retry_at


async def test_a_probe_that_succeeds_closes_the_breaker_and_releases_the_backlog(
    stores: Stores,
) -> None:
    t, _ = await stores.management.create_tenant("t")
    policy = RetryPolicy(schedule=(0,) + (3600,) * 3)
    ep = await endpoint(stores, t.id, retry=policy, breaker=BreakerPolicy(min_attempts=2))
    ids = await routed(stores, t.id, ep, [None] * 10)
    now = time.time() + 1
    claimed = await stores.queue.claim_due(now, 100, 30)
    assert len(claimed) == 2
    await stores.queue.settle(fail_all(claimed, now, policy), now)
    lane = await stores.management.endpoint_lane(t.id, ep)
    assert lane.breaker.retry_at is not None
    probe_at = lane.breaker.retry_at + 60  # past the open breaker's held backlog's spread
    (probe,) = await stores.queue.claim_due(probe_at, 100, 30)
    ok = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)
    await stores.queue.settle([Settled(probe, probe_at, ok, decide(0, ok, policy))], probe_at)
    assert (await stores.management.endpoint_lane(t.id, ep)).breaker.state.value == "closed"
    # Everything that waited — the held backlog and the two retries scheduled an hour out — is
    # due within the drain window (9 deliveries at the default pace: a second), spread.
    waiting = [await stores.deliveries.get(t.id, d) for d in ids if d != probe.delivery_id]
    due = [d.next_attempt_at for d in waiting if d is not None]
    assert len(due) == 9 and len(set(due)) == 9
    assert all(t is not None and probe_at <= t <= probe_at + 1.0 for t in due)
    ops = [e for e in await stores.log.read_after(0, 1000) if e.type.startswith("endpoint.")]
    assert [e.type for e in ops] == ["endpoint.recovered"]


async def test_gone_emits_an_operator_event_once(stores: Stores) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id)
    await routed(stores, t.id, ep, [None, None])
    now = time.time() + 1
    claimed = await stores.queue.claim_due(now, 100, 30)
    gone = AttemptResult(AttemptOutcome.GONE, 410, 1.0)
    await stores.queue.settle(
        [Settled(c, now, gone, decide(0, gone, RetryPolicy())) for c in claimed], now
    )
    ops = [e for e in await stores.log.read_after(0, 1000) if e.type.startswith("endpoint.")]
    assert [(e.type, e.key, e.tenant_id) for e in ops] == [("endpoint.disabled", ep, t.id)]
    stored = await stores.events.get(t.id, ops[0].id)
    assert stored is not None and msgspec.json.decode(stored.data)["reason"] == "gone"


async def test_a_deferred_delivery_is_not_counted_in_flight(stores: Stores) -> None:
    # Slots are live leases only. Two leases lapse (their process died); claimed again while
    # the lane is full, they are deferred: pending again, holding no slot.
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, concurrency=2)
    ids = await routed(stores, t.id, ep, [None] * 4)
    now = time.time() + 1
    lapsed = await stores.queue.claim_due(now, 2, lease_seconds=1)
    later = now + 2
    taken = await stores.queue.claim_due(later, 10, lease_seconds=30)
    assert {c.delivery_id for c in lapsed} | {c.delivery_id for c in taken} == set(ids)
    for c in lapsed:
        d = await stores.deliveries.get(t.id, c.delivery_id)
        assert d is not None and d.status == DeliveryStatus.PENDING
        assert d.next_attempt_at is not None and d.next_attempt_at > later
    ok = AttemptResult(AttemptOutcome.SUCCEEDED, 200, 1.0)
    await stores.queue.settle([Settled(c, later, ok, decide(0, ok, RetryPolicy())) for c in taken])
    (fresh,) = await routed(stores, t.id, ep, [None], name="late")
    # Both slots are free: the deferred two, not due yet, take none of them.
    (claimed,) = await stores.queue.claim_due(later + 0.01, 10, 30)
    assert claimed.delivery_id == fresh


async def test_start_up_makes_deferred_deliveries_due_and_lanes_pace_afresh(
    stores: Stores,
) -> None:
    t, _ = await stores.management.create_tenant("t")
    ep = await endpoint(stores, t.id, concurrency=1, breaker=BreakerPolicy(min_attempts=1))
    ids = await routed(stores, t.id, ep, [None] * 3)
    now = time.time() + 1
    assert len(await stores.queue.claim_due(now, 10, 30)) == 1  # the others deferred
    await routed(stores, t.id, ep, [None], name="late")
    await stores.queue.claim_due(now + 0.01, 10, 30)  # full: deferred
    lane = await stores.management.endpoint_lane(t.id, ep)
    assert lane.full_since is not None and lane.horizon > now
    restart = now + 0.02
    assert await stores.queue.release_all_leases(restart) == 1
    lane = await stores.management.endpoint_lane(t.id, ep)
    assert lane.full_since is None and lane.horizon == 0
    for delivery_id in ids:
        d = await stores.deliveries.get(t.id, delivery_id)
        assert d is not None and d.status == DeliveryStatus.PENDING
        assert d.next_attempt_at == restart

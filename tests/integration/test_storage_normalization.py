"""The normalization stage's storage on every backend: its read per batch (through the SQLite
driver, through SQLAlchemy on SQLite, on PostgreSQL) and its one transaction — idempotent
appends, entity-state upserts, held entries, resolution, the cursor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import app_url

from interlink.domain.ids import new_id
from interlink.domain.models import Envelope, Event
from interlink.storage import migrate
from interlink.storage.database import Database
from interlink.storage.event_log import EventFilter, EventLog
from interlink.storage.management import Management
from interlink.storage.normalization import EntityRef, EntityState, NormalizationStore
from interlink.storage.pagination import Page
from interlink.storage.ports import CursorMoved
from interlink.storage.quarantine import Quarantine, QuarantineEntry, QuarantineFilter
from interlink.storage.secrets_box import SecretBox
from interlink.storage.sqlite.driver import SqliteDriver
from interlink.storage.tenancy import system_scope


@dataclass
class Backend:
    store: NormalizationStore
    events: EventLog
    management: Management
    quarantine: Quarantine


@pytest.fixture(params=["sqlite-driver", "sqlalchemy", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    # On PostgreSQL as in production: the owner migrates, the application role (which row-level
    # security binds) works, here in the system scope, as the router's stage does.
    migration_url = url = f"sqlite:///{tmp_path}/n.db"
    if request.param == "postgres":
        migration_url = request.getfixturevalue("postgres_database")
        url = app_url(migration_url)
    await asyncio.to_thread(migrate.upgrade, migration_url)
    db = Database(url)
    driver = None
    if request.param == "sqlite-driver":
        driver = SqliteDriver(tmp_path / "n.db")
        await driver.start()
    with system_scope("normalization storage suite"):
        yield Backend(
            NormalizationStore(db, driver),
            EventLog(db),
            Management(db, SecretBox([SecretBox.new_key()])),
            Quarantine(db),
        )
    if driver is not None:
        await driver.close()
    await db.close()


async def source(b: Backend, tenant_id: str, kit: str | None) -> str:
    created = await b.management.create_source(
        tenant_id,
        name="s",
        verifier="none",
        verifier_config={},
        secrets=[],
        envelope=Envelope(),
        max_body_bytes=1024,
        tolerance_seconds=300,
        kit=kit,
    )
    return created.id


def event(tenant_id: str, source_id: str, key: str, **lineage: object) -> Event:
    return Event(
        id=new_id("event"),
        tenant_id=tenant_id,
        source_id=source_id,
        idempotency_key=key,
        type="booking.created",
        key="b1",
        received_at=time.time(),
        occurred_at=None,
        data=b"{}",
        raw=b'{"a": 1}',
        headers={"x-sig": "v"},
        **lineage,  # type: ignore[arg-type]
    )


def entry(tenant_id: str, source_id: str, event_id: str, stage: str = "held") -> QuarantineEntry:
    return QuarantineEntry(
        id=new_id("quarantine"),
        tenant_id=tenant_id,
        source_id=source_id,
        event_id=event_id,
        event_index=0,
        stage=stage,
        reason="why",
        kit="k",
        kit_version="1",
        entity="booking",
        entity_key="b1",
        canonical={"anything": ["kept", 1]},
        created_at=time.time(),
    )


async def test_partner_events_of_kit_sources_only(backend: Backend) -> None:
    t, _ = await backend.management.create_tenant("t")
    kit_source = await source(backend, t.id, "pms_alpha")
    plain = await source(backend, t.id, None)
    raw = event(t.id, kit_source, "p1")
    await backend.events.append([raw, event(t.id, plain, "p2")])
    async with backend.store.transaction() as tx:
        made = event(t.id, kit_source, f"{raw.id}#0", origin="normalized", derived_from=raw.id)
        await tx.append([made])
    found = await backend.store.partner_events(0, 10**9)
    assert [(e.id, kit) for e, kit in found] == [(raw.id, "pms_alpha")]
    (got, _) = found[0]
    assert got.raw == b'{"a": 1}' and got.headers == {"x-sig": "v"} and got.seq > 0
    assert await backend.store.partner_events(got.seq, 10**9) == []
    stored = await backend.events.get(t.id, made.id)
    assert stored is not None and stored.origin == "normalized" and stored.derived_from == raw.id


async def test_one_transaction_of_the_stage(backend: Backend) -> None:
    t, _ = await backend.management.create_tenant("t")
    other, _ = await backend.management.create_tenant("o")
    src = await source(backend, t.id, "pms_alpha")
    raw = event(t.id, src, "p1")
    await backend.events.append([raw])
    ref = EntityRef(src, "booking", "b1")
    held = entry(t.id, src, raw.id)
    async with backend.store.transaction() as tx:
        assert await tx.event(other.id, raw.id) is None  # another tenant's is not found
        assert (await tx.event(t.id, raw.id)) is not None
        assert await tx.kits_of([src]) == {src: "pms_alpha"}
        made = event(t.id, src, f"{raw.id}#0", origin="normalized", derived_from=raw.id)
        await tx.append([made])
        await tx.append([event(t.id, src, f"{raw.id}#0", origin="normalized")])  # again: kept once
        assert await tx.existing(src, [f"{raw.id}#0", f"{raw.id}#1"]) == {f"{raw.id}#0"}
        await tx.put_states([EntityState(ref, t.id, "tentative", 1.0, made.id)])
        await tx.put_states([EntityState(ref, t.id, "confirmed", 2.0, made.id)])
        await tx.quarantine([held, entry(t.id, src, raw.id, stage="mapping")])
        await tx.move_cursor("normalizer", 7)
    async with backend.store.transaction() as tx:
        assert (await tx.states([ref]))[ref].state == "confirmed"
        assert (await tx.states([ref]))[ref].ordinal == 2.0
        assert [h.id for h in await tx.held([ref])] == [held.id]
        assert (await tx.held([ref]))[0].canonical == {"anything": ["kept", 1]}
        assert len(await tx.entries_of(raw.id)) == 2
        await tx.resolve([held.id], "released")
        assert await tx.held([ref]) == []
        assert (await tx.entry(t.id, held.id)) is not None
        assert await tx.entry(other.id, held.id) is None
    assert await backend.events.position("normalizer") == 7
    opened, _ = await backend.quarantine.find(t.id, QuarantineFilter(status="open"), Page())
    assert [q.stage for q in opened] == ["mapping"]
    resolved = await backend.quarantine.get(t.id, held.id)
    assert resolved is not None and resolved.resolution == "released"
    assert await backend.quarantine.get(other.id, held.id) is None
    listing, _ = await backend.events.find(t.id, EventFilter(), Page())
    assert sorted(e.origin for e in listing) == ["normalized", "partner"]


async def test_a_second_stage_on_the_same_batch_writes_nothing(backend: Backend) -> None:
    t, _ = await backend.management.create_tenant("t")
    src = await source(backend, t.id, "pms_alpha")
    async with backend.store.transaction() as tx:
        await tx.move_cursor("normalizer", 5, previous=0)
    with pytest.raises(CursorMoved):
        async with backend.store.transaction() as tx:
            await tx.move_cursor("normalizer", 9, previous=0)  # as a router that read 0 earlier
            await tx.append([event(t.id, src, "made#0", origin="normalized")])
    assert await backend.events.position("normalizer") == 5
    assert await backend.store.partner_events(0, 10**9) == []
    listing, _ = await backend.events.find(t.id, EventFilter(), Page())
    assert listing == []  # rolled back with the cursor

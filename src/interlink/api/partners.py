"""The event catalog, the installed partner kits, and the quarantine with its reprocess lever."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, get, post
from litestar.exceptions import ClientException, NotFoundException, ValidationException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import found, page
from interlink.api.schemas import Listing, iso
from interlink.catalog.catalog import EventType
from interlink.partners.hydration import PartnerApi
from interlink.partners.kit import PartnerKit
from interlink.partners.pipeline import Stage
from interlink.partners.stage import AlreadyResolved
from interlink.storage.quarantine import QuarantineEntry, QuarantineFilter


class EventTypeOut(msgspec.Struct):
    type: str
    version: int
    title: str
    description: str
    schema: dict[str, Any]

    @classmethod
    def of(cls, t: EventType) -> EventTypeOut:
        return cls(t.type, t.version, t.title, t.description, t.schema)


class EventTypeVersions(msgspec.Struct):
    type: str
    latest: int
    versions: list[EventTypeOut]


class EntityOut(msgspec.Struct):
    initial: list[str]
    transitions: dict[str, list[str]]
    rule: str
    events: list[str]


class PartnerKitOut(msgspec.Struct):
    name: str
    version: str
    title: str
    description: str
    verifier: str | None
    event_types: list[str]
    entities: dict[str, EntityOut]
    # Thin notifications: what is fetched, and the ``partner`` a tenant's connection must name.
    api: PartnerApi | None = None
    reconciles: str | None = None  # the entity its reconciler pulls from the partner's API

    @classmethod
    def of(cls, k: PartnerKit) -> PartnerKitOut:
        made: frozenset[str] = getattr(k.normalizer, "canonical_types", frozenset())
        return cls(
            name=k.name,
            version=k.version,
            title=k.title,
            description=k.description,
            verifier=k.verifier,
            event_types=sorted(made),
            entities={
                name: EntityOut(
                    initial=sorted(g.machine.initial),
                    transitions={s: sorted(t) for s, t in g.machine.transitions.items()},
                    rule=g.machine.rule.value,
                    events=sorted(g.states),
                )
                for name, g in k.entities.items()
            },
            api=None
            if k.api is None
            else msgspec.structs.replace(k.api, partner=k.api.partner or k.name),
            reconciles=k.reconciler.entity if k.reconciler else None,
        )


class HeldEventOut(msgspec.Struct):
    type: str
    version: int
    key: str | None
    occurred_at: str | None
    data: dict[str, Any]


class QuarantineOut(msgspec.Struct):
    id: str
    source_id: str
    event_id: str
    event_index: int | None
    stage: str
    reason: str
    kit: str | None
    kit_version: str | None
    entity: str | None
    entity_key: str | None
    event: HeldEventOut | None  # the canonical event held back, when there is one
    created_at: str | None
    resolved_at: str | None
    resolution: str | None

    @classmethod
    def of(cls, q: QuarantineEntry) -> QuarantineOut:
        held = None
        if q.canonical is not None:
            e = q.canonical["event"]
            held = HeldEventOut(e["type"], e["version"], e["key"], iso(e["occurred_at"]), e["data"])
        return cls(
            id=q.id,
            source_id=q.source_id,
            event_id=q.event_id,
            event_index=q.event_index,
            stage=q.stage,
            reason=q.reason,
            kit=q.kit,
            kit_version=q.kit_version,
            entity=q.entity,
            entity_key=q.entity_key,
            event=held,
            created_at=iso(q.created_at),
            resolved_at=iso(q.resolved_at),
            resolution=q.resolution,
        )


class ReprocessOut(msgspec.Struct):
    entry: QuarantineOut
    appended: list[str]  # canonical events now in the log (and on their way to endpoints)
    quarantined: list[QuarantineOut]  # where it stopped again, if it did


class EventTypeController(Controller):
    path = "/api/v1/event-types"
    tags = ["event types"]

    @get("/", summary="The event catalog: canonical types, every version with its JSON Schema")
    async def list_(self, principal: Principal, ctx: ApiContext) -> Listing:
        types = sorted(ctx.catalog.types(), key=lambda t: (t.type, t.version))
        return Listing([EventTypeOut.of(t) for t in types], None)

    @get("/{event_type:str}", summary="One canonical type: its versions and their schemas")
    async def get_(
        self, event_type: str, principal: Principal, ctx: ApiContext
    ) -> EventTypeVersions:
        versions = ctx.catalog.versions(event_type)
        if not versions:
            raise NotFoundException(f"no event type '{event_type}' in the catalog")
        return EventTypeVersions(
            event_type, versions[-1].version, [EventTypeOut.of(v) for v in versions]
        )


class PartnerKitController(Controller):
    path = "/api/v1/partner-kits"
    tags = ["partner kits"]

    @get("/", summary="The installed partner kits (built in, or registered by a package)")
    async def list_(self, principal: Principal, ctx: ApiContext) -> Listing:
        return Listing([PartnerKitOut.of(k) for k in ctx.kits.all()], None)


_STATUSES = ("open", "resolved")


class QuarantineController(Controller):
    path = "/api/v1/quarantine"
    tags = ["quarantine"]

    @get("/", summary="What could not be normalized or was held back, newest first")
    async def list_(
        self,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
        status: str | None = None,
        stage: str | None = None,
        source_id: str | None = None,
        event_id: str | None = None,
    ) -> Listing:
        if status is not None and status not in _STATUSES:
            raise ValidationException(f"status must be one of {', '.join(_STATUSES)}")
        if stage is not None and stage not in {s.value for s in Stage}:
            raise ValidationException(f"stage must be one of {', '.join(s.value for s in Stage)}")
        where = QuarantineFilter(status=status, stage=stage, source_id=source_id, event_id=event_id)
        items, nxt = await ctx.quarantine.find(
            require_tenant(principal), where, page(limit, cursor)
        )
        return Listing([QuarantineOut.of(q) for q in items], nxt)

    @get("/{entry_id:str}", summary="One quarantine entry, with its reason")
    async def get_(self, entry_id: str, principal: Principal, ctx: ApiContext) -> QuarantineOut:
        entry = found(
            await ctx.quarantine.get(require_tenant(principal), entry_id),
            "quarantine entry",
            entry_id,
        )
        return QuarantineOut.of(entry)

    @post(
        "/{entry_id:str}/reprocess",
        status_code=200,
        summary="Normalize the event again with the source's kit as it is now (after a fix)",
    )
    async def reprocess(self, entry_id: str, principal: Principal, ctx: ApiContext) -> ReprocessOut:
        try:
            done = await ctx.normalization.reprocess(require_tenant(principal), entry_id)
        except AlreadyResolved as exc:
            raise ClientException(str(exc), status_code=409) from None
        done = found(done, "quarantine entry", entry_id)
        return ReprocessOut(
            entry=QuarantineOut.of(done.entry),
            appended=done.appended,
            quarantined=[QuarantineOut.of(q) for q in done.quarantined],
        )

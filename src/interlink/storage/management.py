"""Tenants, API keys, sources, endpoints and subscriptions: the configuration a tenant manages.

Every tenant-scoped query takes the tenant id and filters by it: an id of another tenant's
resource is simply not found.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from interlink.domain.circuit_breaker import BreakerPolicy
from interlink.domain.ids import new_id
from interlink.domain.kafka import KafkaTarget
from interlink.domain.lanes import DEFAULT_CONCURRENCY, LaneState
from interlink.domain.models import (
    Endpoint,
    EndpointKind,
    EndpointStatus,
    Envelope,
    SigningSecret,
    Source,
    Subscription,
    Tenant,
)
from interlink.domain.ordering import OnHeadDead, Ordering
from interlink.domain.rate_limit import RateLimit
from interlink.domain.retry import RetryPolicy
from interlink.domain.secret_rotation import MAX_ENDPOINT_SECRETS, MAX_SECRETS, rotate
from interlink.storage.api_keys import ApiKeys, insert_key
from interlink.storage.database import Database
from interlink.storage.lanes import decode_state, deferred, live_lease
from interlink.storage.pagination import Page, fetch_page
from interlink.storage.sealed_secrets import open_secrets, seal
from interlink.storage.secrets_box import SecretBox
from interlink.storage.tables import (
    deliveries,
    endpoint_lanes,
    endpoints,
    sources,
    subscriptions,
    tenants,
)


def _tenant(row: Any) -> Tenant:
    return Tenant(row.id, row.name, row.created_at)


def _source(box: SecretBox, row: Any) -> Source:
    return Source(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        verifier=row.verifier,
        verifier_config=dict(row.verifier_config),
        secrets=open_secrets(box, row.secrets),
        envelope=msgspec.convert(row.envelope, Envelope),
        max_body_bytes=row.max_body_bytes,
        tolerance_seconds=row.tolerance_seconds,
        created_at=row.created_at,
        kit=row.kit,
    )


def _endpoint(box: SecretBox, row: Any) -> Endpoint:
    return Endpoint(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        description=row.description,
        secrets=open_secrets(box, row.secret),
        status=EndpointStatus(row.status),
        disabled_reason=row.disabled_reason,
        retry=RetryPolicy(schedule=tuple(row.retry_schedule)),
        timeout_seconds=row.timeout_seconds,
        created_at=row.created_at,
        ordering=Ordering(row.ordering),
        on_head_dead=OnHeadDead(row.on_head_dead),
        concurrency=row.concurrency,
        rate_limit=None if row.rate_limit is None else msgspec.convert(row.rate_limit, RateLimit),
        disable_after_seconds=row.disable_after_seconds,
        breaker=None if row.breaker is None else msgspec.convert(row.breaker, BreakerPolicy),
        kind=EndpointKind(row.kind),
        kafka=None if row.kafka is None else msgspec.convert(row.kafka, KafkaTarget),
    )


def _json(policy: msgspec.Struct | None) -> Any:
    return None if policy is None else msgspec.to_builtins(policy)


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row.id,
        tenant_id=row.tenant_id,
        endpoint_id=row.endpoint_id,
        event_types=tuple(row.event_types),
        created_at=row.created_at,
        filter=row.filter,
        transform=row.transform,
    )


class Management:
    def __init__(self, db: Database, box: SecretBox) -> None:
        """``box`` seals the secrets of sources and endpoints (storage/sealed_secrets.py)."""
        self.db = db
        self.box = box
        self.keys = ApiKeys(db)
        # Bumped by every change to endpoints or subscriptions made through this process, so
        # caches of routing configuration here drop what they hold at once.
        self.routing_version = 0
        # The same for sources (their secrets), read by the ingest's source cache.
        self.sources_version = 0

    def _source(self, row: Any) -> Source:
        return _source(self.box, row)

    def _endpoint(self, row: Any) -> Endpoint:
        return _endpoint(self.box, row)

    # tenants and keys --------------------------------------------------------------------------

    async def create_tenant(self, name: str) -> tuple[Tenant, str]:
        """The tenant and its first API key, in plaintext this once."""
        tenant = Tenant(id=new_id("tenant"), name=name, created_at=time.time())
        async with self.db.write() as conn:
            await conn.execute(tenants.insert().values(msgspec.structs.asdict(tenant)))
            _, key = await insert_key(conn, tenant.id)
        return tenant, key

    async def create_api_key(self, tenant_id: str) -> str:
        return (await self.keys.create(tenant_id))[1]

    async def tenant_for_key(self, plaintext: str) -> str | None:
        return await self.keys.tenant_for_key(plaintext)

    async def key_owner(self, plaintext: str) -> tuple[str, str] | None:
        """(tenant id, key id) of a live API key, or None."""
        found = await self.keys.live_key(plaintext)
        return None if found is None else (found[1], found[0])

    async def get_tenant(self, tenant_id: str) -> Tenant | None:
        async with self.db.read() as conn:
            row = (await conn.execute(tenants.select().where(tenants.c.id == tenant_id))).first()
        return None if row is None else _tenant(row)

    async def list_tenants(self, page: Page) -> tuple[list[Tenant], str | None]:
        return await fetch_page(self.db, tenants.select(), tenants.c.id, page, _tenant)

    # sources -----------------------------------------------------------------------------------

    async def create_source(
        self,
        tenant_id: str,
        *,
        name: str,
        verifier: str,
        verifier_config: Mapping[str, object],
        secrets: Sequence[str | SigningSecret],
        envelope: Envelope,
        max_body_bytes: int,
        tolerance_seconds: int,
        kit: str | None = None,
    ) -> Source:
        source = Source(
            id=new_id("source"),
            tenant_id=tenant_id,
            name=name,
            verifier=verifier,
            verifier_config=dict(verifier_config),
            secrets=tuple(SigningSecret(s) if isinstance(s, str) else s for s in secrets),
            envelope=envelope,
            max_body_bytes=max_body_bytes,
            tolerance_seconds=tolerance_seconds,
            created_at=time.time(),
            kit=kit,
        )
        values = msgspec.structs.asdict(source)
        values["envelope"] = msgspec.to_builtins(envelope)
        values["secrets"] = seal(self.box, source.secrets)
        async with self.db.write() as conn:
            await conn.execute(sources.insert().values(values))
        return source

    async def get_source(self, source_id: str, tenant_id: str | None = None) -> Source | None:
        """By id alone for ingress (the URL names the source); by tenant for the API."""
        query = sources.select().where(sources.c.id == source_id, sources.c.deleted_at.is_(None))
        if tenant_id is not None:
            query = query.where(sources.c.tenant_id == tenant_id)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _source(self.box, row)

    async def list_sources(self, tenant_id: str, page: Page) -> tuple[list[Source], str | None]:
        query = sources.select().where(
            sources.c.tenant_id == tenant_id, sources.c.deleted_at.is_(None)
        )
        return await fetch_page(self.db, query, sources.c.id, page, self._source)

    async def add_source_secret(
        self,
        tenant_id: str,
        source_id: str,
        secret: str,
        *,
        now: float,
        expire_others_at: float | None = None,
    ) -> Source | None:
        """Rotate: add ``secret``, drop expired ones, let the others expire at
        ``expire_others_at``; None if there is no such source, ValueError from ``rotate``."""
        rotated = await self._rotate(
            sources.c.secrets, tenant_id, source_id, secret, now, expire_others_at, MAX_SECRETS
        )
        self.sources_version += 1
        return None if rotated is None else self._source(rotated)

    async def rotate_endpoint_secret(
        self, tenant_id: str, endpoint_id: str, secret: str, *, now: float, overlap: float
    ) -> Endpoint | None:
        """Rotate: ``secret`` signs from now on; the live ones sign beside it for ``overlap``
        seconds more (at most: an earlier expiry is kept). None if there is no such endpoint."""
        rotated = await self._rotate(
            endpoints.c.secret,
            tenant_id,
            endpoint_id,
            secret,
            now,
            now + overlap,
            MAX_ENDPOINT_SECRETS,
            updated_at=now,
        )
        self.routing_version += 1
        return None if rotated is None else self._endpoint(rotated)

    async def _rotate(
        self,
        column: sa.Column[Any],
        tenant_id: str,
        row_id: str,
        secret: str,
        now: float,
        expire_others_at: float | None,
        limit: int,
        **also: Any,
    ) -> Any:
        """The row after ``domain.secret_rotation.rotate`` of the secrets sealed in ``column``;
        None if there is no such live row of the tenant."""
        table = column.table
        where = (table.c.id == row_id, table.c.tenant_id == tenant_id, table.c.deleted_at.is_(None))
        async with self.db.write() as conn:
            # FOR UPDATE (ignored by SQLite, whose writers queue anyway): two rotations at once
            # must not each add to the same old list and lose one of the new secrets.
            row = (await conn.execute(table.select().where(*where).with_for_update())).first()
            if row is None:
                return None
            held = open_secrets(self.box, getattr(row, column.name))
            secrets = rotate(held, secret, now, expire_others_at, limit)
            values = {column.name: seal(self.box, secrets), **also}
            await conn.execute(table.update().where(*where).values(values))
            return (await conn.execute(table.select().where(*where))).one()

    async def set_source_kit(
        self, tenant_id: str, source_id: str, kit: str | None
    ) -> Source | None:
        """Names the partner kit that normalizes the source's events from now on (None: none)."""
        async with self.db.write() as conn:
            result = await conn.execute(
                sources.update()
                .where(
                    sources.c.id == source_id,
                    sources.c.tenant_id == tenant_id,
                    sources.c.deleted_at.is_(None),
                )
                .values(kit=kit)
            )
        self.sources_version += 1
        if result.rowcount == 0:
            return None
        return await self.get_source(source_id, tenant_id)

    async def delete_source(self, tenant_id: str, source_id: str) -> bool:
        deleted = await self._soft_delete(sources, tenant_id, source_id)
        self.sources_version += 1
        return deleted

    # endpoints ---------------------------------------------------------------------------------

    async def create_endpoint(
        self,
        tenant_id: str,
        *,
        url: str,
        description: str,
        secret: str,
        retry: RetryPolicy,
        timeout_seconds: float,
        status: EndpointStatus = EndpointStatus.ACTIVE,
        ordering: Ordering = Ordering.UNORDERED,
        on_head_dead: OnHeadDead = OnHeadDead.WAIT,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_limit: RateLimit | None = None,
        disable_after_seconds: float | None = None,
        breaker: BreakerPolicy | None = None,
        kind: EndpointKind = EndpointKind.PUSH,
        kafka: KafkaTarget | None = None,
    ) -> Endpoint:
        now = time.time()
        endpoint = Endpoint(
            id=new_id("endpoint"),
            tenant_id=tenant_id,
            url=url,
            description=description,
            secrets=(SigningSecret(secret),),
            status=status,
            disabled_reason=None,
            retry=retry,
            timeout_seconds=timeout_seconds,
            created_at=now,
            ordering=ordering,
            on_head_dead=on_head_dead,
            concurrency=concurrency,
            rate_limit=rate_limit,
            disable_after_seconds=disable_after_seconds,
            breaker=breaker,
            kind=kind,
            kafka=kafka,
        )
        async with self.db.write() as conn:
            await conn.execute(
                endpoints.insert().values(
                    id=endpoint.id,
                    tenant_id=tenant_id,
                    url=url,
                    description=description,
                    secret=seal(self.box, endpoint.secrets),
                    status=status.value,
                    retry_schedule=list(retry.schedule),
                    timeout_seconds=timeout_seconds,
                    ordering=ordering.value,
                    on_head_dead=on_head_dead.value,
                    concurrency=concurrency,
                    rate_limit=_json(rate_limit),
                    disable_after_seconds=disable_after_seconds,
                    breaker=_json(breaker),
                    kind=kind.value,
                    kafka=_json(kafka),
                    created_at=now,
                    updated_at=now,
                )
            )
        self.routing_version += 1
        return endpoint

    async def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Endpoint | None:
        query = endpoints.select().where(
            endpoints.c.id == endpoint_id,
            endpoints.c.tenant_id == tenant_id,
            endpoints.c.deleted_at.is_(None),
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _endpoint(self.box, row)

    async def list_endpoints(self, tenant_id: str, page: Page) -> tuple[list[Endpoint], str | None]:
        query = endpoints.select().where(
            endpoints.c.tenant_id == tenant_id, endpoints.c.deleted_at.is_(None)
        )
        return await fetch_page(self.db, query, endpoints.c.id, page, self._endpoint)

    async def update_endpoint(
        self, tenant_id: str, endpoint_id: str, changes: Mapping[str, Any]
    ) -> Endpoint | None:
        values: dict[str, Any] = {"updated_at": time.time()}
        for name in (
            "url",
            "description",
            "timeout_seconds",
            "concurrency",
            "disable_after_seconds",
        ):
            if name in changes:
                values[name] = changes[name]
        for name in ("ordering", "on_head_dead"):
            if name in changes:
                values[name] = str(changes[name])
        for name in ("rate_limit", "breaker", "kafka"):
            if name in changes:
                values[name] = _json(changes[name])
        if "retry" in changes:
            values["retry_schedule"] = list(changes["retry"].schedule)
        if "status" in changes:
            values["status"] = EndpointStatus(changes["status"]).value
            values["disabled_reason"] = changes.get("disabled_reason")
        async with self.db.write() as conn:
            result = await conn.execute(
                endpoints.update()
                .where(
                    endpoints.c.id == endpoint_id,
                    endpoints.c.tenant_id == tenant_id,
                    endpoints.c.deleted_at.is_(None),
                )
                .values(values)
            )
            if result.rowcount and values.get("status") == EndpointStatus.ACTIVE.value:
                # Enabled again: a fresh lane, or the old failing streak would disable it again
                # at its first failure.
                await conn.execute(
                    endpoint_lanes.delete().where(endpoint_lanes.c.endpoint_id == endpoint_id)
                )
        self.routing_version += 1
        if result.rowcount == 0:
            return None
        return await self.get_endpoint(tenant_id, endpoint_id)

    async def endpoint_lane(self, tenant_id: str, endpoint_id: str) -> LaneState:
        """The endpoint's shared lane state (a fresh one until its first claim)."""
        query = sa.select(endpoint_lanes.c.state).where(
            endpoint_lanes.c.endpoint_id == endpoint_id, endpoint_lanes.c.tenant_id == tenant_id
        )
        async with self.db.read() as conn:
            return decode_state((await conn.execute(query)).scalar())

    async def endpoint_load(self, tenant_id: str, endpoint_id: str, now: float) -> tuple[int, int]:
        """What holds the endpoint's lane at ``now``: the slots live leases take, and how many
        deliveries it has deferred (pending, due later; scheduled retries are not counted)."""
        mine = (deliveries.c.endpoint_id == endpoint_id, deliveries.c.tenant_id == tenant_id)

        def count(rule: sa.TextClause) -> sa.ScalarSelect[int]:
            return sa.select(sa.func.count()).where(*mine, rule).scalar_subquery()

        query = sa.select(count(live_lease(now)), count(deferred(now)))
        async with self.db.read() as conn:
            slots, waiting = (await conn.execute(query)).one()
        return int(slots), int(waiting)

    async def delete_endpoint(self, tenant_id: str, endpoint_id: str) -> bool:
        return await self._soft_delete(endpoints, tenant_id, endpoint_id)

    # subscriptions -----------------------------------------------------------------------------

    async def create_subscription(
        self,
        tenant_id: str,
        endpoint_id: str,
        event_types: Sequence[str],
        filter: str | None = None,
        transform: str | None = None,
    ) -> Subscription:
        """``filter`` and ``transform`` as already checked (api/filters.py)."""
        subscription = Subscription(
            id=new_id("subscription"),
            tenant_id=tenant_id,
            endpoint_id=endpoint_id,
            event_types=tuple(event_types),
            created_at=time.time(),
            filter=filter,
            transform=transform,
        )
        async with self.db.write() as conn:
            await conn.execute(
                subscriptions.insert().values(
                    id=subscription.id,
                    tenant_id=tenant_id,
                    endpoint_id=endpoint_id,
                    event_types=list(event_types),
                    created_at=subscription.created_at,
                    filter=filter,
                    transform=transform,
                )
            )
        self.routing_version += 1
        return subscription

    async def get_subscription(self, tenant_id: str, subscription_id: str) -> Subscription | None:
        query = subscriptions.select().where(
            subscriptions.c.id == subscription_id,
            subscriptions.c.tenant_id == tenant_id,
            subscriptions.c.deleted_at.is_(None),
        )
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _subscription(row)

    async def list_subscriptions(
        self, tenant_id: str, page: Page, endpoint_id: str | None = None
    ) -> tuple[list[Subscription], str | None]:
        query = subscriptions.select().where(
            subscriptions.c.tenant_id == tenant_id, subscriptions.c.deleted_at.is_(None)
        )
        if endpoint_id:
            query = query.where(subscriptions.c.endpoint_id == endpoint_id)
        return await fetch_page(self.db, query, subscriptions.c.id, page, _subscription)

    async def subscriptions_for(self, tenant_ids: Sequence[str]) -> list[Subscription]:
        """Live subscriptions of these tenants whose endpoint still exists (for the router)."""
        query = (
            subscriptions.select()
            .join(endpoints, endpoints.c.id == subscriptions.c.endpoint_id)
            .where(
                subscriptions.c.tenant_id.in_(list(tenant_ids)),
                subscriptions.c.deleted_at.is_(None),
                endpoints.c.deleted_at.is_(None),
            )
        )
        async with self.db.read() as conn:
            return [_subscription(r) for r in await conn.execute(query)]

    async def update_subscription(
        self, tenant_id: str, subscription_id: str, changes: Mapping[str, object]
    ) -> Subscription | None:
        """Sets ``filter`` / ``transform`` (None clears one); the subscription, or None."""
        async with self.db.write() as conn:
            result = await conn.execute(
                subscriptions.update()
                .where(
                    subscriptions.c.id == subscription_id,
                    subscriptions.c.tenant_id == tenant_id,
                    subscriptions.c.deleted_at.is_(None),
                )
                .values(**changes)
            )
        self.routing_version += 1
        if not result.rowcount:
            return None
        return await self.get_subscription(tenant_id, subscription_id)

    async def delete_subscription(self, tenant_id: str, subscription_id: str) -> bool:
        return await self._soft_delete(subscriptions, tenant_id, subscription_id)

    async def _soft_delete(self, table: sa.Table, tenant_id: str, row_id: str) -> bool:
        # Soft, so events and deliveries that name the row keep their history.
        async with self.db.write() as conn:
            result = await conn.execute(
                table.update()
                .where(
                    table.c.id == row_id,
                    table.c.tenant_id == tenant_id,
                    table.c.deleted_at.is_(None),
                )
                .values(deleted_at=time.time())
            )
        self.routing_version += 1
        return bool(result.rowcount)

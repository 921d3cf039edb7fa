"""Tenants, sources, endpoints and subscriptions: what a tenant configures."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.exceptions import NotFoundException

from interlink.api.auth import Principal, require_admin, require_tenant
from interlink.api.context import ApiContext
from interlink.api.filter_schemas import SubscriptionPatch
from interlink.api.filters import checked_filter, checked_patterns, checked_transform
from interlink.api.params import Unprocessable, found, page
from interlink.api.schemas import (
    EndpointCreated,
    EndpointHealthOut,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointSecretRotate,
    KafkaTargetIn,
    Listing,
    SecretAdded,
    SecretIn,
    SigningScheme,
    SourceCreated,
    SourceIn,
    SourceOut,
    SourcePatch,
    SubscriptionIn,
    SubscriptionOut,
    TenantCreated,
    TenantIn,
    TenantOut,
    scheme_of,
)
from interlink.delivery.outbound_guard import BlockedDestination, check_url, destination_warning
from interlink.domain import kafka
from interlink.domain.kafka import KafkaTarget
from interlink.domain.models import EndpointKind, EndpointStatus, Envelope
from interlink.domain.retry import RetryPolicy
from interlink.ingress.verifiers import (
    generate_secret,
    get_scheme,
    standard_webhooks,
    validate_config,
    validate_secret,
)
from interlink.partners.kit import PartnerKit


class TenantController(Controller):
    path = "/api/v1/tenants"
    tags = ["tenants"]

    @post("/", summary="Create a tenant and its first API key (admin)")
    async def create(self, data: TenantIn, principal: Principal, ctx: ApiContext) -> TenantCreated:
        require_admin(principal)
        tenant, key = await ctx.management.create_tenant(data.name)
        return TenantCreated(tenant=TenantOut.of(tenant), api_key=key)

    @get("/", summary="List tenants (admin)")
    async def list_(
        self, principal: Principal, ctx: ApiContext, limit: int = 50, cursor: str | None = None
    ) -> Listing:
        require_admin(principal)
        items, nxt = await ctx.management.list_tenants(page(limit, cursor))
        return Listing([TenantOut.of(t) for t in items], nxt)

    @get("/{tenant_id:str}", summary="Get a tenant")
    async def get_(self, tenant_id: str, principal: Principal, ctx: ApiContext) -> TenantOut:
        if not principal.is_admin and principal.tenant_id != tenant_id:
            raise NotFoundException(f"no tenant '{tenant_id}'")
        tenant = found(await ctx.management.get_tenant(tenant_id), "tenant", tenant_id)
        return TenantOut.of(tenant)


class SourceController(Controller):
    path = "/api/v1/sources"
    tags = ["sources"]

    @post("/", summary="Create a source: one inbound URL with its verifier and secrets")
    async def create(self, data: SourceIn, principal: Principal, ctx: ApiContext) -> SourceCreated:
        tenant_id = require_tenant(principal)
        kit = _kit(ctx, data.kit)
        # What the source does not say, the partner's kit does.
        verifier = data.verifier or (kit.verifier if kit else None) or "standard_webhooks"
        verifier_config = data.verifier_config
        if kit is not None and data.verifier is None and not verifier_config:
            verifier_config = dict(kit.verifier_config)
        secrets = list(data.secrets)
        try:
            if not secrets and get_scheme(verifier).validate_secret is not None:
                secrets = [generate_secret(verifier)]
            config = validate_config(verifier, verifier_config, secrets)
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        source = await ctx.management.create_source(
            tenant_id,
            name=data.name,
            verifier=verifier,
            verifier_config=config,
            secrets=secrets,
            envelope=data.envelope or (kit.envelope if kit else None) or Envelope(),
            max_body_bytes=data.max_body_bytes or ctx.settings.ingest_max_body_bytes,
            tolerance_seconds=data.tolerance_seconds or ctx.settings.ingest_tolerance_seconds,
            kit=kit.name if kit else None,
        )
        return SourceCreated(source=SourceOut.of(source, ctx.settings.public_url), secrets=secrets)

    @get("/", summary="List sources")
    async def list_(
        self, principal: Principal, ctx: ApiContext, limit: int = 50, cursor: str | None = None
    ) -> Listing:
        tenant_id = require_tenant(principal)
        items, nxt = await ctx.management.list_sources(tenant_id, page(limit, cursor))
        return Listing([SourceOut.of(s, ctx.settings.public_url) for s in items], nxt)

    @get("/{source_id:str}", summary="Get a source")
    async def get_(self, source_id: str, principal: Principal, ctx: ApiContext) -> SourceOut:
        source = found(
            await ctx.management.get_source(source_id, require_tenant(principal)),
            "source",
            source_id,
        )
        return SourceOut.of(source, ctx.settings.public_url)

    @post(
        "/{source_id:str}/secrets",
        summary="Rotate: add a secret (shown this once), optionally expiring the current ones",
    )
    async def add_secret(
        self, source_id: str, data: SecretIn, principal: Principal, ctx: ApiContext
    ) -> SecretAdded:
        tenant_id = require_tenant(principal)
        source = found(await ctx.management.get_source(source_id, tenant_id), "source", source_id)
        try:
            secret = data.secret or generate_secret(source.verifier)
            validate_secret(source.verifier, secret)
        except ValueError as exc:
            raise Unprocessable(f"secret: {exc}") from None
        now = time.time()
        expire_at = None
        if data.expire_current_in_seconds is not None:
            expire_at = now + data.expire_current_in_seconds
        try:
            rotated = await ctx.management.add_source_secret(
                tenant_id, source_id, secret, now=now, expire_others_at=expire_at
            )
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        source = found(rotated, "source", source_id)
        return SecretAdded(source=SourceOut.of(source, ctx.settings.public_url), secret=secret)

    @patch("/{source_id:str}", summary="Name the partner kit that normalizes a source's events")
    async def update(
        self, source_id: str, data: SourcePatch, principal: Principal, ctx: ApiContext
    ) -> SourceOut:
        kit = _kit(ctx, data.kit)
        source = found(
            await ctx.management.set_source_kit(
                require_tenant(principal), source_id, kit.name if kit else None
            ),
            "source",
            source_id,
        )
        return SourceOut.of(source, ctx.settings.public_url)

    @delete("/{source_id:str}", summary="Delete a source (its events are kept)")
    async def delete_(self, source_id: str, principal: Principal, ctx: ApiContext) -> None:
        if not await ctx.management.delete_source(require_tenant(principal), source_id):
            raise NotFoundException(f"no source '{source_id}'")


def _kit(ctx: ApiContext, name: str | None) -> PartnerKit | None:
    if name is None:
        return None
    kit = ctx.kits.get(name)
    if kit is None:
        installed = ", ".join(k.name for k in ctx.kits.all()) or "none"
        raise Unprocessable(f"kit: no partner kit '{name}' is installed ({installed})")
    return kit


async def _check_endpoint_url(url: str, ctx: ApiContext) -> list[str]:
    """Refuses a URL the guard would refuse outright (a private IP literal, a bad scheme); for
    a host name whose addresses the policy refuses, accepts with a warning: DNS can change,
    and the operator may be about to allow the network, but they hear now, not from the
    dead-letter queue later."""
    try:
        check_url(url, ctx.outbound)
    except (BlockedDestination, ValueError) as exc:
        raise Unprocessable(f"url: {exc}") from None
    warning = await destination_warning(url, ctx.outbound)
    return [f"url: {warning}"] if warning else []


def signing_secret(scheme: SigningScheme, supplied: str | None) -> tuple[str, str | None]:
    """A new signing secret to store, and for v1a the public key to show (the private key,
    generated here, is never shown); a supplied v1 secret is checked."""
    if scheme is SigningScheme.V1A:
        if supplied is not None:
            raise Unprocessable("secret: v1a keys are generated; send no secret with v1a")
        return standard_webhooks.generate_key_pair()
    secret = supplied or standard_webhooks.generate_secret()
    try:
        # Strictly a whsec_ secret: a public key, which a source may hold, would not sign.
        standard_webhooks.validate_secret(secret)
    except ValueError as exc:
        raise Unprocessable(f"secret: {exc}") from None
    return secret, None


_NO_URL = {
    EndpointKind.PULL: "a pull endpoint has none (consumers claim its deliveries)",
    EndpointKind.KAFKA: "a Kafka endpoint has none (it produces to kafka.topic)",
}


def _kafka_target(
    kind: EndpointKind, given: KafkaTargetIn | None, tenant_id: str, ctx: ApiContext
) -> KafkaTarget | None:
    """A Kafka endpoint's target once the tenant's grants admit it (422 naming the field
    otherwise); None for the other kinds, which take none."""
    if kind is not EndpointKind.KAFKA:
        if given is not None:
            raise Unprocessable("kafka: only a Kafka endpoint has one (kind 'kafka')")
        return None
    if given is None:
        raise Unprocessable("kafka: a Kafka endpoint needs one: cluster, topic (and key)")
    target = given.target()
    problem = kafka.target_problem(ctx.settings.kafka.grants(), tenant_id, target)
    if problem is not None:
        raise Unprocessable(problem)
    return target


class EndpointController(Controller):
    path = "/api/v1/endpoints"
    tags = ["endpoints"]

    @post(
        "/",
        summary="Create an endpoint: a URL that receives signed webhooks (push), or deliveries"
        " that consumers claim (pull)",
    )
    async def create(
        self, data: EndpointIn, principal: Principal, ctx: ApiContext
    ) -> EndpointCreated:
        tenant_id = require_tenant(principal)
        warnings: list[str] = []
        kafka = _kafka_target(data.kind, data.kafka, tenant_id, ctx)
        if data.kind is not EndpointKind.PUSH:
            if data.url is not None:
                raise Unprocessable(f"url: {_NO_URL[data.kind]}")
        elif data.url is None:
            raise Unprocessable(
                "url: a push endpoint needs one (or create it with kind 'pull' or 'kafka')"
            )
        else:
            warnings = await _check_endpoint_url(data.url, ctx)
        secret, public_key = signing_secret(data.signing, data.secret)
        endpoint = await ctx.management.create_endpoint(
            tenant_id,
            kind=data.kind,
            kafka=kafka,
            url=data.url or "",
            description=data.description,
            secret=secret,
            retry=RetryPolicy(schedule=tuple(data.retry_schedule))
            if data.retry_schedule
            else RetryPolicy(),
            timeout_seconds=data.timeout_seconds or ctx.settings.delivery_timeout_seconds,
            status=data.status,
            ordering=data.ordering,
            on_head_dead=data.on_head_dead,
            concurrency=data.concurrency,
            rate_limit=data.rate_limit,
            disable_after_seconds=data.disable_after_seconds,
            breaker=data.breaker,
        )
        return EndpointCreated(
            endpoint=EndpointOut.of(endpoint, warnings),
            secret=None if public_key else secret,
            public_key=public_key,
        )

    @get("/", summary="List endpoints")
    async def list_(
        self, principal: Principal, ctx: ApiContext, limit: int = 50, cursor: str | None = None
    ) -> Listing:
        items, nxt = await ctx.management.list_endpoints(
            require_tenant(principal), page(limit, cursor)
        )
        return Listing([EndpointOut.of(e) for e in items], nxt)

    @get("/{endpoint_id:str}", summary="Get an endpoint")
    async def get_(self, endpoint_id: str, principal: Principal, ctx: ApiContext) -> EndpointOut:
        endpoint = found(
            await ctx.management.get_endpoint(require_tenant(principal), endpoint_id),
            "endpoint",
            endpoint_id,
        )
        return EndpointOut.of(endpoint)

    @patch("/{endpoint_id:str}", summary="Change an endpoint: url, status (pause, enable), retries")
    async def update(
        self, endpoint_id: str, data: EndpointPatch, principal: Principal, ctx: ApiContext
    ) -> EndpointOut:
        tenant_id = require_tenant(principal)
        changes: dict[str, Any] = {
            k: v
            for k, v in msgspec.structs.asdict(data).items()
            if v is not None and v is not msgspec.UNSET
        }
        for name in ("rate_limit", "breaker"):
            if getattr(data, name) is None:
                changes[name] = None  # null removes it
        warnings: list[str] = []
        if "url" in changes or "kafka" in changes:
            current = await ctx.management.get_endpoint(tenant_id, endpoint_id)
            kind = EndpointKind.PUSH if current is None else current.kind
            if "kafka" in changes:
                changes["kafka"] = _kafka_target(kind, data.kafka, tenant_id, ctx)
            if "url" in changes:
                if kind is not EndpointKind.PUSH:
                    raise Unprocessable(f"url: {_NO_URL[kind]}")
                warnings = await _check_endpoint_url(changes["url"], ctx)
        if "retry_schedule" in changes:
            changes["retry"] = RetryPolicy(schedule=tuple(changes.pop("retry_schedule")))
        if "status" in changes:
            changes["disabled_reason"] = (
                "disabled by an operator" if changes["status"] is EndpointStatus.DISABLED else None
            )
        endpoint = found(
            await ctx.management.update_endpoint(tenant_id, endpoint_id, changes),
            "endpoint",
            endpoint_id,
        )
        return EndpointOut.of(endpoint, warnings)

    @post(
        "/{endpoint_id:str}/secret/rotate",
        summary="Rotate its signing secret: the new one signs from now on, the current ones "
        "beside it for overlap_seconds (default 24 h, at most 7 days)",
    )
    async def rotate_secret(
        self, endpoint_id: str, data: EndpointSecretRotate, principal: Principal, ctx: ApiContext
    ) -> EndpointCreated:
        tenant_id = require_tenant(principal)
        endpoint = found(
            await ctx.management.get_endpoint(tenant_id, endpoint_id), "endpoint", endpoint_id
        )
        scheme = data.signing or scheme_of(endpoint.secrets[-1].value)
        secret, public_key = signing_secret(scheme, data.secret)
        try:
            rotated = await ctx.management.rotate_endpoint_secret(
                tenant_id, endpoint_id, secret, now=time.time(), overlap=data.overlap_seconds
            )
        except ValueError as exc:
            raise Unprocessable(str(exc)) from None
        return EndpointCreated(
            endpoint=EndpointOut.of(found(rotated, "endpoint", endpoint_id)),
            secret=None if public_key else secret,
            public_key=public_key,
        )

    @get(
        "/{endpoint_id:str}/health",
        summary="An endpoint's circuit breaker, failing streak, latency and what holds its lane"
        " (slots in use, deferred deliveries, pacing horizon, full since), as the dispatchers see",
    )
    async def health(
        self, endpoint_id: str, principal: Principal, ctx: ApiContext
    ) -> EndpointHealthOut:
        tenant_id = require_tenant(principal)
        endpoint = found(
            await ctx.management.get_endpoint(tenant_id, endpoint_id), "endpoint", endpoint_id
        )
        now = time.time()
        return EndpointHealthOut.of(
            endpoint,
            await ctx.management.endpoint_lane(tenant_id, endpoint_id),
            await ctx.management.endpoint_load(tenant_id, endpoint_id, now),
            now,
        )

    @delete("/{endpoint_id:str}", summary="Delete an endpoint (its deliveries are kept)")
    async def delete_(self, endpoint_id: str, principal: Principal, ctx: ApiContext) -> None:
        if not await ctx.management.delete_endpoint(require_tenant(principal), endpoint_id):
            raise NotFoundException(f"no endpoint '{endpoint_id}'")


class SubscriptionController(Controller):
    path = "/api/v1/subscriptions"
    tags = ["subscriptions"]

    @post("/", summary="Subscribe an endpoint to event types (patterns like 'booking.*' or '*')")
    async def create(
        self, data: SubscriptionIn, principal: Principal, ctx: ApiContext
    ) -> SubscriptionOut:
        tenant_id = require_tenant(principal)
        patterns = checked_patterns(data.event_types)
        if data.filter is not None:
            await checked_filter(ctx, tenant_id, data.filter)
        if data.transform is not None:
            checked_transform(data.transform)
        if await ctx.management.get_endpoint(tenant_id, data.endpoint_id) is None:
            raise NotFoundException(f"no endpoint '{data.endpoint_id}'")
        sub = await ctx.management.create_subscription(
            tenant_id, data.endpoint_id, patterns, data.filter, data.transform
        )
        return SubscriptionOut.of(sub)

    @patch("/{subscription_id:str}", summary="Change its filter or transformation (null removes)")
    async def update(
        self, subscription_id: str, data: SubscriptionPatch, principal: Principal, ctx: ApiContext
    ) -> SubscriptionOut:
        tenant_id = require_tenant(principal)
        changes: dict[str, object] = {}
        if isinstance(data.filter, str):
            await checked_filter(ctx, tenant_id, data.filter)
        if isinstance(data.transform, str):
            checked_transform(data.transform)
        for name in ("filter", "transform"):
            if getattr(data, name) is not msgspec.UNSET:
                changes[name] = getattr(data, name)
        if not changes:
            sub = await ctx.management.get_subscription(tenant_id, subscription_id)
        else:
            sub = await ctx.management.update_subscription(tenant_id, subscription_id, changes)
        return SubscriptionOut.of(found(sub, "subscription", subscription_id))

    @get("/", summary="List subscriptions")
    async def list_(
        self,
        principal: Principal,
        ctx: ApiContext,
        limit: int = 50,
        cursor: str | None = None,
        endpoint_id: str | None = None,
    ) -> Listing:
        items, nxt = await ctx.management.list_subscriptions(
            require_tenant(principal), page(limit, cursor), endpoint_id
        )
        return Listing([SubscriptionOut.of(s) for s in items], nxt)

    @get("/{subscription_id:str}", summary="Get a subscription")
    async def get_(
        self, subscription_id: str, principal: Principal, ctx: ApiContext
    ) -> SubscriptionOut:
        sub = found(
            await ctx.management.get_subscription(require_tenant(principal), subscription_id),
            "subscription",
            subscription_id,
        )
        return SubscriptionOut.of(sub)

    @delete("/{subscription_id:str}", summary="Delete a subscription")
    async def delete_(self, subscription_id: str, principal: Principal, ctx: ApiContext) -> None:
        if not await ctx.management.delete_subscription(require_tenant(principal), subscription_id):
            raise NotFoundException(f"no subscription '{subscription_id}'")

"""The consumer API of pull endpoints: claim deliveries (a long poll), ack or nack each one.

The rules are the queue's (delivery/pull.py over storage's claim and settle); here a request
becomes a call and an outcome becomes an answer: 404 for what the tenant does not have, 409
for a push endpoint's claim or delivery and for an answer under a lease that is no longer the
delivery's (nothing settled).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, post
from litestar.exceptions import ClientException, NotFoundException

from interlink.api.auth import Principal, require_tenant
from interlink.api.context import ApiContext
from interlink.api.params import found
from interlink.api.schemas import DeliveryOut, iso
from interlink.delivery.pull import Consumers, LeaseLost, NotPull
from interlink.domain.pull import (
    DEFAULT_LEASE_SECONDS,
    MAX_CLAIM,
    MAX_LEASE_SECONDS,
    MAX_WAIT_SECONDS,
    Answer,
    lease_id,
)
from interlink.domain.retry import MAX_RETRY_AFTER_SECONDS
from interlink.storage.ports import ERROR_CHARS, Claimed

LeaseId = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class ClaimIn(msgspec.Struct, forbid_unknown_fields=True):
    max: Annotated[int, msgspec.Meta(ge=1, le=MAX_CLAIM)] = 10
    # how long the deliveries are this consumer's; unanswered by then, they are claimable again
    lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=MAX_LEASE_SECONDS)] = (
        DEFAULT_LEASE_SECONDS
    )
    # a long poll: how long to wait for a first delivery when none is claimable now
    wait_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_WAIT_SECONDS)] = 0


class ClaimedOut(msgspec.Struct):
    delivery_id: str
    lease_id: str  # the proof of this claim's lease: an ack or nack must carry it
    lease_expires_at: str | None
    attempt: int  # 1 for the first claim's answer, counting nacks and lapsed leases' not
    event_id: str
    type: str
    key: str | None
    data: msgspec.Raw
    occurred_at: str | None
    received_at: str | None

    @classmethod
    def of(cls, c: Claimed) -> ClaimedOut:
        return cls(
            delivery_id=c.delivery_id,
            lease_id=lease_id(c.lease_until),
            lease_expires_at=iso(c.lease_until),
            attempt=c.attempt_count + 1,
            event_id=c.event_id,
            type=c.event_type,
            key=c.key,
            data=msgspec.Raw(c.event_data),
            occurred_at=iso(c.occurred_at),
            received_at=iso(c.received_at),
        )


class ClaimsOut(msgspec.Struct):
    data: list[ClaimedOut]  # in claim order; empty when none came within wait_seconds


class AckIn(msgspec.Struct, forbid_unknown_fields=True):
    lease_id: LeaseId


class NackIn(msgspec.Struct, forbid_unknown_fields=True):
    lease_id: LeaseId
    error: Annotated[str, msgspec.Meta(max_length=ERROR_CHARS)] = "nacked by the consumer"
    # no sooner than this; the endpoint's retry schedule decides otherwise (and how many tries)
    retry_after_seconds: Annotated[float, msgspec.Meta(ge=0, le=MAX_RETRY_AFTER_SECONDS)] | None = (
        None
    )


class LeaseIn(msgspec.Struct, forbid_unknown_fields=True):
    lease_id: LeaseId
    # the lease ends this long from now instead (a handler that needs longer)
    lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=MAX_LEASE_SECONDS)] = (
        DEFAULT_LEASE_SECONDS
    )


class LeaseOut(msgspec.Struct):
    lease_id: str  # the lease's new proof: answer (or extend again) under it, not the old one
    lease_expires_at: str | None


def _consumers(ctx: ApiContext) -> Consumers:
    if ctx.consumers is None:
        raise NotFoundException("this process does not serve pull consumers")
    return ctx.consumers


class ConsumerController(Controller):
    path = "/api/v1"
    tags = ["consumers"]

    @post(
        "/endpoints/{endpoint_id:str}/claims",
        status_code=200,
        summary="Claim up to max deliveries of a pull endpoint, waiting up to wait_seconds"
        " for the first (a long poll); each is leased to you for lease_seconds",
    )
    async def claim(
        self, endpoint_id: str, data: ClaimIn, principal: Principal, ctx: ApiContext
    ) -> ClaimsOut:
        tenant_id = require_tenant(principal)
        try:
            claimed = await _consumers(ctx).claim(
                tenant_id, endpoint_id, data.max, data.lease_seconds, data.wait_seconds
            )
        except NotPull as exc:
            raise ClientException(
                f"{exc}; only a pull endpoint is claimed", status_code=409
            ) from None
        return ClaimsOut([ClaimedOut.of(c) for c in found(claimed, "endpoint", endpoint_id)])

    @post(
        "/deliveries/{delivery_id:str}/ack",
        status_code=200,
        summary="Settle a claimed delivery as handled (under the lease its claim gave)",
    )
    async def ack(
        self, delivery_id: str, data: AckIn, principal: Principal, ctx: ApiContext
    ) -> DeliveryOut:
        return await _answer(ctx, principal, delivery_id, data.lease_id, Answer(handled=True))

    @post(
        "/deliveries/{delivery_id:str}/lease",
        status_code=200,
        summary="Extend a claimed delivery's lease (a slow handler): it ends lease_seconds from"
        " now, under a new lease_id",
    )
    async def extend(
        self, delivery_id: str, data: LeaseIn, principal: Principal, ctx: ApiContext
    ) -> LeaseOut:
        tenant_id = require_tenant(principal)
        try:
            extended = await _consumers(ctx).extend(
                tenant_id, delivery_id, data.lease_id, data.lease_seconds
            )
        except (NotPull, LeaseLost) as exc:
            raise ClientException(str(exc), status_code=409) from None
        until = found(extended, "delivery", delivery_id)
        return LeaseOut(lease_id=lease_id(until), lease_expires_at=iso(until))

    @post(
        "/deliveries/{delivery_id:str}/nack",
        status_code=200,
        summary="Fail a claimed delivery into its endpoint's retry schedule (dead after the last"
        " attempt)",
    )
    async def nack(
        self, delivery_id: str, data: NackIn, principal: Principal, ctx: ApiContext
    ) -> DeliveryOut:
        answer = Answer(False, data.error, data.retry_after_seconds)
        return await _answer(ctx, principal, delivery_id, data.lease_id, answer)


async def _answer(
    ctx: ApiContext, principal: Principal, delivery_id: str, lease: str, answer: Answer
) -> DeliveryOut:
    tenant_id = require_tenant(principal)
    try:
        settled = await _consumers(ctx).answer(tenant_id, delivery_id, lease, answer)
    except (NotPull, LeaseLost) as exc:
        raise ClientException(str(exc), status_code=409) from None
    if not settled:
        raise NotFoundException(f"no delivery '{delivery_id}'")
    delivery = found(await ctx.deliveries.get(tenant_id, delivery_id), "delivery", delivery_id)
    return DeliveryOut.of(delivery)

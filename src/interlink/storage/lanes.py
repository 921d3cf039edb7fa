"""What both delivery-queue adapters do with endpoint lanes around the SQL: decode the rows,
apply the domain's lane rules, and turn a settlement's lane changes into rows and operator
events. The SQL differs per adapter; this does not.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
import sqlalchemy as sa

from interlink.domain.circuit_breaker import BreakerPolicy, BreakerStatus
from interlink.domain.endpoint_health import DisableReason
from interlink.domain.ids import new_id
from interlink.domain.kafka import KafkaTarget
from interlink.domain.lanes import (
    Lane,
    LaneChange,
    LanePolicy,
    LaneState,
    Outcome,
    drain_window,
    restarted,
    settle,
)
from interlink.domain.models import Event, lane_policy
from interlink.domain.rate_limit import RateLimit
from interlink.storage.ports import LaneNotice, Settled

# Operator events (endpoint.disabled, endpoint.recovered) enter the log under this source id,
# so they are routed like any other event and can be subscribed to.
OPERATOR_SOURCE = "operator"

DISABLED_REASONS = {
    DisableReason.GONE: "the receiver answered 410 Gone",
    DisableReason.FAILING: "no successful attempt for longer than disable_after_seconds",
}

# Slots are taken by live leases and by nothing else. A claim is the only write that sets
# ``lease_until`` in the future; ``next_attempt_at`` is a lease's expiry only while a delivery is
# leased (a deferral moves it too), so counting slots by it counted deferred deliveries as sent:
# after crashes they filled their lane for good (issue 11). Text, not SQLAlchemy, so the SQLite
# driver's statements embed the same rule; single-table statements only (bare column names).
LIVE_LEASE = "status = 'in_flight' AND lease_until > {now}"
# What a delivery that holds no lease is, in a deferral or a release: pending again if its lease
# lapsed (domain/delivery.py: in_flight → pending, lease lost), otherwise as it was. So a
# delivery is ``in_flight`` only while a claim's lease is on it.
UNLEASED_STATUS = "CASE WHEN status = 'in_flight' THEN 'pending' ELSE status END"
# At start-up of the only process (SQLite): deliveries the lanes put off wait for pacing that
# was derived from the previous process's slots; due again now, the lanes pace them afresh.
# Scheduled retries keep their backoff.
DEFERRED = "status = 'pending' AND next_attempt_at > {now}"


def live_lease(now: float) -> sa.TextClause:
    """``LIVE_LEASE`` for SQLAlchemy: deliveries whose lease holds at ``now``."""
    return sa.text(LIVE_LEASE.format(now=":lease_now")).bindparams(lease_now=now)


def deferred(now: float) -> sa.TextClause:
    """``DEFERRED`` for SQLAlchemy: deliveries a lane has put off past ``now``."""
    return sa.text(DEFERRED.format(now=":deferred_now")).bindparams(deferred_now=now)


_state = msgspec.json.Decoder(LaneState)
T = TypeVar("T")


def decode_state(text: str | None) -> LaneState:
    return LaneState() if text is None else _state.decode(text)


def encode_state(state: LaneState) -> str:
    return msgspec.json.encode(state).decode()


def restarted_lanes(rows: Iterable[tuple[str, str | None]], now: float) -> list[dict[str, Any]]:
    """Of ``(endpoint id, state)`` rows, the lanes that start afresh when the only process
    starts (domain.lanes.restarted), as ``b_id``, ``b_state``, ``b_at`` values to write."""
    out: list[dict[str, Any]] = []
    for endpoint_id, text in rows:
        state = decode_state(text)
        fresh = restarted(state)
        if fresh != state:
            out.append({"b_id": endpoint_id, "b_state": encode_state(fresh), "b_at": now})
    return out


def _json(value: Any, kind: type[T]) -> T | None:
    """A JSON column's value: text from the SQLite driver, decoded from SQLAlchemy."""
    if isinstance(value, str | bytes):
        return msgspec.json.decode(value, type=kind | None)
    return None if value is None else msgspec.convert(value, kind)


def policy_of(
    concurrency: int,
    rate_limit: Any,
    timeout_seconds: float,
    disable_after_seconds: float | None,
    breaker: Any,
) -> LanePolicy:
    """The lane policy from an endpoint row (its JSON columns as text or decoded)."""
    return lane_policy(
        concurrency,
        _json(rate_limit, RateLimit),
        timeout_seconds,
        disable_after_seconds,
        _json(breaker, BreakerPolicy),
    )


def kafka_target(value: Any) -> KafkaTarget | None:
    """A Kafka endpoint's target from its row's JSON column (text or decoded), None for others."""
    return _json(value, KafkaTarget)


def lane_row(endpoint_id: str, tenant_id: str, state: LaneState, now: float) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint_id,
        "tenant_id": tenant_id,
        "state": encode_state(state),
        "breaker": state.breaker.state.value,
        "updated_at": now,
    }


class Disabling(msgspec.Struct, frozen=True):
    tenant_id: str
    endpoint_id: str
    reason: str
    event: Event  # endpoint.disabled: appended only if this disabled the endpoint

    @property
    def notice(self) -> LaneNotice:
        return LaneNotice(self.tenant_id, self.endpoint_id, "endpoint_disabled", self.reason)


class Release(msgspec.Struct, frozen=True):
    """A lane whose breaker closed again: what waits for it is spread over its drain window."""

    endpoint_id: str
    policy: LanePolicy
    state: LaneState

    def window(self, backlog: int) -> float:
        return drain_window(self.policy, self.state, backlog)


class LaneUpdates(msgspec.Struct, frozen=True):
    rows: list[dict[str, Any]]  # lane_row values to write
    disabled: list[Disabling]
    events: list[Event]  # other operator events to append to the log
    released: list[Release]
    notices: list[LaneNotice]  # breakers that opened or closed (disabling: see ``disabled``)


def settle_lanes(
    batch: Sequence[Settled],
    states: Mapping[str, LaneState],
    now: float,
    rng: random.Random,
) -> LaneUpdates:
    """The lanes after a settled batch; ``states`` holds the lanes of the batch's endpoints."""
    by_endpoint: dict[str, list[Settled]] = {}
    for s in batch:
        by_endpoint.setdefault(s.claimed.endpoint_id, []).append(s)
    rows: list[dict[str, Any]] = []
    disabled: list[Disabling] = []
    events: list[Event] = []
    released: list[Release] = []
    notices: list[LaneNotice] = []
    for endpoint_id, settled in by_endpoint.items():
        first = settled[0].claimed
        outcomes = [Outcome(s.started_at, s.result.outcome, s.result.latency_ms) for s in settled]
        state = states.get(endpoint_id, LaneState())
        result = settle(state, first.lane, outcomes, now, rng)
        rows.append(lane_row(endpoint_id, first.tenant_id, result.state, now))
        before, after = state.breaker.state, result.state.breaker.state
        if before is BreakerStatus.CLOSED and after is not BreakerStatus.CLOSED:
            notices.append(
                LaneNotice(first.tenant_id, endpoint_id, "breaker_opened", "too many failures")
            )
        if result.disabled is not None:
            reason = DISABLED_REASONS[result.disabled]
            data = {"endpoint_id": endpoint_id, "reason": result.disabled.value, "detail": reason}
            event = operator_event(first.tenant_id, endpoint_id, LaneChange.DISABLED, data, now)
            disabled.append(Disabling(first.tenant_id, endpoint_id, reason, event))
        elif result.recovered:
            released.append(Release(endpoint_id, first.lane, result.state))
            notices.append(
                LaneNotice(first.tenant_id, endpoint_id, "breaker_closed", "a probe succeeded")
            )
            events.append(
                operator_event(
                    first.tenant_id,
                    endpoint_id,
                    LaneChange.RECOVERED,
                    {"endpoint_id": endpoint_id, "failing_for_seconds": result.failing_for},
                    now,
                )
            )
    return LaneUpdates(rows, disabled, events, released, notices)


def operator_event(
    tenant_id: str, endpoint_id: str, change: LaneChange, data: dict[str, Any], now: float
) -> Event:
    body = msgspec.json.encode(data)
    event_id = new_id("event")
    return Event(
        id=event_id,
        tenant_id=tenant_id,
        source_id=OPERATOR_SOURCE,
        idempotency_key=event_id,
        type=change.value,
        key=endpoint_id,
        received_at=now,
        occurred_at=now,
        data=body,
        raw=body,
        headers={},
    )


def lanes_of(
    policies: Mapping[str, LanePolicy],
    states: Mapping[str, LaneState],
    in_flight: Mapping[str, int],
) -> dict[str, Lane]:
    return {
        endpoint_id: Lane(
            policy, states.get(endpoint_id, LaneState()), in_flight.get(endpoint_id, 0)
        )
        for endpoint_id, policy in policies.items()
    }

"""Fan-out: the endpoints an event goes to, from the tenant's subscriptions (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from interlink.domain.models import Subscription
from interlink.domain.patterns import matches_any


def endpoints_for(event_type: str, tenant_id: str, subs: Iterable[Subscription]) -> list[str]:
    """Each matching endpoint once, even when several of its subscriptions match."""
    seen: dict[str, None] = {}
    for sub in subs:
        if sub.tenant_id == tenant_id and matches_any(sub.event_types, event_type):
            seen.setdefault(sub.endpoint_id)
    return list(seen)


def index_by_tenant(subs: Sequence[Subscription]) -> dict[str, list[Subscription]]:
    by_tenant: dict[str, list[Subscription]] = {}
    for sub in subs:
        by_tenant.setdefault(sub.tenant_id, []).append(sub)
    return by_tenant

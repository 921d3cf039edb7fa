"""Content filters at routing: each subscription's compiled filter, and the fan-out of one
event through type patterns and filters (pure but for the process's compile cache).

A filter is compiled once per process for each distinct text with its segments expanded
(FilterCache), when the router's subscription cache loads it. A stored filter that no longer
compiles (a segment it names was deleted under a race, or changed in another process) matches
nothing and is counted, like an evaluation error: one subscription's trouble never stops
routing the event to the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from interlink.domain.filters import (
    Compiled,
    FilterError,
    Outcome,
    activation,
    compile_filter,
    evaluate,
    event_shape,
)
from interlink.domain.models import Subscription
from interlink.domain.patterns import matches_any
from interlink.storage.ports import EventContent, LogEntry

INVALID = "invalid"  # the outcome counted for a stored filter that does not compile
CACHE_SIZE = 10_000

Count = Callable[[str], None]  # one filter evaluation's outcome, for the metric


class Route(msgspec.Struct, frozen=True):
    subscription: Subscription
    compiled: Compiled | None = None  # none: no filter, or ``invalid``
    invalid: bool = False

    @property
    def filtered(self) -> bool:
        return self.compiled is not None or self.invalid


class FilterCache:
    """Compiled filters by their text and segments, kept for the process's life (bounded)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._compiled: dict[tuple[str, tuple[tuple[str, str], ...]], Compiled | None] = {}

    def get(self, text: str, segments: Mapping[str, str]) -> Compiled | None:
        key = (text, tuple(sorted(segments.items())))
        if key in self._compiled:
            return self._compiled[key]
        try:
            compiled: Compiled | None = compile_filter(text, segments)
        except FilterError:
            compiled = None
        if len(self._compiled) >= self._size:
            self._compiled.clear()  # rare: only a tenant churning filters gets here
        self._compiled[key] = compiled
        return compiled


def routes_of(
    subs: Iterable[Subscription], segments: Mapping[str, str], cache: FilterCache
) -> list[Route]:
    out = []
    for sub in subs:
        if sub.filter is None:
            out.append(Route(sub))
            continue
        compiled = cache.get(sub.filter, segments)
        out.append(Route(sub, compiled, invalid=compiled is None))
    return out


def variables(entry: LogEntry, content: EventContent | None) -> dict[str, object]:
    """What a filter sees of an event."""
    data: Any = None
    if content is not None:
        try:
            data = msgspec.json.decode(content.data)
        except msgspec.DecodeError:
            data = None
    return {
        "type": entry.type,
        "source": content.source_id if content else None,
        "key": entry.key,
        "data": data,
        "headers": dict(content.headers) if content else {},
        "occurred_at": content.occurred_at if content else None,
    }


def needs_content(entry: LogEntry, routes: Sequence[Route]) -> bool:
    return any(r.filtered and matches_any(r.subscription.event_types, entry.type) for r in routes)


def targets(
    entry: LogEntry, routes: Sequence[Route], content: EventContent | None, count: Count
) -> list[tuple[str, str]]:
    """(endpoint id, subscription id) for each endpoint the event goes to, once each (the first
    matching subscription's: its transformation is the one applied)."""
    seen: dict[str, str] = {}
    env: dict[str, object] | None = None
    context: Any = None
    shape: tuple[int, int] | None = None
    for route in routes:
        sub = route.subscription
        if sub.endpoint_id in seen or not matches_any(sub.event_types, entry.type):
            continue
        if sub.tenant_id != entry.tenant_id:
            continue
        if route.invalid:
            count(INVALID)
            continue
        if route.compiled is not None:
            if env is None:
                env = variables(entry, content)
                context = activation(env)
            if route.compiled.shaped and shape is None:
                shape = event_shape(env["data"])
            outcome = evaluate(route.compiled, context, shape if route.compiled.shaped else None)
            count(outcome.value)
            if outcome is not Outcome.MATCH:
                continue
        seen[sub.endpoint_id] = sub.id
    return list(seen.items())

"""Bodies of the filter, segment and preview operations (issue 16)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from interlink.api.schemas import Id, Pattern, iso
from interlink.domain.models import Segment

# The document's bound is the request's sanity limit; the rules on a filter (2,048 characters as
# written, 8,192 with its segments, nesting, comprehensions) are 422s that name what is wrong.
FilterText = Annotated[
    str,
    msgspec.Meta(
        max_length=16384,
        description="A CEL expression over the event: type, source, key, data, headers, "
        'occurred_at, and segment("name"). At most 2,048 characters (8,192 with its segments '
        "expanded), 32 nested brackets, 4 comprehensions and none inside another, 16 '+'; "
        "refused with 422 otherwise. See docs/routing.md.",
    ),
]
TransformText = Annotated[
    str,
    msgspec.Meta(
        max_length=16384,
        description="A JSONata expression over the event's data ($event: the rest of the "
        "event); its result is the data sent. At most 4,096 characters (422 otherwise).",
    ),
]
SegmentName = Annotated[str, msgspec.Meta(pattern="^[a-z0-9][a-z0-9-]{0,62}$")]
SegmentText = Annotated[
    str,
    msgspec.Meta(
        max_length=16384,
        description="A CEL predicate, as a filter but without segment(): at most 2,048 "
        "characters (422 otherwise).",
    ),
]
Description = Annotated[str, msgspec.Meta(max_length=500)]


class SegmentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: SegmentName
    expression: SegmentText
    description: Description = ""


class SegmentPatch(msgspec.Struct, forbid_unknown_fields=True):
    expression: SegmentText | None = None
    description: Description | None = None


class SegmentOut(msgspec.Struct):
    name: str
    expression: str
    description: str
    created_at: str | None
    updated_at: str | None

    @classmethod
    def of(cls, s: Segment) -> SegmentOut:
        return cls(s.name, s.expression, s.description, iso(s.created_at), iso(s.updated_at))


class SubscriptionPatch(msgspec.Struct, forbid_unknown_fields=True):
    # null removes it; leaving it out keeps it
    filter: FilterText | msgspec.UnsetType | None = msgspec.UNSET
    transform: TransformText | msgspec.UnsetType | None = msgspec.UNSET


class PreviewEvent(msgspec.Struct, forbid_unknown_fields=True):
    type: Pattern
    data: Any = None
    source: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    key: Annotated[str, msgspec.Meta(max_length=300)] | None = None
    headers: dict[str, Annotated[str, msgspec.Meta(max_length=8192)]] = {}
    occurred_at: Annotated[float, msgspec.Meta(ge=0, le=253402300799)] | None = None


class PreviewIn(msgspec.Struct, forbid_unknown_fields=True):
    """Either a stored event (event_id) or one given here (event)."""

    event_id: Id | None = None
    event: PreviewEvent | None = None


class DraftPreviewIn(msgspec.Struct, forbid_unknown_fields=True):
    """A subscription not saved yet: its types, filter and transformation, and an event."""

    event_types: Annotated[list[Pattern], msgspec.Meta(min_length=1, max_length=100)] = (
        msgspec.field(default_factory=lambda: ["*"])
    )
    filter: FilterText | None = None
    transform: TransformText | None = None
    event_id: Id | None = None
    event: PreviewEvent | None = None


class PreviewOut(msgspec.Struct):
    matched: bool  # the subscription would deliver the event
    type_matched: bool  # its event_types match the event's type
    filter_outcome: str | None  # match, no_match, error, cost_exceeded; none without a filter
    filter_error: str | None  # why it errored
    filter_micros: int  # how long the filter took
    cost_bound: int | None  # the bound checked before a shaped filter runs (docs/routing.md)
    cost_limit: int
    output: msgspec.Raw | None  # the data that would be sent (transformed), when matched
    transform_error: str | None
    transform_micros: int

"""A delivery's transformation at send time: the routing subscription's JSONata applied to the
event's data, the result spliced into the webhook body in its place, so the signature covers
what the receiver gets.

Compiled transformations are kept per process by their text (the dispatcher runs them on the
event loop's thread one at a time: a ``jsonata.Jsonata`` is not safe to share across threads).
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from interlink.domain.transforms import Result, TransformError, apply, compile_transform
from interlink.storage.ports import Claimed

CACHE_SIZE = 1024


@functools.lru_cache(maxsize=CACHE_SIZE)
def compiled(text: str) -> Any:
    return compile_transform(text)


def event_variables(
    event_type: str,
    source_id: str | None,
    key: str | None,
    headers: dict[str, str] | None,
    occurred_at: float | None,
) -> dict[str, object]:
    """``$event`` in a transformation: the event but its data (which is the input)."""
    return {
        "type": event_type,
        "source": source_id,
        "key": key,
        "headers": headers or {},
        "occurred_at": occurred_at,
    }


def transform(text: str, data: bytes, event: dict[str, object]) -> Result:
    """TransformError (with the reason) when it does not compile or fails on this event."""
    try:
        decoded = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise TransformError("transformation failed: the event's data is not JSON") from None
    return apply(compiled(text), decoded, event)


def delivered_data(c: Claimed) -> bytes:
    """The data a claimed delivery sends: the event's, or its transformation's output."""
    if c.transform is None:
        return c.event_data
    event = event_variables(c.event_type, c.source_id, c.key, c.headers, c.occurred_at)
    return transform(c.transform, c.event_data, event).body

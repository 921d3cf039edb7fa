"""Event-type patterns of subscriptions: ``booking.created``, ``booking.*``, ``*``.

A ``*`` segment matches exactly one dot-separated segment, except as the last segment where
it matches one or more (so ``booking.*`` matches ``booking.created`` and ``booking.fee.added``);
a lone ``*`` matches every type.

Canonical types are dot-separated segments. A partner's own types (what ingest reads from its
payload) may also have ``/`` inside a segment — Shopify's ``orders/create`` — and a pattern may
name such a segment literally; ``/`` never separates segments, so ``*`` and every pattern over
canonical types mean what they meant.
"""

from __future__ import annotations

import re

_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+")
_PARTNER_SEGMENT = re.compile(r"[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+)*")


class InvalidPattern(ValueError):
    pass


def validate_pattern(pattern: str) -> str:
    if not pattern:
        raise InvalidPattern("an event-type pattern may not be empty")
    for segment in pattern.split("."):
        if segment != "*" and not _PARTNER_SEGMENT.fullmatch(segment):
            raise InvalidPattern(
                f"invalid segment {segment!r} in pattern {pattern!r}: "
                "use letters, digits, '_', '-' (a partner's type may add '/' between them) "
                "or a lone '*'"
            )
    return pattern


def validate_event_type(event_type: str, *, partner: bool = False) -> str:
    """A canonical type; with ``partner``, a partner's own type (``/`` allowed in segments)."""
    if not event_type or len(event_type) > 200:
        raise InvalidPattern("an event type must have 1 to 200 characters")
    segment_re = _PARTNER_SEGMENT if partner else _SEGMENT
    for segment in event_type.split("."):
        if not segment_re.fullmatch(segment):
            also = " ('/' between them)" if partner else ""
            raise InvalidPattern(
                f"invalid event type {event_type!r}: dot-separated segments of letters, "
                f"digits, '_' or '-'{also}"
            )
    return event_type


def matches(pattern: str, event_type: str) -> bool:
    if pattern == "*":
        return True
    want = pattern.split(".")
    have = event_type.split(".")
    for i, segment in enumerate(want):
        last = i == len(want) - 1
        if i >= len(have):
            return False
        if segment == "*":
            if last:
                return True
            continue
        if segment != have[i]:
            return False
    return len(have) == len(want)


def matches_any(patterns: list[str] | tuple[str, ...], event_type: str) -> bool:
    return any(matches(p, event_type) for p in patterns)

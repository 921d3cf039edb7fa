"""Realtime streams of the log, the rules without I/O: filters, stream tokens, frames, seams.

A stream carries one tenant's events in log order; each message's id is the event's log
position (``seq``), so a client resumes by naming the last one it saw. Browsers cannot set an
``Authorization`` header on an ``EventSource``: they connect with a short-lived stream token
instead, an HMAC-signed record of the tenant, an expiry and optionally the filters, checked
without a database round trip by any process that shares the admin key it is derived from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

import msgspec

from interlink.domain.patterns import InvalidPattern, matches_any, validate_pattern

MAX_FILTER_VALUES = 20


class InvalidFilter(ValueError):
    pass


class StreamFilter(msgspec.Struct, frozen=True):
    """What a connection wants of its tenant's events; an empty tuple means any."""

    types: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()

    def matches(self, event_type: str, source_id: str, key: str | None) -> bool:
        return (
            (not self.sources or source_id in self.sources)
            and (not self.keys or (key is not None and key in self.keys))
            and (not self.types or matches_any(self.types, event_type))
        )

    def narrowed_by(self, asked: StreamFilter) -> StreamFilter:
        """This filter (a token's) with what the request asks on top: a request may narrow a
        token's filter, never widen it (``InvalidFilter`` names the field)."""
        out: dict[str, tuple[str, ...]] = {}
        for name in ("types", "sources", "keys"):
            mine, theirs = getattr(self, name), getattr(asked, name)
            if mine and theirs and not set(theirs) <= set(mine):
                raise InvalidFilter(
                    f"the stream token allows {name} {','.join(mine)} only; "
                    f"{','.join(theirs)} is not within it"
                )
            out[name] = theirs or mine
        return StreamFilter(**out)


def parse_list(name: str, value: str | None) -> tuple[str, ...]:
    """A comma-separated query value (``booking.*,payment.*``) as a tuple, without blanks."""
    if not value:
        return ()
    items = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    if len(items) > MAX_FILTER_VALUES:
        raise InvalidFilter(f"{name}: at most {MAX_FILTER_VALUES} values")
    if any(len(v) > 300 for v in items):
        raise InvalidFilter(f"{name}: a value has more than 300 characters")
    return items


def stream_filter(
    types: Sequence[str], sources: Sequence[str], keys: Sequence[str]
) -> StreamFilter:
    try:
        checked = tuple(validate_pattern(t) for t in types)
    except InvalidPattern as exc:
        raise InvalidFilter(f"types: {exc}") from None
    return StreamFilter(types=checked, sources=tuple(sources), keys=tuple(keys))


# stream tokens ------------------------------------------------------------------------------------

TOKEN_PREFIX = "ik_stream_"  # noqa: S105 (a prefix, not a secret); ik_…: the log redaction already hides anything shaped like it
DEFAULT_TOKEN_SECONDS = 300.0
MAX_TOKEN_SECONDS = 3600.0
_MAC_BYTES = 32


class TokenRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


class StreamGrant(msgspec.Struct, frozen=True):
    """What a stream token allows: one tenant's stream, until ``expires_at`` to connect."""

    tenant_id: str
    expires_at: float
    filter: StreamFilter = StreamFilter()


def token_key(admin_key: str) -> bytes:
    """The tokens' HMAC key, derived from the admin key: every process of a deployment has it,
    and rotating the admin key voids every token (they live minutes)."""
    return hmac.new(admin_key.encode(), b"interlink stream tokens v1", hashlib.sha256).digest()


def mint_token(key: bytes, grant: StreamGrant) -> str:
    body = msgspec.json.encode(grant)
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def verify_token(key: bytes, token: str, now: float) -> StreamGrant:
    """The grant a token carries; ``TokenRefused`` (401) when it is not one Interlink signed
    or has expired. The token itself never goes into the message."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 4096:
        raise TokenRefused(401, "not a stream token (mint one with POST /api/v1/stream-tokens)")
    raw = token.removeprefix(TOKEN_PREFIX)
    try:
        packed = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, TypeError):
        raise TokenRefused(401, "the stream token is malformed") from None
    body, mac = packed[:-_MAC_BYTES], packed[-_MAC_BYTES:]
    if len(packed) <= _MAC_BYTES or not hmac.compare_digest(
        mac, hmac.new(key, body, hashlib.sha256).digest()
    ):
        raise TokenRefused(401, "the stream token is not valid (not signed by this deployment)")
    grant = msgspec.json.decode(body, type=StreamGrant)
    if grant.expires_at <= now:
        raise TokenRefused(401, "the stream token has expired: mint a new one to connect")
    return grant


# frames -------------------------------------------------------------------------------------------


def sse_event(seq: int, payload: bytes) -> bytes:
    """One Server-Sent Event: ``id`` its log position, ``data`` the event (JSON without raw line
    breaks: ``one_line``). No ``event:`` name, so an EventSource's ``onmessage`` gets every
    event; the type is in the data."""
    return b"id: %d\ndata: %s\n\n" % (seq, payload)


def sse_notice(name: str, payload: bytes) -> bytes:
    """A message from Interlink about the stream itself, named ``interlink.<name>``; no ``id``,
    so a client's last event id stays the last event's."""
    return b"event: interlink.%s\ndata: %s\n\n" % (name.encode(), payload)


SSE_HEARTBEAT = b": keep-alive\n\n"


def ws_event(seq: int, payload: bytes) -> str:
    """An event as a WebSocket text message: the SSE message's fields as JSON."""
    return f'{{"id":{seq},"data":{payload.decode()}}}'


def ws_notice(name: str, payload: bytes) -> str:
    return f'{{"event":"interlink.{name}","data":{payload.decode()}}}'


def one_line(json_bytes: bytes) -> bytes:
    """JSON with its line breaks (whitespace between tokens: JSON strings cannot hold a raw
    one) turned into spaces, so it fits one SSE ``data:`` line."""
    if b"\n" in json_bytes or b"\r" in json_bytes:
        return json_bytes.replace(b"\r", b" ").replace(b"\n", b" ")
    return json_bytes


# the log's read head ------------------------------------------------------------------------------


def readable_prefix(position: int, seqs: Sequence[int], gap_open: bool) -> int:
    """How many of ``seqs`` (read after ``position``, ascending) to hand out now.

    All of them when they follow on from ``position`` without a hole. A hole can be a
    transaction that took its position and has not committed yet (an append that does not take
    the log's append lock on PostgreSQL), or one that rolled back: the reader stops before it
    until the hole has been open for a while (``gap_open``), then passes it — never out of
    order, so a resume position always means "everything before it"."""
    expected = position + 1
    for i, seq in enumerate(seqs):
        if seq != expected and not gap_open:
            return i
        gap_open = False  # only the first hole may be passed this time
        expected = seq + 1
    return len(seqs)

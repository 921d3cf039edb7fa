"""An event as a stream shows it, encoded once per process and framed once per transport."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import msgspec

from interlink.domain.models import Event
from interlink.domain.streams import one_line, sse_event, ws_event


class _Shown(msgspec.Struct, frozen=True):
    id: str
    seq: int
    type: str
    source_id: str
    key: str | None
    received_at: str | None
    occurred_at: str | None
    origin: str
    derived_from: str | None
    version: int | None
    data: msgspec.Raw


def _iso(ts: float | None) -> str | None:
    if ts is None or math.isnan(ts):
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        return None


class StreamEvent:
    """One event of the log, shared by every connection it goes to: its JSON is made once, and
    each transport's frame the first time a connection of that transport needs it."""

    __slots__ = ("_sse", "_ws", "key", "payload", "seq", "source_id", "tenant_id", "type")

    def __init__(self, event: Event) -> None:
        self.seq, self.tenant_id, self.type = event.seq, event.tenant_id, event.type
        self.source_id, self.key = event.source_id, event.key
        self.payload = one_line(
            msgspec.json.encode(
                _Shown(
                    id=event.id,
                    seq=event.seq,
                    type=event.type,
                    source_id=event.source_id,
                    key=event.key,
                    received_at=_iso(event.received_at),
                    occurred_at=_iso(event.occurred_at),
                    origin=event.origin,
                    derived_from=event.derived_from,
                    version=event.schema_version,
                    data=msgspec.Raw(one_line(event.data) or b"null"),
                )
            )
        )
        self._sse: bytes | None = None
        self._ws: bytes | None = None

    def sse(self) -> bytes:
        if self._sse is None:
            self._sse = sse_event(self.seq, self.payload)
        return self._sse

    def ws(self) -> bytes:
        """The WebSocket text message, UTF-8."""
        if self._ws is None:
            self._ws = ws_event(self.seq, self.payload).encode()
        return self._ws

"""Reading a Server-Sent Events stream line by line (the WHATWG event-stream format, as
``interlink events tail`` and the tests read ``GET /api/v1/stream``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Message:
    event: str  # "message" unless the stream named it (interlink.overflow, …)
    data: str
    id: str | None  # the id field of this message, if it had one


class SseParser:
    """Feed it lines without their line break; it answers a message at each blank line that
    ends one. Comment lines (heartbeats) and ``retry`` are skipped."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Message | None:
        if not line:
            if not self._data:
                self._event, self._id = "", None
                return None
            message = Message(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return message
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None

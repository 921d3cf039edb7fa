"""What the stream routes need, built once per process (app.py) and handed to the API."""

from __future__ import annotations

from dataclasses import dataclass

from interlink.storage.stream_log import StreamLog
from interlink.streams.hub import StreamHub
from interlink.streams.transports import Recorder


@dataclass(frozen=True)
class Streams:
    hub: StreamHub
    log: StreamLog
    token_key: bytes  # HMAC key of stream tokens (domain/streams.token_key)
    heartbeat_seconds: float
    recorder: Recorder  # open streams and their ends, for /metrics

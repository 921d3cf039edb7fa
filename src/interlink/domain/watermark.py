"""The bound on what ingest acknowledges: free disk space and the undelivered backlog.

Ingest keeps acknowledging while delivery falls behind (the log is the buffer), but not until
the disk is full: past a watermark, new events are refused with ``503`` and ``Retry-After`` so
senders retry later, and nothing already acknowledged is touched. A watermark that tripped
clears only with some room to spare (``CLEAR_MARGIN``), so ingest does not flap on the line.
This module decides; ``ingress/watermark.py`` measures.
"""

from __future__ import annotations

import msgspec

# A tripped watermark clears once the measure is this much better than its limit: 10 % more
# free space than the minimum, or a backlog 10 % under the maximum.
CLEAR_MARGIN = 0.1
_MB = 1024 * 1024


class WatermarkPolicy(msgspec.Struct, frozen=True):
    min_free_bytes: int = 0  # 0: free space is not watched
    max_backlog: int = 0  # unsettled deliveries; 0: the backlog is not watched
    retry_after_seconds: int = 30

    @property
    def watches_disk(self) -> bool:
        return self.min_free_bytes > 0

    @property
    def watches_backlog(self) -> bool:
        return self.max_backlog > 0


class Breach(msgspec.Struct, frozen=True):
    """Why ingest refuses new events now: ``reason`` is a metric label (disk, backlog)."""

    reason: str
    detail: str
    retry_after_seconds: int


class OverWatermark(Exception):
    """Raised by whatever acknowledges events (ingest, publish) while a watermark is tripped."""

    def __init__(self, breach: Breach) -> None:
        super().__init__(breach.detail)
        self.breach = breach


def assess(
    policy: WatermarkPolicy,
    free_bytes: int | None,
    backlog: int | None,
    tripped: Breach | None = None,
) -> Breach | None:
    """The breach in force after this measurement, or None (a measure of None: not taken)."""
    held = {tripped.reason} if tripped is not None else set()
    if policy.watches_disk and free_bytes is not None:
        limit = policy.min_free_bytes * (1 + CLEAR_MARGIN if "disk" in held else 1)
        if free_bytes < limit:
            return Breach(
                "disk",
                f"the event store's disk has {free_bytes // _MB} MiB free, under the "
                f"{policy.min_free_bytes // _MB} MiB Interlink keeps free "
                "(ingest_min_free_mb); retry later",
                policy.retry_after_seconds,
            )
    if policy.watches_backlog and backlog is not None:
        limit = policy.max_backlog * (1 - CLEAR_MARGIN if "backlog" in held else 1)
        if backlog >= limit:
            return Breach(
                "backlog",
                f"{backlog} deliveries are waiting, at or over the limit of "
                f"{policy.max_backlog} (ingest_max_backlog); retry later",
                policy.retry_after_seconds,
            )
    if tripped is not None and (
        (tripped.reason == "disk" and free_bytes is None)
        or (tripped.reason == "backlog" and backlog is None)
    ):
        return tripped  # not measured this time: what was known holds
    return None

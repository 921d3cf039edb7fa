"""Volume-drop detection: notice when a source goes quiet against its own daily rhythm.

A partner that stops sending usually fails silently on its side: no error reaches us, only
fewer webhooks. Each source learns how many events it sends per interval (a minute) for each
hour of the day, apart for weekdays and weekends (48 buckets), as an exponentially weighted
mean. A source is "dropped" when the events of the last window (15 minutes by default) fall
below ``drop_ratio`` of what the baseline expects for that window, and recovers when they are
back above ``recover_ratio`` of it: the gap between the two is the hysteresis that keeps a
source near the line from flapping.

Nothing is judged while it cannot be judged fairly: before the buckets the window touches have
learned (``min_samples`` intervals each), or when the window expects fewer than
``min_expected`` events (a quiet source's silence is not news, and Poisson noise dominates
small counts). While a source is dropped its baseline does not learn, so a long outage does not
teach it that silence is normal. A source whose volume changes for good needs ``forget``.

Pure: no clock, no I/O. The caller feeds one count per interval, in time order, zeros included.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple

import msgspec

HOURS = 24
BUCKETS = 2 * HOURS  # hour of day x (weekday, weekend)


class VolumeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    interval_seconds: float = 60.0
    window_seconds: float = 15 * 60.0
    # Dropped below this share of the expected volume over the window...
    drop_ratio: float = 0.25
    # ...and recovered at or above this one (> drop_ratio: hysteresis).
    recover_ratio: float = 0.6
    # Windows expecting fewer events than this are not judged.
    min_expected: float = 50.0
    # Weight of one interval in its bucket's mean once the bucket has 1/alpha samples; before
    # that the bucket is a plain running mean, so early estimates are not biased toward zero.
    alpha: float = 0.02
    # Intervals a bucket must have seen before it is trusted, on at least this many days: one
    # day's hour may be the very one that went wrong.
    min_samples: int = 30
    min_days: int = 2

    def __post_init__(self) -> None:
        if self.interval_seconds <= 0 or self.window_seconds < self.interval_seconds:
            raise ValueError("the window must hold at least one interval")
        if not 0 < self.drop_ratio < self.recover_ratio <= 1:
            raise ValueError("need 0 < drop_ratio < recover_ratio <= 1")
        if not 0 < self.alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        if self.min_expected < 0 or self.min_samples < 1 or self.min_days < 1:
            raise ValueError("min_expected must be >= 0, min_samples and min_days >= 1")

    @property
    def window_intervals(self) -> int:
        return max(1, round(self.window_seconds / self.interval_seconds))


class Transition(msgspec.Struct, frozen=True):
    """A source entered (``dropped``) or left the dropped state, with the window's numbers."""

    source_id: str
    dropped: bool
    at: float
    observed: int
    expected: float


class _Bucket:
    __slots__ = ("days", "last_day", "mean", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.days = 0  # distinct days it learned on
        self.last_day = -1


class _Source:
    __slots__ = ("buckets", "dropped", "expected", "observed", "unknown", "window")

    def __init__(self) -> None:
        self.buckets = [_Bucket() for _ in range(BUCKETS)]
        # (interval start, count, expected count or None if unknown), and their running sums
        self.window: deque[tuple[float, int, float | None]] = deque()
        self.observed = 0
        self.expected = 0.0
        self.unknown = 0  # intervals in the window with no expectation
        self.dropped = False

    def push(self, at: float, count: int, expected: float | None, size: int) -> None:
        self.window.append((at, count, expected))
        self._add(count, expected, 1)
        while len(self.window) > size:
            _, old_count, old_expected = self.window.popleft()
            self._add(old_count, old_expected, -1)

    def _add(self, count: int, expected: float | None, sign: int) -> None:
        self.observed += sign * count
        if expected is None:
            self.unknown += sign
        else:
            self.expected += sign * expected


def _bucket(local: datetime) -> int:
    return local.hour + (HOURS if local.weekday() >= 5 else 0)


class _Slot(NamedTuple):
    """Where an interval falls in the baseline: its bucket, the neighbour it is interpolated
    with and that neighbour's weight, and its local day."""

    own: int
    other: int
    weight: float
    day: int


_SLOT_CACHE = 50_000  # intervals: a week of minutes for every source shares one entry per minute


class VolumeDetector:
    def __init__(self, config: VolumeConfig | None = None, tz: tzinfo = UTC) -> None:
        self.config = config or VolumeConfig()
        self._tz = tz
        self._sources: dict[str, _Source] = {}
        self._size = self.config.window_intervals
        # Local-time arithmetic is most of the cost of an observation, and every source is fed
        # the same interval starts: computed once per interval.
        self._slots: dict[float, _Slot] = {}

    def _slot(self, at: float) -> _Slot:
        slot = self._slots.get(at)
        if slot is not None:
            return slot
        local = datetime.fromtimestamp(at, self._tz)
        # Position in the hour, measured at the interval's middle; each bucket's mean stands
        # for the middle of its hour.
        f = (local.minute * 60 + local.second + self.config.interval_seconds / 2) / 3600.0
        if f < 0.5:
            other, weight = local - timedelta(hours=1), 0.5 - f
        else:
            other, weight = local + timedelta(hours=1), f - 0.5
        slot = _Slot(_bucket(local), _bucket(other), weight, local.toordinal())
        if len(self._slots) >= _SLOT_CACHE:
            self._slots.clear()
        self._slots[at] = slot
        return slot

    def bucket(self, at: float) -> int:
        return self._slot(at).own

    def _learned(self, b: _Bucket) -> bool:
        return b.n >= self.config.min_samples and b.days >= self.config.min_days

    def expected(self, source_id: str, at: float) -> float | None:
        """The baseline's count for the interval starting at ``at``, or None if not learned.

        Interpolated between the hour's bucket and its nearer neighbour, so a steep morning
        ramp is not judged against a flat step.
        """
        source = self._sources.get(source_id)
        return None if source is None else self._expected(source, self._slot(at))

    def _expected(self, source: _Source, slot: _Slot) -> float | None:
        own = source.buckets[slot.own]
        if not self._learned(own):
            return None
        other = source.buckets[slot.other]
        if not self._learned(other):
            return own.mean
        return (1 - slot.weight) * own.mean + slot.weight * other.mean

    def observe(self, source_id: str, at: float, count: int) -> Transition | None:
        """Feeds the count of the interval starting at ``at``; returns a state change, if any."""
        cfg = self.config
        source = self._sources.get(source_id)
        if source is None:
            source = self._sources[source_id] = _Source()
        slot = self._slot(at)
        source.push(at, count, self._expected(source, slot), self._size)
        transition = self._judge(source_id, source, at)
        if not source.dropped:
            bucket = source.buckets[slot.own]
            if slot.day != bucket.last_day:
                bucket.days, bucket.last_day = bucket.days + 1, slot.day
            bucket.n += 1
            a = max(cfg.alpha, 1.0 / bucket.n)
            bucket.mean += a * (count - bucket.mean)
        return transition

    def _judge(self, source_id: str, source: _Source, at: float) -> Transition | None:
        cfg = self.config
        window = source.window
        if len(window) < self._size or source.unknown:
            return None
        # A window with a gap (the feeder was down) does not say what the source did.
        if window[-1][0] - window[0][0] > cfg.window_seconds - cfg.interval_seconds / 2:
            return None
        expected, observed = source.expected, source.observed
        if expected < cfg.min_expected:
            return None
        if not source.dropped and observed < cfg.drop_ratio * expected:
            source.dropped = True
        elif source.dropped and observed >= cfg.recover_ratio * expected:
            source.dropped = False
        else:
            return None
        return Transition(source_id, source.dropped, at, observed, round(expected, 1))

    def is_dropped(self, source_id: str) -> bool:
        source = self._sources.get(source_id)
        return source is not None and source.dropped

    def sources(self) -> list[str]:
        return list(self._sources)

    def forget(self, source_id: str) -> None:
        """Drops what was learned about a source (deleted, or its volume changed for good)."""
        self._sources.pop(source_id, None)

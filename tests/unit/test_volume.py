"""Volume-drop detection, simulated: a source with a daily rhythm and Poisson noise, minute by
minute over weeks, learning first; then outages of several shapes."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlink.domain.volume import Transition, VolumeConfig, VolumeDetector

MINUTE = 60.0
DAY = 24 * 3600.0
# A Monday, 00:00 UTC.
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the rates here (well under a few hundred per minute)."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def business_rhythm(at: float, peak: float = 30.0) -> float:
    """Events per minute: a floor at night, a broad day peak, weekends at 60 %."""
    local = datetime.fromtimestamp(at, UTC)
    hour = local.hour + local.minute / 60
    day = max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour <= 22 else 0.0
    rate = 4.0 + (peak - 4.0) * day
    return rate * (0.6 if local.weekday() >= 5 else 1.0)


def run(
    detector: VolumeDetector,
    rng: random.Random,
    start: float,
    minutes: int,
    rate: Callable[[float], float],
    source: str = "src_a",
) -> list[Transition]:
    out = []
    for i in range(minutes):
        at = start + i * MINUTE
        t = detector.observe(source, at, poisson(rng, rate(at)))
        if t is not None:
            out.append(t)
    return out


def learned(seed: int, config: VolumeConfig | None = None) -> tuple[VolumeDetector, float]:
    """A detector after one simulated week of the business rhythm; returns it and 'now'."""
    detector = VolumeDetector(config)
    transitions = run(detector, random.Random(seed), START, 7 * 1440, business_rhythm)
    assert transitions == [], "no alarm while learning"
    return detector, START + 7 * DAY


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_normal_week_after_learning_raises_no_alarm(seed: int) -> None:
    detector, now = learned(seed)
    rng = random.Random(seed + 100)
    assert run(detector, rng, now, 7 * 1440, business_rhythm) == []


@pytest.mark.parametrize(("seed", "hour"), [(5, 9.5), (6, 11.25), (7, 14.0), (8, 19.75)])
def test_a_90_percent_drop_raises_within_the_window_and_clears_after_recovery(
    seed: int, hour: float
) -> None:
    detector, now = learned(seed)
    cfg = detector.config
    rng = random.Random(seed + 100)
    # Tuesday of the second week: the drop starts at `hour`, lasts two hours.
    drop_at = now + DAY + hour * 3600
    recover_at = drop_at + 2 * 3600
    end = recover_at + 3600

    def rate(at: float) -> float:
        base = business_rhythm(at)
        return base * 0.1 if drop_at <= at < recover_at else base

    transitions = run(detector, rng, now, int((end - now) / MINUTE), rate)
    assert [t.dropped for t in transitions] == [True, False], transitions
    raised, cleared = transitions
    assert drop_at <= raised.at <= drop_at + cfg.window_seconds
    assert raised.observed < cfg.drop_ratio * raised.expected
    assert recover_at <= cleared.at <= recover_at + cfg.window_seconds
    assert not detector.is_dropped("src_a")


def test_a_long_outage_does_not_become_the_baseline() -> None:
    detector, now = learned(9)
    rng = random.Random(9)
    drop_at = now + DAY + 10 * 3600  # Tuesday 10:00, down until Wednesday 10:00

    def rate(at: float) -> float:
        return 0.0 if drop_at <= at < drop_at + DAY else business_rhythm(at)

    transitions = run(detector, rng, now, 3 * 1440, rate)
    assert [t.dropped for t in transitions] == [True, False]
    assert transitions[1].at <= drop_at + DAY + detector.config.window_seconds


def test_a_quiet_source_is_never_judged() -> None:
    """Half an event a minute expects ~7 a window: under min_expected, silence is no alarm."""
    detector = VolumeDetector()
    rng = random.Random(10)
    assert run(detector, rng, START, 7 * 1440, lambda _: 0.5) == []
    assert run(detector, rng, START + 7 * DAY, 1440, lambda _: 0.0) == []


def test_a_new_source_is_not_judged_before_it_has_learned() -> None:
    detector = VolumeDetector()
    # Its first hour: 20 minutes of traffic, then silence. One day of an hour is no baseline.
    rng = random.Random(11)
    assert run(detector, rng, START, 20, lambda _: 30.0) == []
    assert run(detector, rng, START + 20 * MINUTE, 120, lambda _: 0.0) == []


def test_hysteresis_between_the_two_ratios() -> None:
    """At 40 % of the baseline: not low enough to raise, not high enough to clear."""
    cfg = VolumeConfig()
    flat: Callable[[float], float] = lambda _: 20.0  # noqa: E731
    detector = VolumeDetector(cfg)
    rng = random.Random(12)
    assert run(detector, rng, START, 7 * 1440, flat) == []
    now = START + 7 * DAY
    assert run(detector, rng, now, 240, lambda _: 8.0) == []  # 40 %: no alarm
    now += 240 * MINUTE
    raised = run(detector, rng, now, 60, lambda _: 0.0)
    assert [t.dropped for t in raised] == [True]
    now += 60 * MINUTE
    assert run(detector, rng, now, 240, lambda _: 8.0) == []  # 40 %: still dropped
    assert detector.is_dropped("src_a")
    now += 240 * MINUTE
    assert [t.dropped for t in run(detector, rng, now, 60, flat)] == [False]


def test_sources_are_independent_and_can_be_forgotten() -> None:
    detector = VolumeDetector()
    rng = random.Random(13)
    for i in range(3 * 1440):
        at = START + i * MINUTE
        detector.observe("src_a", at, poisson(rng, 20))
        detector.observe("src_b", at, poisson(rng, 20))
    now = START + 3 * DAY
    for i in range(30):
        at = now + i * MINUTE
        detector.observe("src_a", at, 0)
        detector.observe("src_b", at, poisson(rng, 20))
    assert detector.is_dropped("src_a") and not detector.is_dropped("src_b")
    detector.forget("src_a")
    assert not detector.is_dropped("src_a") and detector.expected("src_a", now) is None


def test_a_gap_in_the_feed_is_not_judged() -> None:
    """After the feeder was down, a window spanning the gap says nothing about the source."""
    detector = VolumeDetector()
    rng = random.Random(14)
    run(detector, rng, START, 2 * 1440, lambda _: 20.0)
    later = START + 2 * DAY + 3 * 3600
    # A single zero right after the gap: the window still holds the intervals before it.
    assert detector.observe("src_a", later, 0) is None


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="recover_ratio"):
        VolumeConfig(drop_ratio=0.5, recover_ratio=0.4)
    with pytest.raises(ValueError, match="window"):
        VolumeConfig(window_seconds=10)


@settings(max_examples=30, deadline=None)
@given(
    base=st.floats(min_value=5, max_value=200),
    factor=st.floats(min_value=0.5, max_value=3.0),
)
def test_steady_or_rising_volume_never_raises(base: float, factor: float) -> None:
    """Property: whatever the level learned, the same or more traffic is never 'dropped'."""
    detector = VolumeDetector()
    for i in range(2 * 1440):
        detector.observe("s", START + i * MINUTE, round(base))
    now = START + 2 * DAY
    for i in range(1440):
        assert detector.observe("s", now + i * MINUTE, round(base * max(1.0, factor))) is None

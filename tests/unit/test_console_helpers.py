"""The console's pure helpers: bar widths, the partners page's words, search times, CSRF."""

from __future__ import annotations

import time

import pytest
from litestar.exceptions import ValidationException

from interlink.console.partners import PartnerRow
from interlink.console.traffic import _bars
from interlink.console.web import shown_time, when
from interlink.domain.ids import id_floor, new_id
from interlink.domain.models import Envelope, Source
from interlink.storage.console_sessions import Session


def test_bars_are_scaled_to_the_busiest_and_sorted() -> None:
    bars = _bars([("a", "ha", 1, 10, ""), ("b", "hb", 5, 40, ""), ("c", "hc", 0, 0, "")])
    assert [b.label for b in bars] == ["b", "a", "c"]
    assert [b.day_pct for b in bars] == [100.0, 25.0, 0.0]
    assert bars[0].hour_pct == 12.5
    assert _bars([("z", "h", 0, 0, "")])[0].day_pct == 0.0  # nothing yet: no division by zero


def _row(hour: int, usual: float, day: int = 0, held: int = 0) -> PartnerRow:
    source = Source("src_1", "tnt_1", "p", "hmac", {}, (), Envelope(), 1, 1, 0.0)
    return PartnerRow(source, hour, usual, day, held, None)


def test_partner_volume_is_said_in_words() -> None:
    assert _row(0, 0.0).volume == "new or quiet"
    assert _row(3, 0.5).volume == "normal"
    assert _row(0, 10.0).volume == "no events this hour"
    assert _row(4, 10.0).volume == "lower than usual"
    assert _row(9, 10.0).volume == "normal"
    assert _row(0, 0.0).quarantine_rate is None
    assert _row(0, 0.0, day=200, held=5).quarantine_rate == 0.025


def test_search_times_are_utc_and_a_bad_one_is_a_400() -> None:
    assert when("after", "") is None
    assert when("after", "2026-01-01T00:00") == 1767225600.0  # a datetime-local: UTC
    assert when("after", "2026-01-01T00:00:00+01:00") == 1767225600.0 - 3600
    with pytest.raises(ValidationException):
        when("after", "yesterday")
    assert shown_time(1767225600.0) == "2026-01-01 00:00:00" and shown_time(None) == ""


def test_the_csrf_token_is_the_sessions_own() -> None:
    session = Session("h", "tnt_1", False, "key_1", 0.0, 0.0, 1.0)
    token = session.csrf_token("token-a")
    assert token == session.csrf_token("token-a") != session.csrf_token("token-b")
    assert "token-a" not in token


def test_an_id_floor_sorts_before_the_ids_made_from_then_on() -> None:
    before = id_floor("delivery", time.time() - 1)
    made = new_id("delivery")
    after = id_floor("delivery", time.time() + 1)
    assert before < made < after and len(before) == len(made)

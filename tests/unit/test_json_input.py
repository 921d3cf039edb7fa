"""The decoder of outside JSON (partners' webhooks, API bodies): what it takes, what it refuses,
and that nothing a sender can send makes it raise anything but InvalidJson."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.exceptions import ValidationException

from interlink.api.params import EPOCH_PATTERN, MAX_EPOCH, instant
from interlink.domain.json_input import MAX_DEPTH, InvalidJson, decode, depth

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()  # brackets, quotes and backslashes in text are not structure
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)


def nesting(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((nesting(v) for v in value.values()), default=0)
    return 0


def wrapped(levels: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * levels + inner + b"}" * levels


@given(VALUES)
def test_any_json_value_round_trips_and_its_depth_is_exact(value: Any) -> None:
    body = json.dumps(value).encode()
    assert depth(body) == nesting(value)
    assert decode(body) == value


@given(VALUES, st.booleans())
def test_ascii_escaped_and_raw_utf8_decode_alike(value: Any, ascii_only: bool) -> None:
    assert decode(json.dumps(value, ensure_ascii=ascii_only).encode()) == value


@given(st.binary(max_size=2000))
def test_no_bytes_raise_anything_but_invalid_json(body: bytes) -> None:
    try:
        decode(body)
    except InvalidJson as exc:
        assert str(exc)


@given(st.integers(min_value=1, max_value=3 * MAX_DEPTH), st.sampled_from([b"[", b'{"k":']))
def test_the_depth_limit_is_a_line(levels: int, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    body = opener * levels + b"0" + closer * levels
    if levels <= MAX_DEPTH:
        assert nesting(decode(body)) == levels
    else:
        with pytest.raises(InvalidJson, match=f"more than {MAX_DEPTH} levels"):
            decode(body)


def test_thousands_of_levels_are_refused_not_a_recursion_error() -> None:
    for levels in (980, 5_000, 100_000):
        with pytest.raises(InvalidJson, match="nested"):
            decode(b"[" * levels + b"]" * levels)
        with pytest.raises(InvalidJson, match="nested"):
            decode(wrapped(levels))


@given(st.text(alphabet='[]{}"\\', max_size=300))
def test_brackets_inside_strings_are_not_nesting(text: str) -> None:
    body = json.dumps({"s": text}).encode()
    assert depth(body) == 1
    assert decode(body) == {"s": text}


@given(
    st.text(max_size=20),
    st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]),
    st.text(max_size=20),
)
def test_invalid_utf8_is_refused_where_it_is(before: str, bad: bytes, after: str) -> None:
    head = json.dumps(before)[:-1].encode()  # the opening quote and the text, still open
    body = b'{"k": ' + head + bad + json.dumps(after)[1:].encode() + b"}"
    with pytest.raises(InvalidJson, match="not valid UTF-8") as refused:
        decode(body)
    assert f"byte {body.index(bad)}" in str(refused.value)


def test_malformed_json_says_so() -> None:
    for body, words in ((b'{"a": ', "ends before"), (b"{nope", "malformed"), (b"", "ends")):
        with pytest.raises(InvalidJson, match=words):
            decode(body)


# The API's times (query parameters, and strings in bodies) -----------------------------------


@given(st.text(max_size=60))
def test_an_instant_is_a_bounded_time_or_a_400(text: str) -> None:
    try:
        seconds = instant("after", text)
    except ValidationException as exc:
        assert "after" in str(exc.detail)
        return
    assert seconds is None or math.isfinite(seconds)


@given(st.floats(min_value=0, max_value=99_999_999_999, allow_nan=False))
def test_epoch_seconds_in_the_pattern_are_taken_as_they_are(seconds: float) -> None:
    text = f"{seconds:.6f}"
    assert instant("after", text) == float(text) <= MAX_EPOCH


@given(st.datetimes(timezones=st.timezones()))
def test_any_rfc3339_time_is_taken(at: Any) -> None:
    text = at.isoformat()
    if at.utcoffset() is None:
        with pytest.raises(ValidationException, match="time zone"):
            instant("before", text)
        return
    try:
        expected = at.timestamp()
    except (OverflowError, ValueError):  # the year 1 or 9999, moved out of range by its zone
        with pytest.raises(ValidationException):
            instant("before", text)
        return
    assert instant("before", text) == expected
    assert instant("before", text.replace("+00:00", "Z")) == expected


def test_times_out_of_range_are_refused() -> None:
    for text in ("1e20", "-1e20", "1e300", "nan", "inf", "-1", "123456789012", "0x10"):
        with pytest.raises(ValidationException):
            instant("after", text)
    assert EPOCH_PATTERN.startswith("^") and EPOCH_PATTERN.endswith("$")

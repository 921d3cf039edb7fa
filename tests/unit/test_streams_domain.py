"""Stream filters, stream tokens, frames and the log reader's holes: rules without I/O."""

from __future__ import annotations

import pytest

from interlink.cli._sse import SseParser
from interlink.domain.streams import (
    InvalidFilter,
    StreamFilter,
    StreamGrant,
    TokenRefused,
    mint_token,
    one_line,
    parse_list,
    readable_prefix,
    sse_event,
    sse_notice,
    stream_filter,
    token_key,
    verify_token,
    ws_event,
)

KEY = token_key("ik_admin_" + "a" * 40)


def test_filters_match_types_sources_and_keys() -> None:
    f = stream_filter(["booking.*", "payment.succeeded"], ["src_1"], [])
    assert f.matches("booking.created", "src_1", None)
    assert f.matches("payment.succeeded", "src_1", "k")
    assert not f.matches("payment.failed", "src_1", None)
    assert not f.matches("booking.created", "src_2", None)
    keyed = StreamFilter(keys=("k1",))
    assert keyed.matches("x", "s", "k1") and not keyed.matches("x", "s", None)
    assert StreamFilter().matches("anything", "s", None)


def test_query_lists_are_bounded_and_patterns_checked() -> None:
    assert parse_list("types", " booking.*, ,payment.*,booking.*") == ("booking.*", "payment.*")
    assert parse_list("types", None) == ()
    with pytest.raises(InvalidFilter, match="at most 20"):
        parse_list("key", ",".join(str(i) for i in range(21)))
    with pytest.raises(InvalidFilter, match="types"):
        stream_filter(["booking..x"], [], [])


def test_a_request_may_narrow_a_tokens_filter_never_widen_it() -> None:
    token = StreamFilter(types=("booking.*", "payment.*"))
    assert token.narrowed_by(StreamFilter(types=("payment.*",))).types == ("payment.*",)
    assert token.narrowed_by(StreamFilter(keys=("k",))) == StreamFilter(
        types=("booking.*", "payment.*"), keys=("k",)
    )
    with pytest.raises(InvalidFilter, match="allows types"):
        token.narrowed_by(StreamFilter(types=("listing.*",)))


def test_tokens_carry_their_grant_and_are_refused_forged_expired_or_foreign() -> None:
    grant = StreamGrant("tnt_1", 1000.0, StreamFilter(types=("booking.*",)))
    token = mint_token(KEY, grant)
    assert token.startswith("ik_stream_")
    assert verify_token(KEY, token, 999.0) == grant
    with pytest.raises(TokenRefused, match="expired"):
        verify_token(KEY, token, 1000.0)
    with pytest.raises(TokenRefused, match="not valid"):
        verify_token(token_key("ik_admin_other"), token, 0.0)  # another deployment's
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    with pytest.raises(TokenRefused) as refused:
        verify_token(KEY, flipped, 0.0)
    assert refused.value.status == 401 and token not in refused.value.detail
    for garbage in ("", "ik_stream_", "ik_stream_!!!", "Bearer x", "ik_stream_" + "A" * 5000):
        with pytest.raises(TokenRefused):
            verify_token(KEY, garbage, 0.0)


def test_frames_read_back_with_the_clients_parser() -> None:
    payload = one_line(b'{"a":\n 1,\r\n "b": "x"}')
    assert b"\n" not in payload and b"\r" not in payload
    parser = SseParser()
    stream = (sse_event(7, payload) + b": keep-alive\n\n" + sse_notice("overflow", b"{}")).decode()
    got = [m for line in stream.split("\n") if (m := parser.feed(line)) is not None]
    assert [(m.event, m.id) for m in got] == [("message", "7"), ("interlink.overflow", None)]
    assert got[0].data == payload.decode()
    assert ws_event(7, b'{"seq":7}') == '{"id":7,"data":{"seq":7}}'


def test_the_reader_stops_at_a_hole_until_it_has_been_open_a_while() -> None:
    assert readable_prefix(10, [11, 12, 13], gap_open=False) == 3
    assert readable_prefix(10, [11, 13, 14], gap_open=False) == 1  # 12 may still commit
    assert readable_prefix(10, [12, 13], gap_open=False) == 0
    assert readable_prefix(10, [12, 13], gap_open=True) == 2  # waited long enough: passed
    assert readable_prefix(10, [12, 14], gap_open=True) == 1  # one hole passed at a time
    assert readable_prefix(10, [], gap_open=False) == 0

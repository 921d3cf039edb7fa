import hashlib

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.envelope import EnvelopeError, extract
from interlink.domain.models import Envelope

BODY = (
    b'{"id":"e1","type":"booking.created","timestamp":"2026-01-01T00:00:00Z",'
    b'"data":{"booking":{"id":"b7"},"n":1}}'
)


def parse(body: bytes) -> object:
    return msgspec.json.decode(body)


def test_standard_webhooks_shape() -> None:
    env = Envelope(key_path="data.booking.id")
    out = extract(parse(BODY), BODY, {"webhook-id": "msg_1"}, env)
    assert out.idempotency_key == "msg_1"
    assert out.type == "booking.created"
    assert out.key == "b7"
    assert out.occurred_at == 1767225600.0
    assert msgspec.json.decode(out.data) == {"booking": {"id": "b7"}, "n": 1}


def test_id_from_json_and_whole_body_as_data() -> None:
    env = Envelope(id_from="json:id", data_path=None)
    out = extract(parse(BODY), BODY, {}, env)
    assert out.idempotency_key == "e1"
    assert out.data == BODY


def test_body_hash_when_the_partner_sends_no_id() -> None:
    out = extract(parse(BODY), BODY, {}, Envelope())
    assert out.idempotency_key == "sha256:" + hashlib.sha256(BODY).hexdigest()


def test_default_type_and_missing_type() -> None:
    body = b'{"data": {}}'
    assert extract(parse(body), body, {}, Envelope(default_type="ping")).type == "ping"
    with pytest.raises(EnvelopeError, match="no event type at 'type'"):
        extract(parse(body), body, {}, Envelope())


def test_bad_type_and_overlong_id_are_refused() -> None:
    body = b'{"type": "booking created"}'
    with pytest.raises(EnvelopeError):
        extract(parse(body), body, {}, Envelope())
    body = b'{"type": "a"}'
    with pytest.raises(EnvelopeError, match="longer than"):
        extract(parse(body), body, {"webhook-id": "x" * 300}, Envelope())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(st.text(max_size=6), json_values, max_size=6),
    st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=3),
)
def test_extract_never_fails_with_anything_but_envelope_error(
    payload: dict[str, object], headers: dict[str, str]
) -> None:
    body = msgspec.json.encode(payload)
    for env in (Envelope(), Envelope(id_from="json:id", key_path="a.b", data_path="data")):
        try:
            out = extract(payload, body, headers, env)
        except EnvelopeError:
            continue
        assert out.idempotency_key
        msgspec.json.decode(out.data)  # always valid JSON


@pytest.mark.parametrize(
    ("headers", "key", "words"),
    [
        ({"webhook-id": "msg\x00"}, "b1", "event id contains a control character"),
        ({"webhook-id": "msg\n1"}, "b1", "event id contains a control character"),
        ({"webhook-id": "m1"}, "b\x001", "ordering key contains a control character"),
        ({"webhook-id": "m1"}, "b" * 256, "ordering key is longer than 255"),
    ],
)
def test_identifiers_must_be_identifiers(headers: dict[str, str], key: str, words: str) -> None:
    payload = {"type": "booking.created", "data": {"id": key}}
    body = msgspec.json.encode(payload)
    with pytest.raises(EnvelopeError, match=words):
        extract(payload, body, headers, Envelope(key_path="data.id"))


@given(
    st.lists(
        st.lists(st.from_regex(r"[a-z0-9_\-]{1,6}", fullmatch=True), min_size=1, max_size=3).map(
            "/".join
        ),
        min_size=1,
        max_size=3,
    ).map(".".join)
)
def test_partner_types_with_slashes_pass_the_envelope(topic: str) -> None:
    payload = {"topic": topic, "id": 1}
    body = msgspec.json.encode(payload)
    assert extract(payload, body, {}, Envelope(type_path="topic")).type == topic


@pytest.mark.parametrize("bad", ["orders/", "orders//create", "/orders", "orders/ create"])
def test_malformed_slash_types_are_refused(bad: str) -> None:
    payload = {"topic": bad}
    with pytest.raises(EnvelopeError, match="invalid event type"):
        extract(payload, msgspec.json.encode(payload), {}, Envelope(type_path="topic"))

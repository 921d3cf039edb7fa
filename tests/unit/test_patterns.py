import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.patterns import (
    InvalidPattern,
    matches,
    validate_event_type,
    validate_pattern,
)

segment = st.from_regex(r"[a-z0-9_\-]{1,8}", fullmatch=True)
event_types = st.lists(segment, min_size=1, max_size=4).map(".".join)


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("*", "booking.created", True),
        ("booking.*", "booking.created", True),
        ("booking.*", "booking.fee.added", True),
        ("booking.*", "booking", False),
        ("booking.*", "listing.updated", False),
        ("booking.created", "booking.created", True),
        ("booking.created", "booking.created.v2", False),
        ("*.created", "booking.created", True),
        ("*.created", "booking.updated", False),
        ("*.created", "booking.fee.created", False),
        ("booking", "booking.created", False),
    ],
)
def test_matches(pattern: str, event_type: str, expected: bool) -> None:
    assert matches(pattern, event_type) is expected


@given(event_types)
def test_star_and_self_match_everything(event_type: str) -> None:
    assert matches("*", event_type)
    assert matches(event_type, event_type)


@given(event_types, event_types)
def test_exact_patterns_match_only_themselves(pattern: str, event_type: str) -> None:
    assert matches(pattern, event_type) is (pattern == event_type)


@given(event_types, segment)
def test_prefix_wildcard_matches_every_descendant(event_type: str, extra: str) -> None:
    assert matches(f"{event_type}.*", f"{event_type}.{extra}")
    assert not matches(f"{event_type}.*", event_type)


@pytest.mark.parametrize("bad", ["", "booking..created", "booking.cre ated", "a.**", "ä.b"])
def test_invalid_patterns_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidPattern):
        validate_pattern(bad)


@pytest.mark.parametrize("bad", ["", "booking.*", "booking..x", "x" * 201])
def test_invalid_event_types_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPattern):
        validate_event_type(bad)


@pytest.mark.parametrize(
    "bad", ["order.created\n", "order\n.created", "\norder", "order.cre\tated"]
)
def test_control_characters_never_pass_as_segments(bad: str) -> None:
    with pytest.raises(InvalidPattern):
        validate_event_type(bad)
    with pytest.raises(InvalidPattern):
        validate_pattern(bad)


# Partner types: '/' inside a segment (Shopify's ``orders/create``); canonical types never.
partner_segment = st.lists(segment, min_size=1, max_size=3).map("/".join)
partner_types = st.lists(partner_segment, min_size=1, max_size=3).map(".".join)


@given(partner_types)
def test_partner_types_may_nest_with_slashes(event_type: str) -> None:
    assert validate_event_type(event_type, partner=True) == event_type
    assert matches("*", event_type)
    assert matches(validate_pattern(event_type), event_type)  # a pattern may name it literally


@given(partner_types.filter(lambda t: "/" in t))
def test_canonical_types_never_have_slashes(event_type: str) -> None:
    with pytest.raises(InvalidPattern):
        validate_event_type(event_type)


@given(event_types, partner_types)
def test_slash_never_separates_segments(canonical: str, partner: str) -> None:
    # A pattern over canonical types matches a partner type only when the types are equal
    # segment by segment: ``orders.*`` does not reach into ``orders/create``.
    assert matches(canonical, partner) is (canonical == partner)
    assert not matches(f"{canonical}.*", canonical.replace(".", "/"))


@pytest.mark.parametrize(
    "bad", ["orders/", "/orders", "orders//create", "orders/*", "orders/create.", "a/b c"]
)
def test_malformed_partner_types_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPattern):
        validate_event_type(bad, partner=True)
    with pytest.raises(InvalidPattern):
        validate_pattern(bad)

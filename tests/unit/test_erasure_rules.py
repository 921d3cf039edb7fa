"""The erasure selector (domain/erasure.py): paths, digests, and which data matches, checked
against a direct reading of the path over generated JSON."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.erasure import InvalidSelector, digest, matches, parse_path

TENANT = "tnt_1"
scalars = st.one_of(
    st.text(max_size=20), st.integers(-(10**6), 10**6), st.booleans(), st.floats(-1e6, 1e6)
)
names = st.text("abcxyz_", min_size=1, max_size=4)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=12,
)


def test_paths_read_with_or_without_data_and_refuse_what_is_not_a_path() -> None:
    assert parse_path("data.guest.email") == ("guest", "email")
    assert parse_path("guests.0.email") == ("guests", "0", "email")
    for bad in ("", "data", "a..b", "a.b c", "a." + "b" * 101, ".".join("a" * 17)):
        with pytest.raises(InvalidSelector):
            parse_path(bad)


def test_the_digest_is_per_tenant_and_typed() -> None:
    assert digest(TENANT, "x") == digest(TENANT, "x")
    assert digest(TENANT, "x") != digest("tnt_2", "x")
    assert digest(TENANT, 1) != digest(TENANT, "1") != digest(TENANT, True)
    with pytest.raises(InvalidSelector):
        digest(TENANT, "x" * 1001)


def test_lists_are_walked_by_index_and_containers_never_match() -> None:
    data = msgspec.json.encode({"guests": [{"email": "a@x"}, {"email": "b@x"}]})
    assert matches(TENANT, ("guests", "1", "email"), digest(TENANT, "b@x"), data)
    assert not matches(TENANT, ("guests", "2", "email"), digest(TENANT, "b@x"), data)
    assert not matches(TENANT, ("guests",), digest(TENANT, "b@x"), data)
    assert not matches(TENANT, ("email",), digest(TENANT, "b@x"), b"not json")
    assert not matches(TENANT, ("n",), digest(TENANT, 1), msgspec.json.encode({"n": True}))


def _reference(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return KeyError
    return data


@given(
    data=json_values,
    path=st.lists(st.one_of(names, st.sampled_from("012")), min_size=1, max_size=4),
    value=scalars,
)
def test_matches_exactly_when_the_path_holds_the_value(
    data: Any, path: list[str], value: Any
) -> None:
    found = _reference(data, tuple(path))
    expected = (
        found is not KeyError
        and not isinstance(found, dict | list)
        and found is not None
        and type(found) is type(value)
        and found == value
    )
    got = matches(TENANT, tuple(path), digest(TENANT, value), msgspec.json.encode(data))
    assert got == expected

"""What a thin notification says to fetch, and the payload once it is fetched (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from interlink.partners.hydration import (
    Fetch,
    FetchRule,
    NotificationError,
    PartnerApi,
    check_api,
    fetches,
    hydrated,
)
from interlink.partners.kit import KitRegistry

API = check_api(
    PartnerApi(
        base_url="https://api.example/v2",
        fetch=[
            FetchRule(path="bookings/{booking_id}", into="booking", when=["b.*"]),
            FetchRule("rentals/{rental.id}/rates", into="extra.rates", when=["rentals/update"]),
        ],
    )
)


def test_the_rules_of_the_notifications_type_decide_what_is_fetched() -> None:
    assert fetches(API, "rentals/update", {"rental": {"id": 17}}) == [
        Fetch("rentals/17/rates", "extra.rates")
    ]
    assert fetches(API, "app/ping", {}) == []
    # '*' stands for dot segments only: 'b.*' reaches 'b.created', never 'b/created'
    assert fetches(API, "b/created", {"booking_id": "x"}) == []
    assert fetches(API, "bookings/create", {"booking_id": "x"}) == []
    assert fetches(API, "b.created", {"booking_id": "x"}) == [Fetch("bookings/x", "booking")]


@pytest.mark.parametrize("payload", [{}, {"booking_id": None}, {"booking_id": ""}, [1]])
def test_a_notification_without_its_id_says_so(payload: Any) -> None:
    with pytest.raises(NotificationError, match=r"no resource id .* at 'booking_id'"):
        fetches(API, "b.updated", payload)


@given(st.one_of(st.text(min_size=1, max_size=40), st.integers()))
def test_an_id_is_one_path_segment_under_the_base_whatever_it_holds(booking_id: Any) -> None:
    (fetch,) = fetches(API, "b.updated", {"booking_id": booking_id})
    assert fetch.path.startswith("bookings/")
    assert "/" not in fetch.path.removeprefix("bookings/")
    base = URL("https://api.example/v2/")
    url = base.join(URL(fetch.path))
    assert url.origin() == base.origin()
    assert url.path.startswith("/v2/bookings/")


def test_fetched_bodies_go_where_the_rules_say_and_the_notification_is_kept() -> None:
    notification = {"topic": "x", "extra": {"kept": 1}}
    out = hydrated(
        notification,
        [(Fetch("a", "booking"), {"id": "b"}), (Fetch("b", "extra.rates"), {"n": 2})],
    )
    assert out == {"topic": "x", "booking": {"id": "b"}, "extra": {"kept": 1, "rates": {"n": 2}}}
    assert notification == {"topic": "x", "extra": {"kept": 1}}  # not changed in place


@pytest.mark.parametrize(
    ("api", "words"),
    [
        (PartnerApi(base_url="ftp://x", fetch=[FetchRule("a/{id}", "a")]), "http"),
        (PartnerApi(base_url="https://x"), "at least one"),
        (PartnerApi(base_url="https://x", fetch=[FetchRule("a/b", "a")]), "names no field"),
        (PartnerApi(base_url="https://x", fetch=[FetchRule("a/{}", "a")]), "empty placeholder"),
        (PartnerApi(base_url="https://x", fetch=[FetchRule("/a/{id}", "a")]), "relative"),
        (PartnerApi(base_url="https://x", fetch=[FetchRule("../{id}", "a")]), "relative"),
        (PartnerApi(base_url="https://x", fetch=[FetchRule("a/{id}", "a..b")]), "dotted"),
        (
            PartnerApi(base_url="https://x", fetch=[FetchRule("a/{id}", "a", when=["a b"])]),
            "when",
        ),
        (
            PartnerApi(base_url="https://x", fetch=[FetchRule("a/{id}", "a", when=["a/*"])]),
            "when",
        ),
    ],
)
def test_a_wrong_declaration_is_refused_at_load(api: PartnerApi, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_api(api)


def test_the_gamma_kit_declares_its_fetches_as_data() -> None:
    kit = KitRegistry.installed().get("pms_gamma")
    assert kit is not None and kit.api is not None
    assert fetches(kit.api, "bookings/update", {"booking_id": "GS-1"}) == [
        Fetch("bookings/GS-1", "booking")
    ]
    assert fetches(kit.api, "app/ping", {}) == []

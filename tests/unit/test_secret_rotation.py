"""Rotation of a source's secrets: pure functions of the held secrets and the clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.domain.models import SigningSecret
from interlink.domain.secret_rotation import MAX_SECRETS, live_values, rotate

NOW = 1_700_000_000.0


def test_rotate_adds_and_keeps_the_current_ones_without_expiry() -> None:
    held = (SigningSecret("a"),)
    assert rotate(held, "b", NOW) == (SigningSecret("a"), SigningSecret("b"))


def test_rotate_gives_the_current_ones_an_expiry() -> None:
    held = (SigningSecret("a"), SigningSecret("b", expires_at=NOW + 10))
    rotated = rotate(held, "c", NOW, expire_others_at=NOW + 3600)
    # An earlier expiry is never pushed back.
    assert rotated == (
        SigningSecret("a", NOW + 3600),
        SigningSecret("b", NOW + 10),
        SigningSecret("c"),
    )


def test_rotate_drops_expired_secrets() -> None:
    held = (SigningSecret("gone", expires_at=NOW), SigningSecret("a"))
    assert rotate(held, "b", NOW) == (SigningSecret("a"), SigningSecret("b"))


def test_expiring_at_once_replaces() -> None:
    held = tuple(SigningSecret(f"s{i}") for i in range(MAX_SECRETS))
    assert rotate(held, "new", NOW, expire_others_at=NOW) == (SigningSecret("new"),)


def test_rotate_refuses_a_secret_already_held() -> None:
    with pytest.raises(ValueError, match="already holds this secret"):
        rotate((SigningSecret("a"),), "a", NOW)


def test_rotate_is_bounded() -> None:
    held = tuple(SigningSecret(f"s{i}") for i in range(MAX_SECRETS - 1))
    assert len(rotate(held, "new", NOW)) == MAX_SECRETS
    with pytest.raises(ValueError, match=f"at most {MAX_SECRETS} secrets"):
        rotate((*held, SigningSecret("one-more")), "new", NOW)


def test_live_values() -> None:
    held = (SigningSecret("a", NOW + 1), SigningSecret("b"), SigningSecret("c", NOW))
    assert live_values(held, NOW) == ("a", "b")
    assert live_values(held, NOW + 1) == ("b",)


@given(
    held=st.lists(
        st.builds(SigningSecret, st.text(max_size=5), st.none() | st.floats(NOW - 10, NOW + 10)),
        max_size=MAX_SECRETS - 1,
    ),
    expire_in=st.none() | st.floats(0, 100),
)
def test_rotation_properties(held: list[SigningSecret], expire_in: float | None) -> None:
    new = "new-secret-not-in-held"
    expire_at = None if expire_in is None else NOW + expire_in
    rotated = rotate(held, new, NOW, expire_at)
    assert rotated[-1] == SigningSecret(new)
    assert rotated[-1].live(NOW)
    if expire_at is not None:
        assert all(s.expires_at is not None and s.expires_at <= expire_at for s in rotated[:-1])
    survivors = [s.value for s in held if s.live(NOW) and (expire_at is None or expire_at > NOW)]
    assert [s.value for s in rotated[:-1]] == survivors

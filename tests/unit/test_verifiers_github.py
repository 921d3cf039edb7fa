"""The ``github`` scheme: ``X-Hub-Signature-256: sha256=<hex>``, proven on GitHub's published
test vector (docs, "Validating webhook deliveries")."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.ingress.verifiers import VerificationError, get_verifier, validate_config
from interlink.ingress.verifiers.hmac_scheme import GITHUB, sign_hmac

# GitHub's documented example: this secret and payload give this signature.
SECRET = "It's a Secret to Everybody"
BODY = b"Hello, World!"
SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
NOW = 1_700_000_000.0


def verify(
    body: bytes, headers: Mapping[str, str], secrets: Sequence[str] = (SECRET,), **config: object
) -> None:
    get_verifier("github")(body, headers, secrets, config, 300, NOW)


def reject(body: bytes, headers: Mapping[str, str], secrets: Sequence[str] = (SECRET,)) -> str:
    with pytest.raises(VerificationError) as info:
        verify(body, headers, secrets)
    return str(info.value)


def test_published_vector() -> None:
    verify(BODY, {"x-hub-signature-256": SIGNATURE})
    assert sign_hmac(SECRET, BODY, GITHUB.as_dict()) == SIGNATURE


def test_rejects_tampered_body_wrong_secret_and_truncation() -> None:
    headers = {"x-hub-signature-256": SIGNATURE}
    assert reject(b"Hello, World?", headers) == "no signature matched"
    assert reject(BODY, headers, ["It's a secret to everybody"]) == "no signature matched"
    assert reject(BODY, {"x-hub-signature-256": SIGNATURE[:-2]}) == "no signature matched"


def test_rotation_any_held_secret() -> None:
    verify(BODY, {"x-hub-signature-256": SIGNATURE}, ["new-secret", SECRET])


def test_sha1_header_is_no_fallback() -> None:
    sha1 = {"x-hub-signature": "sha1=" + "0" * 40}
    assert reject(BODY, sha1) == "missing header 'x-hub-signature-256'"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (SIGNATURE.removeprefix("sha256="), "expected prefix 'sha256='"),
        ("sha1=" + SIGNATURE.removeprefix("sha256="), "expected prefix 'sha256='"),
        ("sha256=zz", "signature is not valid hex"),
        ("sha256=", "no signature matched"),
    ],
)
def test_rejects_malformed(value: str, problem: str) -> None:
    assert problem in reject(BODY, {"x-hub-signature-256": value})


def test_takes_no_config_and_needs_a_secret() -> None:
    assert validate_config("github", {}, [SECRET]) == {}
    with pytest.raises(ValueError, match="verifier 'github' takes no config"):
        validate_config("github", {"header": "x-other"}, [SECRET])
    with pytest.raises(ValueError, match=r"secrets\[0\]: must not be empty"):
        validate_config("github", {}, [""])
    with pytest.raises(VerificationError, match="config is invalid: verifier 'github' takes no"):
        verify(BODY, {"x-hub-signature-256": SIGNATURE}, header="x-other")


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["x-hub-signature-256", "x-hub-signature"]) | st.text(max_size=20),
        st.text(max_size=80) | st.text(max_size=70).map(lambda s: "sha256=" + s),
        max_size=3,
    ),
    secrets=st.lists(st.text(max_size=30), max_size=3),
)
def test_arbitrary_input_only_ever_raises_verification_error(
    body: bytes, headers: dict[str, str], secrets: list[str]
) -> None:
    with contextlib.suppress(VerificationError):
        verify(body, headers, secrets)

"""The ``shopify`` scheme: ``X-Shopify-Hmac-SHA256`` is base64 of HMAC-SHA256 over the raw body.

Shopify publishes no fixed test vector, so the expected values come from an independent
computation here (the stdlib's hmac and base64, as Shopify's docs show it), not from our code.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlink.ingress.verifiers import (
    VerificationError,
    generate_secret,
    get_verifier,
    validate_config,
)
from interlink.ingress.verifiers.hmac_scheme import SHOPIFY, sign_hmac

SECRET = "shpss_0123456789abcdef0123456789abcdef"
BODY = b'{"id":820982911946154508,"email":"jon@example.com","total_price":"398.00"}'
NOW = 1_700_000_000.0


def shopify_hmac(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(body: bytes, headers: Mapping[str, str], secrets: Sequence[str] = (SECRET,)) -> None:
    get_verifier("shopify")(body, headers, secrets, {}, 300, NOW)


def reject(body: bytes, headers: Mapping[str, str], secrets: Sequence[str] = (SECRET,)) -> str:
    with pytest.raises(VerificationError) as info:
        verify(body, headers, secrets)
    return str(info.value)


@pytest.mark.parametrize("body", [BODY, b"", "caf\u00e9".encode()], ids=["json", "empty", "utf8"])
def test_accepts_independently_computed_signature(body: bytes) -> None:
    verify(body, {"x-shopify-hmac-sha256": shopify_hmac(body)})
    assert sign_hmac(SECRET, body, SHOPIFY.as_dict()) == shopify_hmac(body)


def test_accepts_unpadded_base64() -> None:
    verify(BODY, {"x-shopify-hmac-sha256": shopify_hmac(BODY).rstrip("=")})


def test_rejects_tampered_body_and_wrong_secret() -> None:
    headers = {"x-shopify-hmac-sha256": shopify_hmac(BODY)}
    assert reject(BODY.replace(b"398", b"399"), headers) == "no signature matched"
    assert reject(BODY, headers, ["shpss_other"]) == "no signature matched"


def test_hex_is_not_shopifys_encoding() -> None:
    hex_digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert reject(BODY, {"x-shopify-hmac-sha256": hex_digest}) == "no signature matched"


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ({}, "missing header 'x-shopify-hmac-sha256'"),
        ({"x-shopify-hmac-sha256": "***"}, "signature is not valid base64"),
        ({"x-shopify-hmac-sha256": "A"}, "signature is not valid base64"),
    ],
)
def test_rejects_malformed(headers: dict[str, str], problem: str) -> None:
    assert problem in reject(BODY, headers)


def test_secret_is_issued_by_shopify() -> None:
    assert validate_config("shopify", {}, [SECRET]) == {}
    with pytest.raises(ValueError, match="checks the signing secret the partner issues"):
        generate_secret("shopify")


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.just("x-shopify-hmac-sha256") | st.text(max_size=20), st.text(max_size=80), max_size=3
    ),
    secrets=st.lists(st.text(max_size=30), max_size=3),
)
def test_arbitrary_input_only_ever_raises_verification_error(
    body: bytes, headers: dict[str, str], secrets: list[str]
) -> None:
    with contextlib.suppress(VerificationError):
        verify(body, headers, secrets)

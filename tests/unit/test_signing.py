"""Outbound Standard Webhooks signing, checked against the reference implementation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from interlink.delivery.signing import Signer, signature_headers
from interlink.domain.models import SigningSecret
from interlink.ingress.verifiers import VerificationError, generate_secret, get_verifier

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = "msg_01J9ZX3Q7W"
BODY = b'{"type":"order.created","data":{"id":"ord_1"}}'
TS = 1_700_000_000


def test_returns_exactly_the_three_standard_headers() -> None:
    headers = signature_headers(SECRET, MSG_ID, TS, BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"].startswith("v1,")


def test_signature_matches_independent_computation() -> None:
    expected = hmac.new(KEY, f"{MSG_ID}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    headers = signature_headers(SECRET, MSG_ID, TS, BODY)
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


def test_is_deterministic() -> None:
    assert signature_headers(SECRET, MSG_ID, TS, BODY) == signature_headers(
        SECRET, MSG_ID, TS, BODY
    )


def test_reference_library_accepts_our_headers() -> None:
    # The reference verify reads the real clock, so sign for the real present.
    headers = signature_headers(SECRET, MSG_ID, int(time.time()), BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "order.created",
        "data": {"id": "ord_1"},
    }


def test_reference_library_accepts_headers_with_generated_secret() -> None:
    secret = generate_secret("standard_webhooks")
    headers = signature_headers(secret, MSG_ID, int(time.time()), BODY)
    Webhook(secret).verify(BODY, headers)


def test_reference_library_rejects_tampered_body() -> None:
    headers = signature_headers(SECRET, MSG_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"ord_1", b"ord_2"), headers)


def test_reference_library_rejects_other_secret() -> None:
    headers = signature_headers(
        generate_secret("standard_webhooks"), MSG_ID, int(time.time()), BODY
    )
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_our_verifier_accepts_our_headers() -> None:
    headers = signature_headers(SECRET, MSG_ID, TS, BODY)
    get_verifier("standard_webhooks")(BODY, headers, [SECRET], {}, 300, TS + 1.5)


def test_our_verifier_rejects_headers_for_another_body() -> None:
    headers = signature_headers(SECRET, MSG_ID, TS, BODY)
    with pytest.raises(VerificationError, match="no signature matched"):
        get_verifier("standard_webhooks")(BODY + b"\n", headers, [SECRET], {}, 300, TS)


def test_large_body() -> None:
    body = bytes(range(256)) * 4096
    headers = signature_headers(SECRET, MSG_ID, TS, body)
    expected = hmac.new(KEY, f"{MSG_ID}.{TS}.".encode() + body, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_not base64"])
def test_invalid_secret_raises_value_error(secret: str) -> None:
    with pytest.raises(ValueError):
        signature_headers(secret, MSG_ID, TS, BODY)


@settings(max_examples=50)
@given(
    key=st.binary(min_size=24, max_size=64),
    msg_id=st.text(min_size=1, max_size=60),
    body=st.text(max_size=300),
)
def test_reference_library_accepts_arbitrary_messages(key: bytes, msg_id: str, body: str) -> None:
    # The reference library signs and verifies text, so bodies here are valid UTF-8.
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = signature_headers(secret, msg_id, int(time.time()), body.encode())
    Webhook(secret).verify(body.encode(), headers, json_parse=False)


def test_a_signer_decrypts_each_stored_value_once_and_signs_with_every_live_secret() -> None:
    """During a rotation's overlap both secrets sign (two ``v1,`` entries, each verifying on its
    own); once the old one has expired only the new one does. The stored value is opened once."""
    old, new = generate_secret("standard_webhooks"), generate_secret("standard_webhooks")
    now = int(time.time())  # within the reference library's tolerance, for both times below
    opened: list[str] = []

    def open_stored(stored: str) -> list[SigningSecret]:
        opened.append(stored)
        return [SigningSecret(old, expires_at=now + 60), SigningSecret(new)]

    signer = Signer(open_stored)
    during = signer("sealed-1", MSG_ID, now, BODY)
    assert during["webhook-signature"].count("v1,") == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, during)
    after = signer("sealed-1", MSG_ID, now + 60, BODY)
    assert after["webhook-signature"].count("v1,") == 1
    Webhook(new).verify(BODY, after)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(BODY, after)
    assert opened == ["sealed-1"] and signer.decryptions == 1

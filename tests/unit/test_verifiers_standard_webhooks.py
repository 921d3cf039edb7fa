"""Standard Webhooks verification, the verifier registry and the ``none`` scheme."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook
from svix.webhooks import Webhook as SvixWebhook
from svix.webhooks import WebhookVerificationError

from interlink.ingress.verifiers import (
    VERIFIERS,
    VerificationError,
    generate_secret,
    get_verifier,
    validate_config,
)
from interlink.ingress.verifiers.standard_webhooks import decode_secret, sign

KEY = bytes(range(24))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
NOW = 1_700_000_000.0
TS = int(NOW)
MSG_ID = "msg_2b5f0c1d"
BODY = b'{"type":"invoice.paid","data":{"id":"in_1","amount":4200}}'

# Published test vector from the Svix / Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str] = (SECRET,),
    *,
    tolerance: int = 300,
    now: float = NOW,
) -> None:
    get_verifier("standard_webhooks")(body, headers, secrets, {}, tolerance, now)


def headers_for(
    secret: str = SECRET, msg_id: str = MSG_ID, timestamp: int = TS, body: bytes = BODY
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def reject(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str] = (SECRET,),
    *,
    tolerance: int = 300,
    now: float = NOW,
) -> str:
    with pytest.raises(VerificationError) as info:
        verify(body, headers, secrets, tolerance=tolerance, now=now)
    return str(info.value)


# --- interoperability with the reference implementation -----------------------------------------


def test_published_test_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIGNATURE
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIGNATURE,
    }
    verify(VECTOR_BODY, headers, [VECTOR_SECRET], now=VECTOR_TS + 10)


@pytest.mark.parametrize(
    "body",
    [BODY, b"", b"plain text, not json", "caf\u00e9 \u2603 \U0001f600".encode()],
    ids=["json", "empty", "text", "non-ascii"],
)
def test_accepts_headers_signed_by_reference_library(body: bytes) -> None:
    moment = datetime.fromtimestamp(TS, UTC)
    signature = Webhook(SECRET).sign(MSG_ID, moment, body.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TS), "webhook-signature": signature}
    verify(body, headers)


@pytest.mark.parametrize("key_size", [24, 32, 64])
def test_accepts_reference_library_for_every_allowed_key_size(key_size: int) -> None:
    secret = "whsec_" + base64.b64encode(bytes([7]) * key_size).decode()
    signature = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(TS, UTC), BODY.decode())
    headers = {"webhook-id": MSG_ID, "webhook-timestamp": str(TS), "webhook-signature": signature}
    verify(BODY, headers, [secret])


def test_reference_library_accepts_our_signature() -> None:
    # The reference verify reads the real clock, so sign for the real present.
    timestamp = int(time.time())
    headers = headers_for(timestamp=timestamp)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "invoice.paid",
        "data": {"id": "in_1", "amount": 4200},
    }


def test_reference_library_accepts_signature_with_generated_secret() -> None:
    secret = generate_secret("standard_webhooks")
    timestamp = int(time.time())
    headers = headers_for(secret=secret, timestamp=timestamp)
    Webhook(secret).verify(BODY, headers)
    verify(BODY, headers, [secret], now=timestamp)


def test_sign_matches_independent_computation() -> None:
    expected = hmac.new(KEY, f"{MSG_ID}.{TS}.".encode() + BODY, hashlib.sha256).digest()
    assert sign(SECRET, MSG_ID, TS, BODY) == "v1," + base64.b64encode(expected).decode()


@pytest.mark.parametrize("prefix", ["svix-", "webhook-"])
@pytest.mark.parametrize(
    "body", [BODY, b"", "caf\u00e9 \u2603".encode()], ids=["json", "empty", "utf8"]
)
def test_accepts_headers_signed_by_svix(prefix: str, body: bytes) -> None:
    signature = SvixWebhook(SECRET).sign(MSG_ID, datetime.fromtimestamp(TS, UTC), body.decode())
    headers = {
        f"{prefix}id": MSG_ID,
        f"{prefix}timestamp": str(TS),
        f"{prefix}signature": signature,
    }
    verify(body, headers)
    assert reject(body + b"x", headers) == "no signature matched"
    assert reject(body, headers, [OTHER_SECRET]) == "no signature matched"


def test_svix_accepts_our_signature_under_its_header_names() -> None:
    timestamp = int(time.time())
    headers = {
        k.replace("webhook-", "svix-"): v for k, v in headers_for(timestamp=timestamp).items()
    }
    SvixWebhook(SECRET).verify(BODY, headers)


def test_svix_and_we_agree_on_stale_and_future() -> None:
    now = time.time()
    for offset in (-400, 400):
        headers = headers_for(timestamp=int(now) + offset)
        with pytest.raises(WebhookVerificationError):
            SvixWebhook(SECRET).verify(BODY, headers)
        with pytest.raises(VerificationError):
            verify(BODY, headers, now=now)


def test_accepts_svix_header_aliases() -> None:
    headers = {f"svix-{name.removeprefix('webhook-')}": v for name, v in headers_for().items()}
    assert set(headers) == {"svix-id", "svix-timestamp", "svix-signature"}
    verify(BODY, headers)


# --- rejections ----------------------------------------------------------------------------------


def test_accepts_valid_request() -> None:
    verify(BODY, headers_for())


def test_rejects_tampered_body() -> None:
    assert reject(BODY + b" ", headers_for()) == "no signature matched"


def test_rejects_wrong_secret() -> None:
    assert reject(BODY, headers_for(secret=OTHER_SECRET)) == "no signature matched"


def test_rejects_changed_msg_id() -> None:
    headers = headers_for() | {"webhook-id": "msg_other"}
    assert reject(BODY, headers) == "no signature matched"


def test_rejects_replayed_signature_with_fresh_timestamp() -> None:
    # Moving the timestamp forward to dodge the tolerance must break the signature.
    headers = headers_for(timestamp=TS - 1000) | {"webhook-timestamp": str(TS)}
    assert reject(BODY, headers) == "no signature matched"


def test_rejects_stale_timestamp() -> None:
    message = reject(BODY, headers_for(timestamp=TS - 412))
    assert message == "timestamp is 412 s old; tolerance is 300 s"


def test_rejects_future_timestamp() -> None:
    message = reject(BODY, headers_for(timestamp=TS + 400))
    assert message == "timestamp is 400 s in the future; tolerance is 300 s"


@pytest.mark.parametrize("offset", [-300, -299, 0, 299, 300])
def test_accepts_timestamps_inside_tolerance(offset: int) -> None:
    verify(BODY, headers_for(timestamp=TS + offset))


@pytest.mark.parametrize("offset", [-301, 301])
def test_rejects_timestamps_just_outside_tolerance(offset: int) -> None:
    reject(BODY, headers_for(timestamp=TS + offset))


def test_fractional_clock_rounds_age_up_in_message() -> None:
    message = reject(BODY, headers_for(), now=NOW + 300.25)
    assert message == "timestamp is 301 s old; tolerance is 300 s"


def test_tolerance_is_configurable() -> None:
    headers = headers_for(timestamp=TS - 1000)
    verify(BODY, headers, tolerance=1000)
    assert reject(BODY, headers, tolerance=999) == "timestamp is 1000 s old; tolerance is 999 s"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_rejects_missing_header(missing: str) -> None:
    headers = headers_for()
    del headers[missing]
    assert reject(BODY, headers) == f"missing header {missing!r}"


@pytest.mark.parametrize("emptied", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_empty_header_counts_as_missing(emptied: str) -> None:
    assert reject(BODY, headers_for() | {emptied: ""}) == f"missing header {emptied!r}"


@pytest.mark.parametrize(
    "timestamp",
    [
        "soon",
        "1700000000.5",
        "-1700000000",
        "+1700000000",
        " 1700000000",
        "1e9",
        "0x65",
        "1_000",
        "\u0661\u0667\u0660\u0660",  # Arabic-Indic digits: int() would accept them
        "9" * 19,
        "9" * 5000,
    ],
)
def test_rejects_malformed_timestamp(timestamp: str) -> None:
    message = reject(BODY, headers_for() | {"webhook-timestamp": timestamp})
    assert message == "malformed header 'webhook-timestamp': expected integer unix seconds"


def test_huge_but_well_formed_timestamp_is_in_the_future() -> None:
    message = reject(BODY, headers_for() | {"webhook-timestamp": "9" * 18})
    assert message.endswith("s in the future; tolerance is 300 s")


@pytest.mark.parametrize("signature", ["v1", "v1,", ",abc", "garbage", "v1,AAAA v2"])
def test_rejects_malformed_signature_list(signature: str) -> None:
    message = reject(BODY, headers_for() | {"webhook-signature": signature})
    assert message == (
        "malformed header 'webhook-signature': expected space-separated 'v1,<base64>' entries"
    )


@pytest.mark.parametrize("encoded", ["!!!!", "abc$", "Zm9v\u00e9", "A"])
def test_rejects_signature_that_is_not_base64(encoded: str) -> None:
    message = reject(BODY, headers_for() | {"webhook-signature": f"v1,{encoded}"})
    assert message == "malformed header 'webhook-signature': a v1 signature is not valid base64"


def test_rejects_header_without_v1_or_v1a_signature() -> None:
    good = headers_for()["webhook-signature"].removeprefix("v1,")
    message = reject(BODY, headers_for() | {"webhook-signature": f"v2,{good} v1b,{good}"})
    assert message == "header 'webhook-signature' has no v1 or v1a signature"


def test_v1_signature_under_v1a_label_does_not_verify() -> None:
    good = headers_for()["webhook-signature"].removeprefix("v1,")
    assert reject(BODY, headers_for() | {"webhook-signature": f"v1a,{good}"}) == (
        "no signature matched"
    )


def test_accepts_when_one_of_several_signatures_matches() -> None:
    good = headers_for()["webhook-signature"]
    wrong = headers_for(secret=OTHER_SECRET)["webhook-signature"]
    verify(BODY, headers_for() | {"webhook-signature": f"{wrong} v1a,AAAA {good}"})
    verify(BODY, headers_for() | {"webhook-signature": f"{good}  {wrong}"})


def test_rejects_when_none_of_several_signatures_matches() -> None:
    wrong = headers_for(secret=OTHER_SECRET)["webhook-signature"]
    assert reject(BODY, headers_for() | {"webhook-signature": f"{wrong} {wrong}"}) == (
        "no signature matched"
    )


def test_accepts_unpadded_signature() -> None:
    signature = headers_for()["webhook-signature"].rstrip("=")
    verify(BODY, headers_for() | {"webhook-signature": signature})


def test_secret_rotation_accepts_any_configured_secret() -> None:
    verify(BODY, headers_for(secret=OTHER_SECRET), [SECRET, OTHER_SECRET])
    verify(BODY, headers_for(secret=SECRET), [SECRET, OTHER_SECRET])


def test_undecodable_stored_secret_is_skipped_not_fatal() -> None:
    verify(BODY, headers_for(), ["whsec_not base64!", SECRET])


def test_rejects_when_no_usable_secret() -> None:
    assert reject(BODY, headers_for(), []) == "source has no usable signing secret"
    assert reject(BODY, headers_for(), ["whsec_"]) == "source has no usable signing secret"


def test_rejects_msg_id_that_cannot_be_encoded() -> None:
    message = reject(BODY, headers_for() | {"webhook-id": "msg_\udc80"})
    assert message == "malformed header 'webhook-id': not encodable as UTF-8"


def test_messages_never_reveal_secret_or_expected_signature() -> None:
    expected = headers_for()["webhook-signature"].removeprefix("v1,")
    wrong = headers_for(secret=OTHER_SECRET)
    with pytest.raises(VerificationError) as info:
        verify(BODY, wrong)
    message = str(info.value)
    for secret_fragment in (SECRET, SECRET.removeprefix("whsec_"), expected, expected[:16]):
        assert secret_fragment not in message


# --- secrets -------------------------------------------------------------------------------------


def test_decode_secret() -> None:
    assert decode_secret(SECRET) == KEY
    # The reference libraries accept the key without the prefix and without padding.
    assert decode_secret(SECRET.removeprefix("whsec_")) == KEY
    unpadded = "whsec_" + base64.b64encode(b"\x01" * 25).decode().rstrip("=")
    assert decode_secret(unpadded) == b"\x01" * 25


@pytest.mark.parametrize(
    "secret", ["whsec_", "", "whsec_***", "whsec_A", "whsec_\u00e9\u00e9\u00e9\u00e9"]
)
def test_decode_secret_rejects_invalid(secret: str) -> None:
    with pytest.raises(ValueError):
        decode_secret(secret)


def test_sign_rejects_invalid_secret() -> None:
    with pytest.raises(ValueError):
        sign("whsec_***", MSG_ID, TS, BODY)


def test_generate_secret_is_valid_random_and_32_bytes() -> None:
    first, second = generate_secret("standard_webhooks"), generate_secret("standard_webhooks")
    assert first != second
    assert first.startswith("whsec_")
    assert len(decode_secret(first)) == 32
    assert validate_config("standard_webhooks", {}, [first, second]) == {}


# --- registry ------------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(VERIFIERS) == {"standard_webhooks", "stripe", "github", "shopify", "hmac", "none"}
    for name, verifier in VERIFIERS.items():
        assert get_verifier(name) is verifier


def test_get_verifier_unknown_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown verifier 'svix'") as info:
        get_verifier("svix")
    assert "github, hmac, none, shopify, standard_webhooks, stripe" in str(info.value)


def test_none_accepts_everything() -> None:
    get_verifier("none")(b"\xff anything", {}, [], {}, 0, float("nan"))


def test_validate_config_unknown_scheme() -> None:
    with pytest.raises(ValueError, match=r"unknown verifier 'paypal'; known verifiers: github, "):
        validate_config("paypal", {}, [])


def test_validate_config_standard_webhooks() -> None:
    assert validate_config("standard_webhooks", {}, [SECRET, OTHER_SECRET]) == {}


@pytest.mark.parametrize(
    ("secrets", "problem"),
    [
        ([], "needs at least one secret"),
        (["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], r"secrets\[0\]: not a Standard Webhooks secret"),
        ([SECRET, "whsec_%%%%"], r"secrets\[1\]: secret is not valid base64"),
        (["whsec_" + base64.b64encode(b"k" * 23).decode()], "secret key is 23 bytes"),
        (["whsec_" + base64.b64encode(b"k" * 65).decode()], "secret key is 65 bytes"),
        ([42], r"secrets\[0\] must be a string, got int"),
    ],
)
def test_validate_config_standard_webhooks_bad_secrets(secrets: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        validate_config("standard_webhooks", {}, secrets)
    for secret in secrets:
        if isinstance(secret, str) and secret:
            assert secret not in str(info.value)


def test_validate_config_standard_webhooks_takes_no_config() -> None:
    with pytest.raises(ValueError, match="takes no config; got keys 'tolerance'"):
        validate_config("standard_webhooks", {"tolerance": 5}, [SECRET])


def test_validate_config_none() -> None:
    assert validate_config("none", {}, []) == {}
    with pytest.raises(ValueError, match="verifier 'none' takes no secrets"):
        validate_config("none", {}, ["s3cret"])
    with pytest.raises(ValueError, match="verifier 'none' takes no config"):
        validate_config("none", {"header": "x"}, [])


def test_validate_config_rejects_bare_string_as_secrets() -> None:
    with pytest.raises(ValueError, match="secrets must be a list of strings"):
        validate_config("standard_webhooks", {}, SECRET)


def test_generate_secret_for_none_and_unknown() -> None:
    with pytest.raises(ValueError, match="takes no secrets"):
        generate_secret("none")
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        generate_secret("nope")


# --- properties ----------------------------------------------------------------------------------

HEADER_NAMES = st.sampled_from(
    ["webhook-id", "webhook-timestamp", "webhook-signature", "svix-id", "svix-signature"]
) | st.text(max_size=20)
TIMESTAMPS = st.integers(min_value=0, max_value=10**12)
KEYS = st.binary(min_size=24, max_size=64)


def _whsec(key: bytes) -> str:
    return "whsec_" + base64.b64encode(key).decode()


@st.composite
def plausible_signatures(draw: st.DrawFn) -> str:
    """Signature headers near the valid shape, so fuzzing gets past the parser to the HMAC."""
    entry = st.one_of(
        st.builds(lambda b: "v1," + base64.b64encode(b).decode(), st.binary(max_size=40)),
        st.builds(lambda v, s: f"{v},{s}", st.sampled_from(["v1", "v1a", "v2", ""]), st.text()),
        st.text(max_size=30),
    )
    return " ".join(draw(st.lists(entry, max_size=4)))


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(HEADER_NAMES, st.text(max_size=60), max_size=6),
    secrets=st.lists(st.text(max_size=60) | KEYS.map(_whsec), max_size=3),
    tolerance=st.integers(min_value=-(10**20), max_value=10**20),
    now=st.floats(),
)
def test_arbitrary_input_only_ever_raises_verification_error(
    body: bytes,
    headers: dict[str, str],
    secrets: list[str],
    tolerance: int,
    now: float,
) -> None:
    with contextlib.suppress(VerificationError):
        verify(body, headers, secrets, tolerance=tolerance, now=now)


@given(
    body=st.binary(max_size=200),
    msg_id=st.text(max_size=40),
    timestamp=st.one_of(TIMESTAMPS.map(str), st.text(max_size=25)),
    signature=plausible_signatures(),
    secrets=st.lists(st.text(max_size=60) | KEYS.map(_whsec), max_size=3),
    now=st.floats(min_value=0, max_value=10**12),
)
def test_near_valid_input_only_ever_raises_verification_error(
    body: bytes,
    msg_id: str,
    timestamp: str,
    signature: str,
    secrets: list[str],
    now: float,
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    with contextlib.suppress(VerificationError):
        verify(body, headers, secrets, tolerance=10**13, now=now)


@given(
    key=KEYS,
    msg_id=st.text(min_size=1, max_size=60),
    timestamp=TIMESTAMPS,
    body=st.binary(max_size=500),
    skew=st.integers(min_value=-300, max_value=300),
)
def test_sign_then_verify_always_accepts(
    key: bytes, msg_id: str, timestamp: int, body: bytes, skew: int
) -> None:
    secret = _whsec(key)
    verify(body, headers_for(secret, msg_id, timestamp, body), [secret], now=timestamp + skew)


@given(
    key=KEYS,
    body=st.binary(min_size=1, max_size=500),
    index=st.integers(min_value=0),
    replacement=st.integers(min_value=0, max_value=255),
)
def test_any_single_byte_change_is_rejected(
    key: bytes, body: bytes, index: int, replacement: int
) -> None:
    index %= len(body)
    assume(body[index] != replacement)
    secret = _whsec(key)
    tampered = body[:index] + bytes([replacement]) + body[index + 1 :]
    with pytest.raises(VerificationError, match="no signature matched"):
        verify(tampered, headers_for(secret, MSG_ID, TS, body), [secret])

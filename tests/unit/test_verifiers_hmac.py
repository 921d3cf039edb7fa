"""The configurable generic HMAC scheme."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from interlink.ingress.verifiers import (
    VerificationError,
    generate_secret,
    get_verifier,
    validate_config,
)
from interlink.ingress.verifiers.hmac_scheme import sign_hmac

SECRET = "It's a Secret to Everybody"
OTHER_SECRET = "another-secret"
BODY = b"Hello, World!"
NOW = 1_700_000_000.0
TS = int(NOW)

GITHUB: dict[str, object] = {
    "header": "x-hub-signature-256",
    "prefix": "sha256=",
    "encoding": "hex",
}
SHOPIFY: dict[str, object] = {"header": "x-shopify-hmac-sha256", "encoding": "base64"}
SLACK: dict[str, object] = {
    "header": "x-slack-signature",
    "prefix": "v0=",
    "template": "v0:{timestamp}:{body}",
    "timestamp_header": "x-slack-request-timestamp",
}


def verify(
    body: bytes,
    headers: Mapping[str, str],
    config: Mapping[str, object],
    secrets: Sequence[str] = (SECRET,),
    *,
    tolerance: int = 300,
    now: float = NOW,
) -> None:
    get_verifier("hmac")(body, headers, secrets, config, tolerance, now)


def reject(
    body: bytes,
    headers: Mapping[str, str],
    config: Mapping[str, object],
    secrets: Sequence[str] = (SECRET,),
    *,
    tolerance: int = 300,
    now: float = NOW,
) -> str:
    with pytest.raises(VerificationError) as info:
        verify(body, headers, config, secrets, tolerance=tolerance, now=now)
    return str(info.value)


def slack_headers(secret: str = SECRET, timestamp: int = TS, body: bytes = BODY) -> dict[str, str]:
    return {
        "x-slack-signature": sign_hmac(secret, body, SLACK, timestamp),
        "x-slack-request-timestamp": str(timestamp),
    }


# --- provider conventions, checked against independently computed signatures --------------------


def test_github_style() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    # The value GitHub's documentation gives for this secret and payload.
    assert digest == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    headers = {"x-hub-signature-256": f"sha256={digest}"}
    verify(BODY, headers, GITHUB)
    assert sign_hmac(SECRET, BODY, GITHUB) == f"sha256={digest}"


def test_hex_comparison_is_case_insensitive() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest().upper()
    verify(BODY, {"x-hub-signature-256": f"sha256={digest}"}, GITHUB)


def test_shopify_style() -> None:
    body = b'{"id":820982911946154508,"email":"jon@example.com"}'
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    headers = {"x-shopify-hmac-sha256": base64.b64encode(digest).decode()}
    verify(body, headers, SHOPIFY)
    assert sign_hmac(SECRET, body, SHOPIFY) == headers["x-shopify-hmac-sha256"]


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_sha512(encoding: str) -> None:
    config = {"header": "x-signature-512", "algorithm": "sha512", "encoding": encoding}
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha512).digest()
    value = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    verify(BODY, {"x-signature-512": value}, config)
    assert sign_hmac(SECRET, BODY, config) == value
    # A sha256 signature must not pass a sha512 config.
    sha256 = hmac.new(SECRET.encode(), BODY, hashlib.sha256).digest()
    short = sha256.hex() if encoding == "hex" else base64.b64encode(sha256).decode()
    assert reject(BODY, {"x-signature-512": short}, config) == "no signature matched"


def test_defaults() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    verify(BODY, {"x-signature": digest}, {})
    assert sign_hmac(SECRET, BODY, {}) == digest


def test_timestamp_template() -> None:
    signed = f"v0:{TS}:".encode() + BODY
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    headers = {"x-slack-signature": f"v0={digest}", "x-slack-request-timestamp": str(TS)}
    verify(BODY, headers, SLACK)
    assert slack_headers() == headers


def test_template_with_text_after_body() -> None:
    config = {"template": "{timestamp}.{body}.end", "timestamp_header": "x-ts"}
    signed = f"{TS}.".encode() + BODY + b".end"
    digest = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    verify(BODY, {"x-signature": digest, "x-ts": str(TS)}, config)


def test_non_ascii_secret_is_utf8_key() -> None:
    secret = "sécret-\u2603"
    digest = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    verify(BODY, {"x-signature": digest}, {}, [secret])


# --- rejections ----------------------------------------------------------------------------------


def test_rejects_tampered_body() -> None:
    headers = {"x-hub-signature-256": sign_hmac(SECRET, BODY, GITHUB)}
    assert reject(BODY + b"!", headers, GITHUB) == "no signature matched"


def test_rejects_wrong_secret() -> None:
    headers = {"x-hub-signature-256": sign_hmac(OTHER_SECRET, BODY, GITHUB)}
    assert reject(BODY, headers, GITHUB) == "no signature matched"


def test_secret_rotation() -> None:
    headers = {"x-hub-signature-256": sign_hmac(OTHER_SECRET, BODY, GITHUB)}
    verify(BODY, headers, GITHUB, [SECRET, OTHER_SECRET])


def test_rejects_missing_signature_header() -> None:
    assert reject(BODY, {"x-signature": "abc"}, GITHUB) == "missing header 'x-hub-signature-256'"


def test_rejects_missing_prefix() -> None:
    digest = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    message = reject(BODY, {"x-hub-signature-256": digest}, GITHUB)
    assert message == "malformed header 'x-hub-signature-256': expected prefix 'sha256='"


@pytest.mark.parametrize("value", ["sha256=xyz", "sha256=abc", "sha256=\u00e9\u00e9", "sha256= ab"])
def test_rejects_signature_that_is_not_hex(value: str) -> None:
    message = reject(BODY, {"x-hub-signature-256": value}, GITHUB)
    assert message == "malformed header 'x-hub-signature-256': signature is not valid hex"


def test_rejects_signature_that_is_not_base64() -> None:
    message = reject(BODY, {"x-shopify-hmac-sha256": "***"}, SHOPIFY)
    assert message == "malformed header 'x-shopify-hmac-sha256': signature is not valid base64"


def test_rejects_truncated_signature() -> None:
    value = sign_hmac(SECRET, BODY, GITHUB)[:-2]
    assert reject(BODY, {"x-hub-signature-256": value}, GITHUB) == "no signature matched"


def test_rejects_missing_timestamp_header() -> None:
    headers = slack_headers()
    del headers["x-slack-request-timestamp"]
    assert reject(BODY, headers, SLACK) == "missing header 'x-slack-request-timestamp'"


def test_rejects_stale_and_future_timestamps() -> None:
    assert reject(BODY, slack_headers(timestamp=TS - 412), SLACK) == (
        "timestamp is 412 s old; tolerance is 300 s"
    )
    assert reject(BODY, slack_headers(timestamp=TS + 400), SLACK) == (
        "timestamp is 400 s in the future; tolerance is 300 s"
    )


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_accepts_timestamps_inside_tolerance(offset: int) -> None:
    verify(BODY, slack_headers(timestamp=TS + offset), SLACK)


def test_rejects_malformed_timestamp() -> None:
    headers = slack_headers() | {"x-slack-request-timestamp": "1700000000.0"}
    assert reject(BODY, headers, SLACK) == (
        "malformed header 'x-slack-request-timestamp': expected integer unix seconds"
    )


def test_rejects_replay_with_rewritten_timestamp() -> None:
    headers = slack_headers(timestamp=TS - 3600) | {"x-slack-request-timestamp": str(TS)}
    assert reject(BODY, headers, SLACK) == "no signature matched"


def test_rejects_when_no_usable_secret() -> None:
    headers = {"x-signature": sign_hmac(SECRET, BODY, {})}
    assert reject(BODY, headers, {}, []) == "source has no usable signing secret"
    # An empty key is public knowledge, so it must never authenticate anything.
    empty_key = {"x-signature": hmac.new(b"", BODY, hashlib.sha256).hexdigest()}
    assert reject(BODY, empty_key, {}, [""]) == "source has no usable signing secret"


def test_invalid_stored_config_is_a_verification_error() -> None:
    message = reject(BODY, {"x-signature": "ab"}, {"algorithm": "md5"})
    assert message.startswith("source verifier config is invalid: hmac config 'algorithm'")


def test_messages_never_reveal_secret_or_expected_signature() -> None:
    expected = sign_hmac(SECRET, BODY, GITHUB).removeprefix("sha256=")
    headers = {"x-hub-signature-256": sign_hmac(OTHER_SECRET, BODY, GITHUB)}
    message = reject(BODY, headers, GITHUB)
    assert SECRET not in message
    assert expected[:16] not in message


# --- sign_hmac -----------------------------------------------------------------------------------


def test_sign_hmac_requires_timestamp_when_template_signs_it() -> None:
    with pytest.raises(ValueError, match="pass a timestamp"):
        sign_hmac(SECRET, BODY, SLACK)


def test_sign_hmac_rejects_invalid_config() -> None:
    with pytest.raises(ValueError, match="unknown hmac config key"):
        sign_hmac(SECRET, BODY, {"digest": "sha256"})


# --- validate_config -----------------------------------------------------------------------------


def test_validate_config_fills_defaults() -> None:
    assert validate_config("hmac", {}, [SECRET]) == {
        "header": "x-signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "",
        "template": "{body}",
        "timestamp_header": None,
    }


def test_validate_config_normalizes_case() -> None:
    config = {
        "header": "X-Slack-Signature",
        "algorithm": "SHA256",
        "encoding": "Hex",
        "prefix": "v0=",
        "template": "v0:{timestamp}:{body}",
        "timestamp_header": "X-Slack-Request-Timestamp",
    }
    assert validate_config("hmac", config, [SECRET]) == {
        "header": "x-slack-signature",
        "algorithm": "sha256",
        "encoding": "hex",
        "prefix": "v0=",
        "template": "v0:{timestamp}:{body}",
        "timestamp_header": "x-slack-request-timestamp",
    }


def test_validated_config_verifies_the_same() -> None:
    config = {"header": "X-Hub-Signature-256", "prefix": "sha256="}
    normalized = validate_config("hmac", config, [SECRET])
    verify(BODY, {"x-hub-signature-256": sign_hmac(SECRET, BODY, GITHUB)}, normalized)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"digest": "sha1"}, r"unknown hmac config key\(s\) 'digest'; known keys: algorithm, "),
        ({"header": 5}, "hmac config 'header' must be a string, got int"),
        ({"header": ""}, "hmac config 'header' is not a valid header name"),
        ({"header": "x signature"}, "hmac config 'header' is not a valid header name"),
        ({"header": "x-sig:"}, "hmac config 'header' is not a valid header name"),
        ({"algorithm": "md5"}, "hmac config 'algorithm' must be one of sha256, sha512; got 'md5'"),
        ({"algorithm": None}, "hmac config 'algorithm' must be one of sha256, sha512"),
        ({"encoding": "base32"}, "hmac config 'encoding' must be one of hex, base64"),
        ({"prefix": None}, "hmac config 'prefix' must be a string, got NoneType"),
        ({"template": ["{body}"]}, "hmac config 'template' must be a string, got list"),
        ({"template": "{timestamp}"}, r"'template' must contain \{body\} exactly once"),
        ({"template": "{body}{body}"}, r"'template' must contain \{body\} exactly once"),
        ({"template": "{timestamp}.{body}"}, "'timestamp_header' is not set"),
        ({"timestamp_header": "x-ts"}, r"'template' does not sign \{timestamp\}"),
        ({"timestamp_header": 17}, "hmac config 'timestamp_header' must be a string, got int"),
        (
            {"template": "{timestamp}{body}", "timestamp_header": "X-Signature"},
            "'timestamp_header' must differ from 'header'",
        ),
    ],
)
def test_validate_config_errors(config: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_config("hmac", config, [SECRET])


@pytest.mark.parametrize(
    ("secrets", "problem"),
    [
        ([], "verifier 'hmac' needs at least one secret"),
        ([SECRET, ""], r"secrets\[1\]: must not be empty"),
        ([b"bytes"], r"secrets\[0\] must be a string, got bytes"),
    ],
)
def test_validate_config_secret_errors(secrets: list[str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_config("hmac", {}, secrets)


def test_validate_config_rejects_non_mapping_config() -> None:
    with pytest.raises(ValueError, match="verifier config must be an object, got list"):
        validate_config("hmac", ["header"], [SECRET])  # type: ignore[arg-type]


def test_generate_secret() -> None:
    first, second = generate_secret("hmac"), generate_secret("hmac")
    assert first != second
    assert len(first) >= 43
    assert validate_config("hmac", {}, [first]) == validate_config("hmac", {}, [second])


# --- properties ----------------------------------------------------------------------------------


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, object]:
    template = draw(st.sampled_from(["{body}", "{timestamp}.{body}", "v0:{timestamp}:{body}:end"]))
    config: dict[str, object] = {
        "header": draw(st.sampled_from(["x-signature", "x-hub-signature-256"])),
        "algorithm": draw(st.sampled_from(["sha256", "sha512"])),
        "encoding": draw(st.sampled_from(["hex", "base64"])),
        "prefix": draw(st.sampled_from(["", "sha256=", "v0="])),
        "template": template,
    }
    if "{timestamp}" in template:
        config["timestamp_header"] = "x-timestamp"
    return config


CONFIGS = valid_configs()
ANY_CONFIG = st.dictionaries(
    st.sampled_from(
        ["header", "algorithm", "encoding", "prefix", "template", "timestamp_header", "other"]
    ),
    st.none() | st.integers() | st.text(max_size=20) | st.sampled_from(["sha512", "base64"]),
    max_size=6,
)


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(
        st.sampled_from(["x-signature", "x-timestamp", "x-hub-signature-256"]) | st.text(),
        st.text(max_size=80),
        max_size=4,
    ),
    secrets=st.lists(st.text(max_size=40), max_size=3),
    config=CONFIGS | ANY_CONFIG,
    tolerance=st.integers(min_value=-(10**20), max_value=10**20),
    now=st.floats(),
)
def test_arbitrary_input_only_ever_raises_verification_error(
    body: bytes,
    headers: dict[str, str],
    secrets: list[str],
    config: dict[str, object],
    tolerance: int,
    now: float,
) -> None:
    with contextlib.suppress(VerificationError):
        verify(body, headers, config, secrets, tolerance=tolerance, now=now)


@given(
    config=CONFIGS,
    secret=st.text(min_size=1, max_size=40),
    body=st.binary(max_size=300),
    timestamp=st.integers(min_value=0, max_value=10**11),
)
def test_sign_then_verify_always_accepts(
    config: dict[str, object], secret: str, body: bytes, timestamp: int
) -> None:
    headers = {str(config["header"]): sign_hmac(secret, body, config, timestamp)}
    if "timestamp_header" in config:
        headers["x-timestamp"] = str(timestamp)
    verify(body, headers, config, [secret], now=timestamp)


@given(
    config=CONFIGS,
    body=st.binary(min_size=1, max_size=300),
    index=st.integers(min_value=0),
    replacement=st.integers(min_value=0, max_value=255),
)
def test_any_single_byte_change_is_rejected(
    config: dict[str, object], body: bytes, index: int, replacement: int
) -> None:
    index %= len(body)
    assume(body[index] != replacement)
    tampered = body[:index] + bytes([replacement]) + body[index + 1 :]
    headers = {str(config["header"]): sign_hmac(SECRET, body, config, TS), "x-timestamp": str(TS)}
    with pytest.raises(VerificationError, match="no signature matched"):
        verify(tampered, headers, config)
